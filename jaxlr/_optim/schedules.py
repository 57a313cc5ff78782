"""Learning-rate schedules: pure ``step -> lr`` functions, every numeric argument traceable.

Each factory checks its concrete arguments at once (a ``ValueError`` that names the argument, the
value and the fix) and returns ``schedule(step)``: float32, elementwise in ``step`` (so
``schedule(jnp.arange(n))`` gives the whole curve), safe under ``jit``, ``vmap`` and ``grad``. A
traced argument (a sweep vmaps over it) skips the checks and meets no Python branch: choices are
``jnp.where``/``jnp.clip`` and denominators are kept away from 0 so a discarded branch makes no NaN.
Semantics follow optax where optax has the schedule, PyTorch or Keras where it does not.

Learning-rate values (``value``, ``init_value``, ``peak_value``, ``end_value``, ``base_lr``,
``max_lr``, and ``alpha``, a fraction of one) must be >= 0 when concrete: a negative learning
rate would train by gradient ascent, silently (optax and torch accept it). The output is float32
and the step may be any int or float (int64 under ``jax_enable_x64`` included).

Why one file of ~710 lines: fifteen schedules, each a short function with its docstring (the
maths, its reference, an example); they share the traced-argument checks at the top.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlr._optim.checks import (
    NEGATIVE_LR,
    concrete,
    f32,
    fmt,
    hparam,
    is_traced,
    require,
    vector,
)
from jaxlr._optim.types import ArrayLike, Schedule

# w(p) for p in [0, 1]: the share of (start - end) left at progress p (see `_anneal`).
_WEIGHTS = {
    "linear": lambda p, power: (1.0 - p) ** power,
    "cos": lambda p, power: (0.5 * (1.0 + jnp.cos(jnp.pi * p))) ** power,
    # sqrt through a double where: a finite gradient at p = 0
    "1-sqrt": lambda p, power: 1.0 - jnp.where(p > 0, jnp.sqrt(jnp.where(p > 0, p, 1.0)), 0.0),
}


def _f(name: str, value: ArrayLike, **bounds: Any) -> jax.Array:
    """Check one scalar hyperparameter (bounds only when concrete) and return it as float32."""
    return f32(hparam(name, value, **bounds))


def _lr(name: str, value: ArrayLike) -> jax.Array:
    """A learning-rate value (or fraction of one): >= 0 when concrete, as float32."""
    return f32(hparam(name, value, ge=0, fix=NEGATIVE_LR))


def _check(relation: Callable[..., bool], message: str, fix: str = "",
           **values: ArrayLike) -> None:
    """Raise ``ValueError`` unless ``relation(*values)``; checked only when all are concrete."""
    conc = [concrete(v) for v in values.values()]
    if None not in conc:
        shown = ", ".join(f"{k}={fmt(c)}" for k, c in zip(values, conc, strict=True))
        require(relation(*conc), f"{message}, got {shown}{fix}")


def _choice(name: str, value: str, allowed: Sequence[str]) -> None:
    require(value in allowed,
            f"{name} must be one of {', '.join(map(repr, allowed))}, got {name}={value!r}")


def _safe(d: jax.Array) -> jax.Array:
    """``d`` where it is > 0, else 1: a denominator that cannot make inf/NaN in a dropped branch."""
    return jnp.where(d > 0, d, 1.0)


def _progress(step: jax.Array, begin: ArrayLike, length: ArrayLike) -> jax.Array:
    """How far ``step`` is through ``[begin, begin + length]``, in [0, 1] (a jump if length=0)."""
    return jnp.where(length > 0, jnp.clip((step - begin) / _safe(length), 0.0, 1.0),
                     (step >= begin).astype(jnp.float32))


def _anneal(start: ArrayLike, end: ArrayLike, pct: jax.Array, shape: str = "linear",
            power: ArrayLike = 1.0):
    """``end + (start - end) * w(pct)``: from ``start`` at pct=0 to ``end`` at pct=1."""
    return end + (start - end) * _WEIGHTS[shape](pct, power)


def _ratio(step: jax.Array, length: jax.Array, staircase: ArrayLike) -> jax.Array:
    """``step / length``, floored when ``staircase`` (a bool, possibly traced)."""
    p = step / _safe(length)
    return jnp.where(staircase, jnp.floor(p), p)


def constant(value: ArrayLike) -> Schedule:
    """The same learning rate at every step (optax ``constant_schedule``).

    ``lr(t) = value``

    Args:
      value: the learning rate, >= 0.

    Returns:
      ``schedule(step) -> lr``, float32 with the shape of ``step``.

    Example:
      >>> import jaxlr
      >>> float(jaxlr.constant(0.5)(100))
      0.5

    References:
      https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html#optax.schedules.constant_schedule
    """
    value = _lr("value", value)
    return lambda step: jnp.broadcast_to(value, jnp.shape(step))


def polynomial_decay(init_value: ArrayLike, end_value: ArrayLike, power: ArrayLike,
                     transition_steps: ArrayLike, transition_begin: ArrayLike = 0) -> Schedule:
    """Polynomial move from ``init_value`` to ``end_value`` (optax ``polynomial_schedule``).

    ``lr(t) = end + (init - end) * (1 - p)**power``, ``p = clip((t - transition_begin) /
    transition_steps, 0, 1)``: ``init_value`` before the transition, ``end_value`` after it.

    Args:
      init_value: value up to ``transition_begin``, >= 0.
      end_value: value from ``transition_begin + transition_steps`` on, >= 0.
      power: exponent of the curve, > 0 (1 is linear).
      transition_steps: length of the transition, > 0 (optax makes <= 0 a constant; we raise).
      transition_begin: steps before the transition starts, >= 0.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> jaxlr.polynomial_decay(1.0, 0.0, power=2, transition_steps=4)(jnp.arange(6)).tolist()
      [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]

    References:
      https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html#optax.schedules.polynomial_schedule
    """
    init, end = _lr("init_value", init_value), _lr("end_value", end_value)
    power = _f("power", power, gt=0)
    steps = _f("transition_steps", transition_steps, gt=0)
    begin = _f("transition_begin", transition_begin, ge=0)
    return lambda step: _anneal(init, end, _progress(f32(step), begin, steps), "linear", power)


def linear(init_value: ArrayLike, end_value: ArrayLike, transition_steps: ArrayLike,
           transition_begin: ArrayLike = 0) -> Schedule:
    """Linear move from ``init_value`` to ``end_value``, then constant (optax ``linear_schedule``).

    ``lr(t) = init + (end - init) * clip((t - transition_begin) / transition_steps, 0, 1)``

    Args:
      init_value: value up to ``transition_begin``, >= 0.
      end_value: value from ``transition_begin + transition_steps`` on, >= 0.
      transition_steps: length of the ramp, > 0.
      transition_begin: steps before the ramp starts, >= 0.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> jaxlr.linear(1.0, 0.0, transition_steps=4)(jnp.arange(6)).tolist()
      [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]

    References:
      https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html#optax.schedules.linear_schedule
    """
    return polynomial_decay(init_value, end_value, 1.0, transition_steps, transition_begin)


def exponential_decay(init_value: ArrayLike, transition_steps: ArrayLike, decay_rate: ArrayLike,
                      transition_begin: ArrayLike = 0, staircase: ArrayLike = False,
                      end_value: ArrayLike | None = None) -> Schedule:
    """Exponential decay (optax ``exponential_decay``).

    ``lr(t) = init * decay_rate**p``, ``p = (t - transition_begin) / transition_steps`` (floored
    if ``staircase``), ``init`` before ``transition_begin``; bounded by ``end_value`` if given
    (a floor when ``decay_rate < 1``, a ceiling when it is > 1).

    Args:
      init_value: initial value, >= 0.
      transition_steps: steps per factor ``decay_rate``, > 0.
      decay_rate: factor per ``transition_steps``, > 0.
      transition_begin: steps before the decay starts, >= 0.
      staircase: decay in whole jumps (a bool, may be traced).
      end_value: bound on the value (>= 0), or None for none.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> jaxlr.exponential_decay(1.0, 2, 0.5, staircase=True)(jnp.arange(5)).tolist()
      [1.0, 1.0, 0.5, 0.5, 0.25]

    References:
      https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html#optax.schedules.exponential_decay
    """
    init, rate = _lr("init_value", init_value), _f("decay_rate", decay_rate, gt=0)
    steps = _f("transition_steps", transition_steps, gt=0)
    begin = _f("transition_begin", transition_begin, ge=0)
    end = None if end_value is None else _lr("end_value", end_value)

    def schedule(step):
        count = f32(step) - begin
        value = jnp.where(count <= 0, init,
                          init * rate ** _ratio(jnp.maximum(count, 0.0), steps, staircase))
        if end is None:
            return value
        return jnp.where(rate < 1, jnp.maximum(value, end), jnp.minimum(value, end))

    return schedule


def cosine_decay(init_value: ArrayLike, decay_steps: ArrayLike, alpha: ArrayLike = 0.0,
                 exponent: ArrayLike = 1.0) -> Schedule:
    """Cosine decay to ``alpha * init_value``, then constant (optax ``cosine_decay_schedule``).

    ``lr(t) = init * ((1 - alpha) * (0.5 * (1 + cos(pi * p)))**exponent + alpha)``,
    ``p = min(t, decay_steps) / decay_steps``.

    Args:
      init_value: initial value, >= 0.
      decay_steps: length of the decay, > 0.
      alpha: final value as a fraction of ``init_value``, >= 0.
      exponent: power applied to the cosine factor.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> [round(x, 6) for x in jaxlr.cosine_decay(1.0, 2)(jnp.arange(4)).tolist()]
      [1.0, 0.5, 0.0, 0.0]

    References:
      https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html#optax.schedules.cosine_decay_schedule
      Loshchilov & Hutter 2017, SGDR, https://arxiv.org/abs/1608.03983
    """
    init, alpha = _lr("init_value", init_value), _lr("alpha", alpha)
    steps, exponent = _f("decay_steps", decay_steps, gt=0), _f("exponent", exponent)
    return lambda step: _anneal(init, init * alpha, _progress(f32(step), 0.0, steps), "cos",
                                exponent)


def warmup(schedule: Schedule, warmup_steps: ArrayLike, init_value: ArrayLike = 0.0) -> Schedule:
    """Linear warm-up from ``init_value`` to ``schedule(0)``, then ``schedule`` shifted.

    ``lr(t) = init + (schedule(0) - init) * t / warmup_steps`` for ``t < warmup_steps``, else
    ``schedule(t - warmup_steps)``; ``warmup_steps=0`` gives ``schedule`` itself.

    Args:
      schedule: any ``step -> lr`` function (jaxlr or optax).
      warmup_steps: length of the warm-up, >= 0.
      init_value: value at step 0, >= 0.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> jaxlr.warmup(jaxlr.constant(1.0), 4)(jnp.arange(6)).tolist()
      [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]

    References:
      Goyal et al. 2017, gradual warm-up, https://arxiv.org/abs/1706.02677
    """
    steps = _f("warmup_steps", warmup_steps, ge=0)
    init = _lr("init_value", init_value)

    def warmed(step):
        step = f32(step)
        ramp = _anneal(init, f32(schedule(jnp.zeros((), jnp.float32))), _progress(step, 0.0, steps))
        return jnp.where(step < steps, ramp, f32(schedule(jnp.maximum(step - steps, 0.0))))

    return warmed


def warmup_cosine_decay(init_value: ArrayLike, peak_value: ArrayLike, warmup_steps: ArrayLike,
                        decay_steps: ArrayLike, end_value: ArrayLike = 0.0,
                        exponent: ArrayLike = 1.0) -> Schedule:
    """Linear warm-up to ``peak_value``, then cosine decay to ``end_value`` (optax's).

    ``lr(t) = init + (peak - init) * t / warmup_steps`` for ``t < warmup_steps``, then
    ``end + (peak - end) * (0.5 * (1 + cos(pi * p)))**exponent``,
    ``p = min(t - warmup_steps, decay_steps - warmup_steps) / (decay_steps - warmup_steps)``.
    As in optax, ``peak_value == 0`` gives 0 after the warm-up whatever ``end_value``.

    Args:
      init_value: value at step 0, >= 0.
      peak_value: value at the end of the warm-up, >= 0.
      warmup_steps: length of the warm-up, >= 0.
      decay_steps: total length, warm-up included, > ``warmup_steps``.
      end_value: value from ``decay_steps`` on, >= 0.
      exponent: power applied to the cosine factor.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> s = jaxlr.warmup_cosine_decay(0.0, 1.0, 2, 4)
      >>> [round(x, 6) for x in s(jnp.arange(6)).tolist()]
      [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]

    References:
      https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html#optax.schedules.warmup_cosine_decay_schedule
    """
    _lr("init_value", init_value)
    warm = _f("warmup_steps", warmup_steps, ge=0)
    total = _f("decay_steps", decay_steps, gt=0)
    peak, end = _lr("peak_value", peak_value), _lr("end_value", end_value)
    _check(lambda w, d: w < d, "warmup_steps must be < decay_steps", warmup_steps=warmup_steps,
           decay_steps=decay_steps)
    alpha = jnp.where(peak == 0, 0.0, end / jnp.where(peak == 0, 1.0, peak))  # optax's alpha
    return warmup(cosine_decay(peak, total - warm, alpha, exponent), warm, init_value)


def join(schedules: Sequence[Schedule], boundaries: Sequence[ArrayLike]) -> Schedule:
    """Run ``schedules`` one after another (optax ``join_schedules``).

    ``lr(t) = schedules[i](t - boundaries[i-1])`` for ``boundaries[i-1] <= t < boundaries[i]``
    (``schedules[0](t)`` before ``boundaries[0]``): each schedule restarts from step 0.

    Args:
      schedules: ``n`` step -> lr functions.
      boundaries: ``n - 1`` strictly increasing steps >= 0 (a list of scalars, possibly
        traced, or a 1-D array, possibly a traced vector).

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> s = jaxlr.join([jaxlr.constant(1.0), jaxlr.linear(0.5, 0.0, 2)], [2])
      >>> s(jnp.arange(5)).tolist()
      [1.0, 1.0, 0.5, 0.25, 0.0]

    References:
      https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html#optax.schedules.join_schedules
    """
    schedules = list(schedules)
    require(len(schedules) > 0 and all(map(callable, schedules)),
            f"schedules must be a non-empty list of step -> lr functions, got {schedules!r}")
    bounds = vector("boundaries", boundaries, ge=0, increasing=True)
    require(bounds.shape[0] == len(schedules) - 1,
            f"boundaries must have len(schedules) - 1 = {len(schedules) - 1} entries, got "
            f"{bounds.shape[0]}; give one boundary between each pair of schedules")

    def joined(step):
        step = f32(step)
        out = f32(schedules[0](step))
        for b, s in zip(bounds, schedules[1:], strict=True):
            out = jnp.where(step < b, out, f32(s(jnp.maximum(step - b, 0.0))))
        return out

    return joined


def step_decay(init_value: ArrayLike, step_size: ArrayLike, factor: ArrayLike = 0.1) -> Schedule:
    """Multiply by ``factor`` every ``step_size`` steps (torch ``StepLR``).

    ``lr(t) = init * factor**floor(t / step_size)``

    Args:
      init_value: initial value, >= 0.
      step_size: steps between cuts, > 0.
      factor: multiplier per cut (torch's ``gamma``), >= 0.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> jaxlr.step_decay(1.0, 2, factor=0.5)(jnp.arange(5)).tolist()
      [1.0, 1.0, 0.5, 0.5, 0.25]

    References:
      https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.StepLR.html
    """
    init, size = _lr("init_value", init_value), _f("step_size", step_size, gt=0)
    factor = _f("factor", factor, ge=0)
    return lambda step: init * factor ** _ratio(f32(step), size, True)


def multistep_decay(init_value: ArrayLike, milestones: Sequence[ArrayLike],
                    factor: ArrayLike = 0.1) -> Schedule:
    """Multiply by ``factor`` at each milestone (torch ``MultiStepLR``).

    ``lr(t) = init * factor**n(t)``, ``n(t)`` = number of milestones <= t (a milestone given twice
    counts twice, as in torch).

    Args:
      init_value: initial value, >= 0.
      milestones: non-decreasing steps >= 0 (a list of scalars, possibly traced, or a 1-D array,
        possibly a traced vector).
      factor: multiplier per milestone (torch's ``gamma``), >= 0.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> jaxlr.multistep_decay(1.0, [1, 3], factor=0.5)(jnp.arange(5)).tolist()
      [1.0, 0.5, 0.5, 0.25, 0.25]

    References:
      https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.MultiStepLR.html
    """
    init, factor = _lr("init_value", init_value), _f("factor", factor, ge=0)
    marks = vector("milestones", milestones, ge=0, increasing=True, strict=False)

    def schedule(step):
        step = f32(step)
        passed = jnp.sum(marks <= step[..., None], axis=-1, dtype=jnp.float32)
        return init * factor ** passed

    return schedule


def one_cycle(total_steps: ArrayLike, max_lr: ArrayLike, pct_start: ArrayLike = 0.3,
              anneal_strategy: str = "cos", div_factor: ArrayLike = 25.0,
              final_div_factor: ArrayLike = 1e4, three_phase: bool = False) -> Schedule:
    """The 1cycle policy (torch ``OneCycleLR``, learning rate only).

    From ``initial = max_lr / div_factor`` up to ``max_lr`` until step ``pct_start * total - 1``,
    then down to ``min = initial / final_div_factor`` at ``total - 1`` (``three_phase``: down to
    ``initial`` at ``2 * pct_start * total - 2``, then to ``min``). Within a phase from ``a`` to
    ``b``: ``cos``: ``b + (a - b) / 2 * (cos(pi * p) + 1)``; ``linear``: ``a + (b - a) * p``.
    Past ``total_steps - 1`` the last value is held (torch raises).

    Args:
      total_steps: length of the cycle, > 0.
      max_lr: peak value, >= 0.
      pct_start: share of the cycle spent rising, in (0, 1), with ``pct_start * total_steps > 1``.
      anneal_strategy: ``"cos"`` or ``"linear"``.
      div_factor: ``max_lr / initial``, > 0.
      final_div_factor: ``initial / min``, > 0.
      three_phase: go back to ``initial`` before the final descent.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> s = jaxlr.one_cycle(5, 1.0, pct_start=0.6, anneal_strategy="linear", div_factor=4.0,
      ...                     final_div_factor=1.0)
      >>> s(jnp.arange(6)).tolist()
      [0.25, 0.625, 1.0, 0.625, 0.25, 0.25]

    References:
      https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.OneCycleLR.html
      Smith & Topin 2017, Super-convergence, https://arxiv.org/abs/1708.07120
    """
    _choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
    total, peak = _f("total_steps", total_steps, gt=0), _lr("max_lr", max_lr)
    pct = _f("pct_start", pct_start, gt=0, lt=1)
    initial = peak / _f("div_factor", div_factor, gt=0)
    low = initial / _f("final_div_factor", final_div_factor, gt=0)
    _check(lambda p, t: p * t > 1, "pct_start * total_steps must be > 1 (the rise needs 2 "
           "steps or more; torch divides by zero otherwise)", "; raise either",
           pct_start=pct_start, total_steps=total_steps)
    up = pct * total - 1
    phases = ([(up, initial, peak), (2 * up, peak, initial), (total - 1, initial, low)]
              if three_phase else [(up, initial, peak), (total - 1, peak, low)])

    def schedule(step):
        step = jnp.minimum(f32(step), total - 1)
        values, begin = [], 0.0
        for end, a, b in phases:
            values.append(_anneal(a, b, _progress(step, begin, end - begin), anneal_strategy))
            begin = end
        out = values[-1]  # torch: the first phase whose end_step >= step, else the last
        for (end, _, _), value in zip(phases[-2::-1], values[-2::-1], strict=True):
            out = jnp.where(step <= end, value, out)
        return out

    return schedule


def cyclic(base_lr: ArrayLike, max_lr: ArrayLike, step_size_up: ArrayLike = 2000,
           step_size_down: ArrayLike | None = None, mode: str = "triangular",
           gamma: ArrayLike = 1.0) -> Schedule:
    """Triangular cycles between ``base_lr`` and ``max_lr`` (torch ``CyclicLR``).

    With ``L = up + down``, ``k = floor(t / L)``, ``x = t / L - k``:
    ``h = x / r`` if ``x <= r`` else ``(1 - x) / (1 - r)`` (``r = up / L``) and
    ``lr(t) = base + (max - base) * h * s``, ``s = 1`` (``"triangular"``), ``1 / 2**k``
    (``"triangular2"``) or ``gamma**t`` (``"exp_range"``).

    Args:
      base_lr: lowest value (at the start of each cycle), >= 0.
      max_lr: highest value (before any scaling), >= 0.
      step_size_up: steps rising, > 0.
      step_size_down: steps falling, > 0; None means ``step_size_up``.
      mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
      gamma: ``exp_range`` factor per step, > 0.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> jaxlr.cyclic(0.0, 1.0, 2, mode="triangular2")(jnp.arange(7)).tolist()
      [0.0, 0.5, 1.0, 0.5, 0.0, 0.25, 0.5]

    References:
      https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CyclicLR.html
      Smith 2017, Cyclical learning rates, https://arxiv.org/abs/1506.01186
    """
    _choice("mode", mode, ("triangular", "triangular2", "exp_range"))
    base, peak = _lr("base_lr", base_lr), _lr("max_lr", max_lr)
    up = _f("step_size_up", step_size_up, gt=0)
    down = up if step_size_down is None else _f("step_size_down", step_size_down, gt=0)
    gamma = _f("gamma", gamma, gt=0)
    length = up + down
    rise = up / _safe(length)
    scales = {"triangular": lambda k, t: 1.0, "triangular2": lambda k, t: 0.5 ** k,
              "exp_range": lambda k, t: gamma ** t}

    def schedule(step):
        step = f32(step)
        k = _ratio(step, length, True)  # completed cycles (torch's cycle - 1)
        x = (step - k * length) / _safe(length)  # exact remainder for integer steps
        h = jnp.where(x <= rise, x / _safe(rise), (1.0 - x) / _safe(1.0 - rise))
        return base + (peak - base) * h * scales[mode](k, step)

    return schedule


def inverse_time_decay(init_value: ArrayLike, decay_steps: ArrayLike, decay_rate: ArrayLike,
                       staircase: ArrayLike = False) -> Schedule:
    """Inverse-time decay (Keras ``InverseTimeDecay``).

    ``lr(t) = init / (1 + decay_rate * p)``, ``p = t / decay_steps`` (floored if ``staircase``).

    Args:
      init_value: initial value, >= 0.
      decay_steps: steps per unit of ``p``, > 0.
      decay_rate: speed of the decay, >= 0.
      staircase: decay in whole jumps (a bool, may be traced).

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> jaxlr.inverse_time_decay(1.0, 1, 1.0)(jnp.arange(4)).tolist()
      [1.0, 0.5, 0.3333333432674408, 0.25]

    References:
      https://keras.io/api/optimizers/learning_rate_schedules/inverse_time_decay/
    """
    init, steps = _lr("init_value", init_value), _f("decay_steps", decay_steps, gt=0)
    rate = _f("decay_rate", decay_rate, ge=0)
    return lambda step: init / (1.0 + rate * _ratio(f32(step), steps, staircase))


def cosine_restarts(init_value: ArrayLike, first_decay_steps: ArrayLike, t_mul: ArrayLike = 2.0,
                    m_mul: ArrayLike = 1.0, alpha: ArrayLike = 0.0) -> Schedule:
    """Cosine decay with warm restarts, SGDR (Keras ``CosineDecayRestarts``).

    Period ``i`` lasts ``first_decay_steps * t_mul**i`` steps; at a step a fraction ``p`` into
    period ``i``: ``lr = init * ((1 - alpha) * m_mul**i * 0.5 * (1 + cos(pi * p)) + alpha)``.
    ``i`` follows Keras' closed form ``floor(log(1 - f * (1 - t_mul)) / log(t_mul))`` (``f`` =
    step / first_decay_steps), corrected so an exact restart step gives the restart value. With
    ``t_mul < 1`` the periods add up to ``first_decay_steps / (1 - t_mul)``; from there on the
    value is ``alpha * init_value`` (Keras gives NaN).

    Args:
      init_value: initial value, >= 0.
      first_decay_steps: length of the first period, > 0.
      t_mul: growth of the period length per restart, > 0.
      m_mul: growth of the restart value per restart, >= 0.
      alpha: lowest value as a fraction of ``init_value``, >= 0.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> s = jaxlr.cosine_restarts(1.0, 2, t_mul=2.0, m_mul=0.5)
      >>> [round(x, 4) for x in s(jnp.arange(7)).tolist()]
      [1.0, 0.5, 0.5, 0.4268, 0.25, 0.0732, 0.25]

    References:
      https://keras.io/api/optimizers/learning_rate_schedules/cosine_decay_restarts/
      Loshchilov & Hutter 2017, SGDR, https://arxiv.org/abs/1608.03983
    """
    init, alpha = _lr("init_value", init_value), _lr("alpha", alpha)
    first = _f("first_decay_steps", first_decay_steps, gt=0)
    t_mul, m_mul = _f("t_mul", t_mul, gt=0), _f("m_mul", m_mul, ge=0)
    flat = t_mul == 1
    t_safe = jnp.where(flat, 2.0, _safe(t_mul))  # keeps log(t) and 1 - t away from 0
    bottom = init * alpha

    def periods(i):  # total length of periods 0 .. i-1, in units of first_decay_steps
        return jnp.where(flat, i, (1.0 - t_safe ** i) / (1.0 - t_safe))

    def schedule(step):
        f = jnp.maximum(f32(step), 0.0) / _safe(first)
        done = (t_mul < 1) & (f * (1.0 - t_mul) >= 1)
        f = jnp.where(done, 0.0, f)
        i = jnp.floor(jnp.where(flat, f, jnp.log(1.0 - f * (1.0 - t_safe)) / jnp.log(t_safe)))
        # float32 rounding at restarts
        i = i + (f >= periods(i + 1)).astype(jnp.float32) - (f < periods(i)).astype(jnp.float32)
        p = jnp.clip((f - periods(i)) / t_mul ** i, 0.0, 1.0)
        top = bottom + (init - bottom) * m_mul ** i
        return jnp.where(done, bottom, _anneal(top, bottom, p, "cos"))

    return schedule


def warmup_stable_decay(peak_value: ArrayLike, total_steps: ArrayLike, warmup_steps: ArrayLike,
                        decay_steps: ArrayLike, init_value: ArrayLike = 0.0,
                        end_value: ArrayLike = 0.0, decay_shape: str = "linear") -> Schedule:
    """Warmup-stable-decay, WSD: linear warm-up, a flat stretch, then a short decay.

    ``init -> peak`` linearly over ``[0, warmup_steps]``, ``peak`` until ``d0 = total_steps -
    decay_steps``, then ``end + (peak - end) * w(p)``, ``p = (t - d0) / decay_steps`` with
    ``w = 1 - p`` (``"linear"``), ``(1 + cos(pi * p)) / 2`` (``"cosine"``) or ``1 - sqrt(p)``
    (``"1-sqrt"``); ``end_value`` from ``total_steps`` on.

    Args:
      peak_value: value of the stable phase, >= 0.
      total_steps: length of the schedule, > 0.
      warmup_steps: length of the warm-up, >= 0.
      decay_steps: length of the decay, >= 0, with ``warmup_steps + decay_steps <= total_steps``.
      init_value: value at step 0, >= 0.
      end_value: value at and after ``total_steps``, >= 0.
      decay_shape: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> jaxlr.warmup_stable_decay(1.0, 8, 2, 4)(jnp.arange(9)).tolist()
      [0.0, 0.5, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]

    References:
      Hägele et al. 2024, https://arxiv.org/abs/2405.18392 (1-sqrt cooldown);
      Hu et al. 2024, MiniCPM, https://arxiv.org/abs/2404.06395
    """
    _choice("decay_shape", decay_shape, ("linear", "cosine", "1-sqrt"))
    peak, total = _lr("peak_value", peak_value), _f("total_steps", total_steps, gt=0)
    warm, decay = _f("warmup_steps", warmup_steps, ge=0), _f("decay_steps", decay_steps, ge=0)
    init, end = _lr("init_value", init_value), _lr("end_value", end_value)
    _check(lambda w, d, t: w + d <= t, "warmup_steps + decay_steps must be <= total_steps",
           "; shorten the warm-up or the decay", warmup_steps=warmup_steps,
           decay_steps=decay_steps, total_steps=total_steps)
    shape = {"cosine": "cos"}.get(decay_shape, decay_shape)

    def schedule(step):
        step = f32(step)
        ramp = _anneal(init, peak, _progress(step, 0.0, warm))
        fall = _anneal(peak, end, _progress(step, total - decay, decay), shape)
        return jnp.where(step < warm, ramp, jnp.where(step < total - decay, peak, fall))

    return schedule


def tabulated(values: ArrayLike) -> Schedule:
    r"""A schedule read from a table of per-step values (e.g. a recorded LR trajectory).

    :math:`\eta_t = v_{\min(\max(t, 0),\, T-1)}` for a table :math:`v` of length :math:`T`:
    step ``t`` reads entry ``t``, and steps past the end keep the last value.

    Args:
      values: a 1-D array of T >= 1 finite values >= 0 (possibly traced: a traced table is
        not checked).

    Returns:
      ``schedule(step) -> lr``.

    Example:
      >>> import jaxlr, jax.numpy as jnp
      >>> s = jaxlr.tabulated([0.5, 0.5, 0.25, 0.125])
      >>> s(jnp.arange(6)).tolist()
      [0.5, 0.5, 0.25, 0.125, 0.125, 0.125]

    References:
      What :meth:`jaxlr.SweepResult.schedule` returns for a population-based member's LR;
      optax's schedules as ``step -> value`` functions:
      https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html
    """
    if is_traced(values):
        table = f32(values)
    else:
        host = np.asarray(values, np.float64)
        bad = np.flatnonzero(~(np.isfinite(host) & (host >= 0))) if host.ndim == 1 else []
        if len(bad):
            i = int(bad[0])
            raise ValueError(f"values must be finite and >= 0, got values[{i}]={fmt(host[i])}"
                             f"{NEGATIVE_LR if host[i] < 0 else ''}")
        table = f32(host)
    require(table.ndim == 1 and table.shape[0] >= 1,
            f"values must be a 1-D table of at least one value, got shape {table.shape}")

    def schedule(step):
        return table[jnp.clip(jnp.asarray(step, jnp.int32), 0, table.shape[0] - 1)]

    return schedule
