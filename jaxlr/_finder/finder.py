"""The LR range test (Smith 2017): one exponential LR ramp, vmapped over seeds, one program.

The training runs on the sweep engine (:func:`jaxlr.sweep`, one ``jit(vmap(scan))`` program over
the seeds), whose per-seed divergence stop is this module's rule (:func:`stop_rule`): a stopped
seed is frozen inside the program. Everything after it is plain numpy over the recorded curves:
the smoothing and the three suggestions (and the same stop rule, :func:`divergence_step`, so a
:class:`FinderResult` can also be rebuilt from saved curves with
:meth:`FinderResult.from_curves`).

Why one file of ~490 lines: the result, the stop rule (in-program and numpy, kept together
so they cannot drift apart) and the three suggestion rules are one concept.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxlr._optim import adam
from jaxlr._sweep import DivergenceRule, grid, sweep

#: Floor of the divergence scale relative to the start level (see :func:`find_lr`).
_FLOOR = 0.01


class FinderResult:
    """The curves and suggestions of an LR range test (see :func:`find_lr`).

    Attributes:
        lrs: [steps] the learning rate of each step (the exponential ramp).
        losses: [seeds, steps] the training loss of each step's batch, measured before that
            step's update; NaN after a seed's divergence stop (the loss that fired it is kept).
        smoothed: [seeds, steps] bias-corrected exponential moving average of ``losses`` (factor
            ``beta``), up to and including the stop step while the loss is finite; NaN after.
        diverged_at: [seeds] int, the step where the divergence stop fired, -1 if never.
        mean: [steps] mean of ``smoothed`` over the seeds that are still running at each step
            (NaN once every seed stopped).
        spread: [steps] standard deviation (ddof 0) of ``smoothed`` over those seeds.
        suggestions: dict ``valley``, ``steepest``, ``minimum`` -> learning rate (NaN when the
            curve does not define it), computed on ``mean`` over ``window``.
        suggestion: the default learning rate: the median (in log space) of the finite
            suggestions, NaN if none.
        window: (start, end) the steps the suggestions look at: from the end of the warm-up,
            ``max(2, steps // 10)``, to the first stop of any seed (exclusive) or the end.
        seeds: [seeds] the seed of each row; beta, divergence_factor: the settings used.

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> h = jnp.logspace(-1, 1, 8)  # a quadratic: GD diverges past lr = 2 / max(h) = 0.2
        >>> res = jaxlr.find_lr(lambda k: jnp.ones(8), lambda w, b: 0.5 * jnp.sum(h * w ** 2)
        ...                     + 0.0 * jnp.sum(b[0]), (jnp.zeros((4, 1)),),
        ...                     lambda lr: jaxlr.sgd(lr), batch_size=4)
        >>> res.losses.shape, bool(0 < res.diverged_at[0] < 100), res.suggestion < 0.2
        ((1, 100), True, True)
    """

    def __init__(self, *, lrs: Any, losses: Any, smoothed: Any, diverged_at: Any,
                 suggestions: dict[str, float], suggestion: float, window: tuple[int, int],
                 seeds: Any, beta: float, divergence_factor: float):
        self.lrs = np.asarray(lrs, np.float64)
        self.losses = np.atleast_2d(np.asarray(losses, np.float64))
        self.smoothed = np.atleast_2d(np.asarray(smoothed, np.float64))
        self.diverged_at = np.atleast_1d(np.asarray(diverged_at, np.int64))
        self.suggestions = {k: float(v) for k, v in suggestions.items()}
        self.suggestion = float(suggestion)
        self.window = (int(window[0]), int(window[1]))
        self.seeds = np.atleast_1d(np.asarray(seeds))
        self.beta, self.divergence_factor = float(beta), float(divergence_factor)
        self.mean, self.spread = _mean_spread(self.smoothed)

    @classmethod
    def from_curves(cls, lrs: Any, losses: Any, *, beta: float = 0.98,
                    divergence_factor: float = 4.0, diverged_at: Any = None,
                    seeds: Any = None) -> FinderResult:
        """Apply the divergence stop, smoothing and suggestions of :func:`find_lr` to curves.

        Args:
            lrs: [steps] increasing learning rates (one per step).
            losses: [steps] or [seeds, steps] raw losses.
            beta: smoothing factor in [0, 1).
            divergence_factor: the stop rule's factor (> 0).
            diverged_at: optional [seeds] steps where training was already stopped (e.g. by the
                sweep's quarantine), -1 for none; the earlier of it and the rule wins.
            seeds: optional [seeds] labels (default 0, 1, ...).

        Returns:
            A :class:`FinderResult`.
        """
        lrs = np.asarray(lrs, np.float64)
        raw = np.atleast_2d(np.asarray(losses, np.float64))
        n_seeds, steps = raw.shape
        _validate(1.0, 2.0, max(steps, 10), 1, beta, divergence_factor)
        if lrs.shape != (steps,):
            raise ValueError(f"lrs must have one entry per step, got lrs of shape {lrs.shape} "
                             f"and losses of shape {raw.shape}")
        given = (np.full(n_seeds, -1) if diverged_at is None
                 else np.atleast_1d(np.asarray(diverged_at, np.int64)))
        stops = np.empty(n_seeds, np.int64)
        losses_out = raw.copy()
        smoothed = np.full_like(raw, np.nan)
        for s in range(n_seeds):
            stop = divergence_step(raw[s], divergence_factor, beta)
            if given[s] >= 0:
                stop = int(given[s]) if stop < 0 else min(stop, int(given[s]))
            stops[s] = stop
            if stop >= 0:
                losses_out[s, stop + 1:] = np.nan
            smoothed[s] = smooth(losses_out[s], beta)

        mean, _ = _mean_spread(smoothed)
        start = _warmup(steps)
        alive = stops[stops >= 0]
        end = int(alive.min()) if alive.size else steps
        level, _ = _start_level(raw[:, :start])  # pooled over seeds
        suggestions = suggest(lrs[start:end], mean[start:end], level) if end - start >= 3 else {
            "valley": math.nan, "steepest": math.nan, "minimum": math.nan}
        _warn_if_unreliable(lrs, start, end, stops, mean)
        return cls(lrs=lrs, losses=losses_out, smoothed=smoothed, diverged_at=stops,
                   suggestions=suggestions, suggestion=_median_log(suggestions.values()),
                   window=(start, max(start, end)),
                   seeds=np.arange(n_seeds) if seeds is None else seeds, beta=beta,
                   divergence_factor=divergence_factor)

    def __repr__(self) -> str:
        stops = ", ".join(str(int(d)) for d in self.diverged_at)
        return (f"FinderResult(seeds={len(self.diverged_at)}, steps={len(self.lrs)}, "
                f"suggestion={self.suggestion:.3g}, diverged_at=[{stops}])")

    def plot(self, **kwargs: Any) -> Any:
        """Smoothed loss vs LR (log x), the seed band and the suggestions marked: see
        :func:`jaxlr._plot.plot_finder` (needs ``pip install jaxlr[plot]``); keyword arguments
        (e.g. ``path="finder.png"``) are passed on. Returns the ``matplotlib`` figure."""
        from jaxlr._plot import plot_finder

        return plot_finder(self, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain numpy arrays and floats of everything measured and suggested."""
        return {"lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed,
                "diverged_at": self.diverged_at, "mean": self.mean, "spread": self.spread,
                "suggestion": self.suggestion, "suggestions": dict(self.suggestions),
                "window": self.window, "seeds": self.seeds, "beta": self.beta,
                "divergence_factor": self.divergence_factor}


def find_lr(
    model: Any,
    loss_fn: Callable,
    data: Any,
    optimizer: Callable[[Callable], Any] = lambda lr: adam(lr),
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    seeds: int | Sequence[int] = 1,
    batch_size: int,
    beta: float = 0.98,
    divergence_factor: float = 4.0,
    progress: bool = False,
) -> FinderResult:
    r"""LR range test: train once while the learning rate grows exponentially, and read off a
    good learning rate from where the loss falls fastest and where it turns up.

    Every seed trains from its own initialization on its own batches with the same ramp

    .. math::
        \eta_t = \eta_{min} \left(\eta_{max} / \eta_{min}\right)^{t / (T - 1)},
        \qquad t = 0, \dots, T-1,

    all seeds in ONE compiled program (:func:`jaxlr.sweep` over ``grid(seed=seeds)``; the ramp is
    passed as the schedule to ``optimizer``). ``losses[s, t]`` is the loss of step ``t``'s batch
    before its update with :math:`\eta_t`.

    **Smoothing**: the bias-corrected exponential moving average of fastai/Lightning,
    :math:`a_t = \beta a_{t-1} + (1-\beta) x_t`, :math:`a_{-1} = 0`,
    :math:`\hat x_t = a_t / (1 - \beta^{t+1})`, of each seed's raw losses :math:`x_t` up to and
    including its stop step (the correction makes :math:`\hat x_0 = x_0`, not
    :math:`(1-\beta) x_0`). With :math:`\beta = 0.98` it averages ~50 steps, so its features
    lag the raw loss by a few ramp steps; ``beta=0`` turns it off.

    **Divergence stop** (per seed). fastai/Lightning stop on ``smoothed > 4 * best``, which
    NaN never satisfies and which fires at once for negative losses (fastai#962). Here the
    warm-up is the first :math:`w = \max(2, \lfloor T/10 \rfloor)` steps (the ones the
    suggestions skip); it gives the start level :math:`\ell_0` (median of its raw losses) and
    the batch noise :math:`\rho` (1.4826 x their median absolute deviation, i.e. the standard
    deviation for Gaussian noise). With :math:`\hat m_{t-1} = \min_{w-1 \le s < t} \hat x_s`
    the lowest smoothed loss since the warm-up, :math:`f` = ``divergence_factor`` and

    .. math::
        \theta_t = \hat m_{t-1} + f \max\!\big(\ell_0 - \hat m_{t-1},\; \rho,\;
        0.01\,|\ell_0|\big),

    the stop fires at the first step :math:`t` where :math:`x_t` is NaN or :math:`\pm\infty`,
    or (:math:`t \ge w`) where :math:`\hat x_t`, :math:`x_t` and :math:`x_{t-1}` all exceed
    :math:`\theta_t`: the loss rose above its lowest point by more than :math:`f` times its
    whole fall from the start (or :math:`f` times the batch noise, or 1% of the start level,
    whichever is larger), in the smoothed curve and in two consecutive batches, so a single
    outlier batch is not a divergence. Apart from the 1% floor only differences of losses
    enter: a constant shift (negative losses) does not move the stop unless 1% of
    :math:`|\ell_0|` exceeds the fall. On an exponential blow-up (GD on a quadratic: ~100x per
    step) it fires about when the raw loss passes :math:`f / (1-\beta)` (200 by default) times
    its fall; on a slow climb the smoothing delays it. A seed's losses after its stop are NaN.
    The non-finite test runs inside the compiled program (the sweep's quarantine freezes the
    seed); the rise test is causal, so applying it to the recorded curve gives the same step.

    **Suggestions**, on the mean over seeds of :math:`\hat x` (``mean``) over ``window``: from
    step :math:`w` (after the warm-up, where the bias-corrected average is still noisy) up to
    the first stop of any seed (exclusive). Slopes are :math:`d\hat x / d\ln\eta`
    (``np.gradient`` against :math:`\ln \eta`, not the step index or the linear LR:
    Lightning#21141, #14248).

    - ``steepest``: the LR of the most negative slope, at or before the curve's minimum and
      where the curve is below :math:`\ell_0` (pooled over seeds), so neither early noise nor
      the slow decay of an early spike in the average counts (Lightning#1767);
    - ``minimum``: the LR of the curve's minimum divided by 10 (fastai's ``minimum``);
    - ``valley``: fastai's ``valley`` re-implemented: the longest strictly decreasing
      subsequence of the curve ends at index ``e`` with length ``n``; with ``b = e - n`` and
      ``k = (e - b) / 3`` the LR at ``b + int(k) + int(k / 2)`` (about halfway down the valley);
    - ``suggestion`` (default): the median of the three in log space (the geometric mean of
      two, the one if only one is defined, NaN if none). Each rule fails on some curves:
      ``valley`` on a loss that falls from the very first step (GD on a quadratic with top
      curvature L: ~0.01/L), ``steepest`` where the smoothing lags (there: 0.5/L to 9/L,
      depending on the start point), ``minimum`` when the loss never turns up (there: ~1.3/L,
      right); the median needs two of them to fail.

    A ``RuntimeWarning`` says when the curve cannot be read (a stop inside the warm-up: lower
    ``min_lr``; still falling at ``max_lr``: raise it).

    The result is deterministic for given seeds (fastai#3295): the same inputs give the same
    arrays.

    Args:
        model: what :func:`jaxlr.sweep` accepts as ``init``: ``key -> params`` (pytree or linen
            variables), ``key -> nnx.Module`` or an ``nnx.Module`` instance.
        loss_fn: ``(model_or_params, batch) -> loss`` or ``(loss, aux_dict)``.
        data: a tuple/dict of arrays with the examples on axis 0, or an iterable of batches.
        optimizer: ``schedule -> optax transform``, called once with the ramp (a ``step -> lr``
            function), e.g. ``lambda lr: jaxlr.sgd(lr, momentum=0.9)`` (default: Adam).
        min_lr: first learning rate of the ramp (> 0).
        max_lr: last learning rate of the ramp (> ``min_lr``).
        steps: number of steps of the ramp (>= 10).
        seeds: number of seeds (``k`` means seeds ``0..k-1``) or a list of seeds.
        batch_size: examples per step.
        beta: smoothing factor in [0, 1) (0: no smoothing; 0.98 as fastai and Lightning).
        divergence_factor: :math:`f` of the stop rule above (> 0).
        progress: show a progress bar.

    Returns:
        A :class:`FinderResult` with ``lrs``, ``losses``/``smoothed`` [seeds, steps],
        ``diverged_at``, ``mean``/``spread`` [steps], ``suggestion``, ``suggestions``,
        ``to_dict()`` and ``plot()``.

    Example:
        GD on a quadratic with curvatures 0.1 ... 10 (top curvature L = 10, so GD is stable for
        lr < 2/L = 0.2 and fastest near 1/L):

        >>> import jax.numpy as jnp, jaxlr
        >>> from jaxlr import find_lr
        >>> h = jnp.logspace(-1, 1, 8)
        >>> res = find_lr(lambda key: jnp.ones(8), lambda w, batch: 0.5 * jnp.sum(h * w**2),
        ...               (jnp.zeros((4, 1)),), lambda lr: jaxlr.sgd(lr), batch_size=4)
        >>> res.losses.shape, 0.005 <= res.suggestion <= 0.2
        ((1, 100), True)
        >>> bool(res.lrs[res.diverged_at[0]] > 0.2)  # stopped after the loss blew up
        True

    References:
        L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", 2017, section 3.3
        (LR range test): https://arxiv.org/abs/1506.01186 ;
        fastai ``lr_find`` and its ``valley``/``minimum``/``steep`` suggestions:
        https://docs.fast.ai/callback.schedule.html#lr_find (source:
        https://github.com/fastai/fastai/blob/master/fastai/callback/schedule.py) ;
        PyTorch Lightning LR finder:
        https://lightning.ai/docs/pytorch/stable/advanced/training_tricks.html#learning-rate-finder
    """
    min_lr, max_lr, steps, beta, divergence_factor = _validate(
        min_lr, max_lr, steps, seeds, beta, divergence_factor)
    if not callable(optimizer):
        raise ValueError(f"optimizer must be a function schedule -> optax transform (e.g. "
                         f"lambda lr: jaxlr.adam(lr)), got optimizer={optimizer!r}")
    ramp = exponential_ramp(min_lr, max_lr, steps)
    res = sweep(model, loss_fn, data, lambda hp: optimizer(ramp), grid(seed=seeds),
                steps=steps, batch_size=batch_size,
                progress="jaxlr find" if progress is True else progress,
                divergence=stop_rule(divergence_factor, beta, _warmup(steps)))
    lrs = np.asarray(ramp(jnp.arange(steps)), np.float64)
    return FinderResult.from_curves(lrs, res.loss, beta=beta, divergence_factor=divergence_factor,
                                    diverged_at=res.diverged_at, seeds=res.hparams["seed"])


def exponential_ramp(min_lr: float, max_lr: float, steps: int) -> Callable[[Any], jnp.ndarray]:
    r"""The schedule ``step -> min_lr * (max_lr / min_lr) ** (step / (steps - 1))`` (float32,
    jit/vmap-safe; computed as :math:`\exp(\ln\eta_{min} + t/(T-1)\,\ln(\eta_{max}/\eta_{min}))`
    so no power overflows)."""
    log_min = math.log(min_lr)
    log_ratio = math.log(max_lr / min_lr) / (steps - 1)

    def schedule(step: Any) -> jnp.ndarray:
        t = jnp.asarray(step, jnp.float32)
        return jnp.exp(jnp.float32(log_min) + t * jnp.float32(log_ratio))

    return schedule


def divergence_step(losses: Any, factor: float, beta: float = 0.98,
                    warmup: int | None = None) -> int:
    """The first step where the divergence stop of :func:`find_lr` fires on one raw loss curve,
    -1 if never (see the rule there; ``warmup`` defaults to ``max(2, steps // 10)``)."""
    x = np.asarray(losses, np.float64)
    n = len(x)
    bad = np.flatnonzero(~np.isfinite(x))
    first_bad = int(bad[0]) if bad.size else n
    w = _warmup(n) if warmup is None else int(warmup)
    if first_bad <= w:
        return first_bad if first_bad < n else -1
    level, noise = _start_level(x[:w])
    s = smooth(x[:first_bad], beta)
    low = np.full_like(s, np.inf)  # low[t] = min of s[u] over w - 1 <= u <= t
    low[w - 1:] = np.minimum.accumulate(s[w - 1:])
    t = np.arange(w, first_bad)
    prev_low = low[t - 1]
    scale = np.maximum(np.maximum(level - prev_low, noise), _FLOOR * abs(level))
    threshold = prev_low + factor * scale
    fired = np.flatnonzero((s[t] > threshold) & (x[t] > threshold) & (x[t - 1] > threshold))
    if fired.size:
        return int(t[fired[0]])
    return first_bad if first_bad < n else -1


def stop_rule(factor: float, beta: float, warmup: int) -> DivergenceRule:
    """:func:`divergence_step` as a per-seed rule inside the sweep's program (float32).

    State: the warm-up's raw losses, the EMA, the lowest smoothed loss since the warm-up, the
    start level and noise (fixed at the warm-up's last step) and the previous raw loss.
    """

    def init():
        nan = jnp.float32(jnp.nan)
        return (jnp.zeros(warmup, jnp.float32), jnp.float32(0.0), jnp.float32(jnp.inf), nan, nan,
                nan)

    def update(state, t, loss):
        buf, avg, low, level, noise, prev = state
        loss = loss.astype(jnp.float32)
        buf = jnp.where(t < warmup, buf.at[jnp.minimum(t, warmup - 1)].set(loss), buf)
        avg = beta * avg + (1.0 - beta) * loss
        s = avg / (1.0 - jnp.float32(beta) ** (t + 1).astype(jnp.float32))
        at_end = t == warmup - 1
        med = jnp.median(buf)
        level = jnp.where(at_end, med, level)
        noise = jnp.where(at_end, 1.4826 * jnp.median(jnp.abs(buf - med)), noise)
        scale = jnp.maximum(jnp.maximum(level - low, noise), _FLOOR * jnp.abs(level))
        threshold = low + factor * scale
        fired = (t >= warmup) & (s > threshold) & (loss > threshold) & (prev > threshold)
        low = jnp.where(t >= warmup - 1, jnp.minimum(low, s), low)
        return (buf, avg, low, level, noise, loss), fired

    return DivergenceRule(init=init, update=update)


def _start_level(warmup_losses: Any) -> tuple[float, float]:
    """Robust start level (median) and noise (1.4826 x median absolute deviation, the standard
    deviation for Gaussian noise) of the warm-up's raw losses: one early spike moves neither."""
    x = np.asarray(warmup_losses, np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return math.nan, math.nan
    level = float(np.median(x))
    return level, 1.4826 * float(np.median(np.abs(x - level)))


def smooth(losses: Any, beta: float) -> np.ndarray:
    """Bias-corrected EMA of one curve up to its first non-finite value (NaN from there on)."""
    x = np.asarray(losses, np.float64)
    out = np.full_like(x, np.nan)
    avg = 0.0
    for t, v in enumerate(x):
        if not math.isfinite(v):
            break
        avg = beta * avg + (1.0 - beta) * v
        out[t] = avg / (1.0 - beta ** (t + 1))
    return out


def suggest(lrs: Any, curve: Any, level: float = math.inf) -> dict[str, float]:
    """``valley``, ``steepest`` and ``minimum`` on a finite curve (see :func:`find_lr`);
    ``steepest`` only considers points where ``curve < level`` (the start level)."""
    lrs, curve = np.asarray(lrs, np.float64), np.asarray(curve, np.float64)
    low = int(np.argmin(curve))
    slope = np.gradient(curve, np.log(lrs))
    candidate = (np.arange(len(curve)) <= low) & (curve < level) & (slope < 0)
    steep = int(np.argmin(np.where(candidate, slope, np.inf))) if candidate.any() else None
    valley = valley_index(curve)
    return {
        "valley": float(lrs[valley]) if valley is not None else math.nan,
        "steepest": float(lrs[steep]) if steep is not None else math.nan,
        "minimum": float(lrs[low]) / 10.0,
    }


def valley_index(curve: Any) -> int | None:
    """fastai's ``valley`` rule (``fastai/callback/schedule.py``), re-implemented with a
    vectorized inner loop: the index about halfway down the longest strictly decreasing
    subsequence, None if the curve never decreases."""
    x = np.asarray(curve, np.float64)
    lds = np.ones(len(x), np.int64)
    start = end = 0
    for i in range(1, len(x)):
        higher = x[:i] > x[i]
        if higher.any():
            lds[i] = lds[:i][higher].max() + 1
        if lds[i] > lds[end]:
            end, start = i, i - int(lds[i])
    if lds[end] < 2:
        return None
    sections = (end - start) / 3
    return max(0, start + int(sections) + int(sections / 2))


def _warmup(steps: int) -> int:
    return max(2, steps // 10)


def _median_log(values: Any) -> float:
    ok = sorted(v for v in values if math.isfinite(v) and v > 0)
    if not ok:
        return math.nan
    if len(ok) % 2:
        return ok[len(ok) // 2]
    a, b = ok[len(ok) // 2 - 1], ok[len(ok) // 2]
    return math.sqrt(a * b)


def _mean_spread(smoothed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(smoothed)
    count = ok.sum(axis=0)
    vals = np.where(ok, smoothed, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, vals.sum(axis=0) / count, np.nan)
        var = np.where(ok, (smoothed - mean) ** 2, 0.0).sum(axis=0) / count
    return mean, np.where(count > 0, np.sqrt(var), np.nan)


def _warn_if_unreliable(lrs: np.ndarray, start: int, end: int, stops: np.ndarray,
                        mean: np.ndarray) -> None:
    if end - start < 3:
        at = float(lrs[min(end, len(lrs) - 1)])
        warnings.warn(f"the loss diverged at lr={at:.3g}, before the curve could be read (the "
                      f"first {start} steps are skipped); lower min_lr", RuntimeWarning,
                      stacklevel=3)
    elif (stops < 0).all() and int(np.argmin(mean[start:end])) == end - start - 1:
        warnings.warn(f"the loss was still falling at max_lr={float(lrs[-1]):.3g}: the "
                      "suggestions only see the start of the curve; raise max_lr",
                      RuntimeWarning, stacklevel=3)


def _validate(min_lr: Any, max_lr: Any, steps: Any, seeds: Any, beta: Any,
              factor: Any) -> tuple[float, float, int, float, float]:
    def number(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"{name} must be a number, got {name}={value!r}")
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {name}={value!r}")
        return float(value)

    min_lr, max_lr = number("min_lr", min_lr), number("max_lr", max_lr)
    if min_lr <= 0:
        raise ValueError(f"min_lr must be > 0 (the ramp is exponential), got min_lr={min_lr:g}; "
                         "use a tiny value such as min_lr=1e-7")
    if max_lr <= min_lr:
        raise ValueError(f"max_lr must be > min_lr, got max_lr={max_lr:g}, min_lr={min_lr:g}; "
                         "the ramp goes up, e.g. min_lr=1e-7, max_lr=10")
    n = number("steps", steps)
    if n != int(n) or n < 10:
        raise ValueError(f"steps must be a whole number >= 10, got steps={steps!r}; the "
                         "suggestions need a curve, e.g. steps=100")
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1 (a count) or a non-empty list of seeds, got "
                             f"seeds={seeds!r}; e.g. seeds=3 for error bars")
    elif not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"seeds must be a count >= 1 or a non-empty list of seeds, got "
                         f"seeds={seeds!r}")
    beta = number("beta", beta)
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got beta={beta:g}; 0 disables the smoothing, "
                         "0.98 is fastai's and Lightning's default")
    factor = number("divergence_factor", factor)
    if factor <= 0:
        raise ValueError(f"divergence_factor must be > 0, got divergence_factor={factor:g}; "
                         "e.g. 4 (stop once the loss rose 4x its whole fall above its lowest)")
    return min_lr, max_lr, int(n), beta, factor
