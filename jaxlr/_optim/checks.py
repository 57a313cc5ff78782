"""Eager validation of hyperparameters that may also be traced.

Every numeric argument of a jaxlr schedule, optimizer or controller may be a traced scalar (so a
sweep over it compiles once). These helpers check a value only when it is concrete, and raise a
``ValueError`` that names the argument, the bad value and the fix. Traced values pass through
untouched: inside traced code there are no exceptions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlr._optim.types import ArrayLike

SWEEP_HINT = "to train several values at once, jax.vmap over them or use jaxlr.sweep"


def is_traced(x: Any) -> bool:
    """True if ``x`` is a JAX tracer (inside jit/vmap/grad), i.e. its value is unknown now."""
    return isinstance(x, jax.core.Tracer)


def concrete(x: ArrayLike) -> float | None:
    """``float(x)`` for a concrete scalar, ``None`` for a traced one."""
    if is_traced(x):
        return None
    return float(np.asarray(x))


def scalar(name: str, value: ArrayLike) -> ArrayLike:
    """Check that ``value`` is one number (concrete or traced) and return it unchanged.

    An array of several values (e.g. a vector of learning rates) is an error that tells the user
    to vmap or use ``jaxlr.sweep``: optax would silently broadcast it against the parameters.
    """
    if isinstance(value, bool):
        return value
    if is_traced(value):
        if value.ndim != 0:
            raise ValueError(
                f"{name} must be a scalar, got a traced array of shape {value.shape}; {SWEEP_HINT}"
            )
        return value
    try:
        arr = np.asarray(value)
    except Exception as e:  # noqa: BLE001 - anything non-numeric
        raise ValueError(f"{name} must be a number, got {name}={value!r}") from e
    if arr.ndim != 0:
        raise ValueError(
            f"{name} must be a scalar, got an array of shape {arr.shape} ({name}={_short(arr)}); "
            f"{SWEEP_HINT}"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be a number, got {name}={value!r}")
    if not math.isfinite(float(arr)):
        raise ValueError(f"{name} must be finite, got {name}={value!r}")
    return value


def hparam(
    name: str,
    value: ArrayLike,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    integer: bool = False,
    fix: str = "",
) -> ArrayLike:
    """Check a scalar hyperparameter against bounds (only when concrete) and return it.

    Example: ``hparam("decay_steps", n, gt=0, integer=True)`` raises
    ``ValueError("decay_steps must be > 0, got decay_steps=-3")``. ``fix`` (e.g. ``"; use
    momentum=None for none"``) is appended to a bound's message, to say what to do instead.
    """
    scalar(name, value)
    v = concrete(value)
    if v is None:
        return value
    bounds = [(gt, ">", v > gt if gt is not None else True),
              (ge, ">=", v >= ge if ge is not None else True),
              (lt, "<", v < lt if lt is not None else True),
              (le, "<=", v <= le if le is not None else True)]
    for bound, op, ok in bounds:
        if bound is not None and not ok:
            raise ValueError(f"{name} must be {op} {fmt(bound)}, got {name}={fmt(v)}{fix}")
    if integer and v != int(v):
        raise ValueError(f"{name} must be a whole number of steps, got {name}={fmt(v)}")
    return value


NEGATIVE_LR = ("; a negative learning rate would train by gradient ascent (to maximise a metric, "
               "minimise its negative)")


def require(ok: bool, message: str) -> None:
    """Raise ``ValueError(message)`` if a relation between concrete values fails."""
    if not ok:
        raise ValueError(message)


def vector(name: str, values: ArrayLike | Sequence[ArrayLike], *, ge: float | None = None,
           increasing: bool = False, strict: bool = True) -> jax.Array:
    """A 1-D sequence of step counts (boundaries, milestones) as a float32 array.

    Elements may be traced; a traced whole vector (from vmap) is fine too. Concrete values are
    checked: ``>= ge`` and, when ``increasing``, (strictly) increasing.
    """
    if is_traced(values):
        if values.ndim != 1:
            raise ValueError(f"{name} must be a 1-D sequence, got shape {values.shape}")
        return jnp.asarray(values, jnp.float32)
    if isinstance(values, (int, float)):
        raise ValueError(f"{name} must be a sequence of step counts, got {name}={values!r}")
    items = list(values)
    for i, x in enumerate(items):
        scalar(f"{name}[{i}]", x)
    conc = [concrete(x) for x in items]
    if all(c is not None for c in conc):
        for i, c in enumerate(conc):
            if ge is not None and c < ge:
                raise ValueError(f"{name} must all be >= {fmt(ge)}, got {name}[{i}]={fmt(c)}")
        if increasing:
            for i in range(1, len(conc)):
                bad = conc[i] <= conc[i - 1] if strict else conc[i] < conc[i - 1]
                if bad:
                    kind = "strictly increasing" if strict else "non-decreasing"
                    raise ValueError(
                        f"{name} must be {kind}, got {name}={[fmt(c) for c in conc]} "
                        f"({name}[{i}]={fmt(conc[i])} after {fmt(conc[i - 1])}); sort them"
                    )
    if not items:
        return jnp.zeros((0,), jnp.float32)
    return jnp.stack([jnp.asarray(x, jnp.float32) for x in items])


def f32(x: ArrayLike) -> jax.Array:
    """``x`` as a float32 JAX value (hyperparameters are float32 whatever the params' dtype)."""
    return jnp.asarray(x, jnp.float32)


def fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _short(arr: np.ndarray) -> str:
    flat = arr.ravel()
    body = ", ".join(f"{x:g}" if np.issubdtype(arr.dtype, np.number) else str(x)
                     for x in flat[:3])
    return f"[{body}{', ...' if flat.size > 3 else ''}]"


# The blow-up rule's default factor, shared by the sweep's quarantine and the diagnosis:
# diverged when loss_t - loss_0 > DIVERGENCE_FACTOR * |loss_0|.
DIVERGENCE_FACTOR = 100.0
