"""Performance-based decay: a reduce-on-plateau LR controller that works inside jit and vmap."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlr._optim import checks as _checks
from jaxlr._optim.types import ArrayLike, Schedule


class Controller(NamedTuple):
    """A stateful learning-rate controller, passed to an optimizer as its ``learning_rate``.

    The optimizer calls ``init()`` once, then at every update ``update(state, value, step)``
    with the metric given as ``opt.update(..., value=metric)``, and uses
    ``learning_rate(state, step)`` as the LR of that update.

    Attributes:
        init: ``() -> state``.
        update: ``(state, value, step) -> state`` (value: the metric, step: int32).
        learning_rate: ``(state, step) -> lr``, a float32 scalar.

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> c = jaxlr.reduce_on_plateau(0.1, patience=0)
        >>> state = c.update(c.update(c.init(), 1.0, 0), 2.0, 1)  # worse: cut at once
        >>> round(float(c.learning_rate(state, 2)), 4)
        0.01
    """

    init: Callable[[], optax.OptState]
    update: Callable[[optax.OptState, ArrayLike, ArrayLike], optax.OptState]
    learning_rate: Callable[[optax.OptState, ArrayLike], jax.Array]


class PlateauState(NamedTuple):
    """State of :func:`reduce_on_plateau` (add a leading member axis under vmap).

    Attributes:
        scale, best, num_bad, cooldown_counter, acc_sum, acc_count, num_cuts: see the
            ``# shape, dtype`` comments of the fields below.

    Example:
        >>> import jaxlr
        >>> state = jaxlr.reduce_on_plateau(0.1).init()
        >>> float(state.scale), int(state.num_cuts)
        (1.0, 0)
    """

    scale: jax.Array  # shape (), float32: LR = base(step) * scale
    best: jax.Array  # shape (), float32: best (averaged) metric so far
    num_bad: jax.Array  # shape (), int32: decisions since the last improvement
    cooldown_counter: jax.Array  # shape (), int32: decisions left in cooldown
    acc_sum: jax.Array  # shape (), float32: sum of metric values not yet decided on
    acc_count: jax.Array  # shape (), int32: how many values acc_sum holds
    num_cuts: jax.Array  # shape (), int32: how many times the LR was cut


def reduce_on_plateau(
    base: float | Schedule = 1.0,
    *,
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    mode: str = "min",
    cooldown: int = 0,
    min_lr: float = 0.0,
    eps: float = 1e-8,
    accumulate: int = 1,
) -> Controller:
    r"""Cut the learning rate when a metric stops improving (PyTorch's ReduceLROnPlateau).

    The LR is ``base(step) * scale``. ``base`` is a float or ANY schedule, so "warm up, then
    reduce on plateau" is one controller (impossible with torch's SequentialLR or Keras). Every
    ``accumulate`` updates the mean of the values passed as ``update(..., value=metric)`` is a
    *decision* value :math:`a`; with ``mode="min"`` it improves on ``best`` when

    .. math::
        a < best - threshold \cdot |best| \quad (\text{rel}), \qquad
        a < best - threshold \quad (\text{abs})

    (``mode="max"`` mirrors it). After more than ``patience`` decisions without improvement the LR
    is cut: :math:`lr' = \max(lr \cdot factor, min\_lr)`, skipped when
    :math:`lr - lr' \le eps`, then ``cooldown`` decisions pass before bad values count again.
    This is torch's rule decision for decision (the cut comes on the ``patience + 1``-th bad
    value; ``patience=0`` cuts on every bad value), except that the relative threshold is taken
    on :math:`|best|`, so negative metrics (log-likelihoods, ELBOs) are cut correctly where
    torch's ``best * (1 - threshold)`` inverts the test. The value passed to an update decides
    the LR of that same update. ``min_lr`` is absolute and enforced when a cut is made; with a
    varying ``base`` the LR then follows ``base(step) * scale``.

    All numeric arguments may be traced (each member of a vmapped sweep may have its own
    ``factor``, ``patience``, ``threshold``...); the state is a small NamedTuple of float32 and
    int32 scalars whatever ``jax_enable_x64`` (a ``lax.scan`` carry keeps its dtypes).

    Args:
        base: the LR before any cut, a float or a schedule ``step -> lr``.
        factor: multiplier of a cut, in (0, 1).
        patience: decisions without improvement tolerated before a cut (>= 0).
        threshold: minimal improvement that counts (>= 0).
        threshold_mode: ``"rel"`` (fraction of ``|best|``) or ``"abs"``.
        mode: ``"min"`` (loss) or ``"max"`` (accuracy).
        cooldown: decisions after a cut during which bad values are not counted (>= 0).
        min_lr: the LR is never cut below this (absolute, >= 0).
        eps: cuts smaller than this are skipped (>= 0).
        accumulate: number of values averaged into one decision (>= 1); e.g. pass the training
            loss at every step with ``accumulate=100`` to decide on 100-step means.

    Returns:
        A :class:`Controller`, to pass as an optimizer's ``learning_rate``.

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> ctrl = jaxlr.reduce_on_plateau(jaxlr.warmup(jaxlr.constant(1e-2), 100), patience=5)
        >>> opt = jaxlr.adam(ctrl)
        >>> params = jnp.ones(3)
        >>> state = opt.init(params)
        >>> updates, state = opt.update(params, state, params, value=jnp.sum(params ** 2))
        >>> float(jaxlr.current_lr(state))
        0.0

    References:
        PyTorch ``ReduceLROnPlateau``:
        https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html
    """
    if threshold_mode not in ("rel", "abs"):
        raise ValueError(
            f"threshold_mode must be 'rel' or 'abs', got threshold_mode={threshold_mode!r}")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got mode={mode!r}")
    if callable(base):
        base_fn = base
    else:
        _checks.hparam("base", base, ge=0, fix=_checks.NEGATIVE_LR)
        base_fn = lambda step: base  # noqa: ARG005
    _checks.hparam("factor", factor, gt=0, lt=1)
    _checks.hparam("patience", patience, ge=0, integer=True)
    _checks.hparam("threshold", threshold, ge=0)
    _checks.hparam("cooldown", cooldown, ge=0, integer=True)
    _checks.hparam("min_lr", min_lr, ge=0, fix=_checks.NEGATIVE_LR)
    _checks.hparam("eps", eps, ge=0)
    _checks.hparam("accumulate", accumulate, ge=1, integer=True)
    f32 = _checks.f32
    sign = 1.0 if mode == "min" else -1.0  # work on sign * metric, always minimising

    def lr_at(state: PlateauState, step: ArrayLike) -> jax.Array:
        return f32(base_fn(step)) * state.scale

    def init() -> PlateauState:
        zero_i = jnp.zeros([], jnp.int32)
        return PlateauState(scale=jnp.ones([], jnp.float32), best=f32(jnp.inf), num_bad=zero_i,
                            cooldown_counter=zero_i, acc_sum=jnp.zeros([], jnp.float32),
                            acc_count=zero_i, num_cuts=zero_i)

    def update(state: PlateauState, value: ArrayLike, step: ArrayLike) -> PlateauState:
        value = _checks.scalar("value", value)
        acc_sum = state.acc_sum + sign * f32(value)
        acc_count = state.acc_count + 1
        decide = acc_count >= jnp.asarray(accumulate, jnp.int32)
        a = acc_sum / acc_count
        best = state.best
        margin = f32(threshold) * (jnp.abs(best) if threshold_mode == "rel" else 1.0)
        target = jnp.where(jnp.isfinite(best), best - margin, best)
        better = a < target
        num_bad = jnp.where(better, 0, state.num_bad + 1)
        in_cooldown = state.cooldown_counter > 0
        cooldown_counter = jnp.where(in_cooldown, state.cooldown_counter - 1,
                                     state.cooldown_counter)
        num_bad = jnp.where(in_cooldown, 0, num_bad)
        cut = num_bad > jnp.asarray(patience, jnp.int32)
        old_lr = lr_at(state, step)
        new_lr = jnp.maximum(old_lr * f32(factor), f32(min_lr))
        applied = cut & (old_lr - new_lr > f32(eps))
        floored = old_lr * f32(factor) < f32(min_lr)
        safe_old = jnp.where(old_lr > 0, old_lr, 1.0)
        scale = jnp.where(floored, state.scale * new_lr / safe_old, state.scale * f32(factor))
        decided = PlateauState(
            scale=jnp.where(applied, scale, state.scale),
            best=jnp.where(better, a, best),
            num_bad=jnp.where(cut, 0, num_bad).astype(jnp.int32),
            cooldown_counter=jnp.where(cut, jnp.asarray(cooldown, jnp.int32),
                                       cooldown_counter).astype(jnp.int32),
            acc_sum=jnp.zeros([], jnp.float32),
            acc_count=jnp.zeros([], jnp.int32),
            num_cuts=state.num_cuts + applied.astype(jnp.int32),
        )
        waiting = state._replace(acc_sum=acc_sum, acc_count=acc_count)
        return jax.tree.map(lambda d, w: jnp.where(decide, d, w), decided, waiting)

    return Controller(init=init, update=update, learning_rate=lr_at)
