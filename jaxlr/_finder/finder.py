"""The LR range test (Smith 2017): one exponential LR ramp, vmapped over seeds, one program.

The training runs on the sweep engine (:func:`jaxlr.sweep`, one ``jit(vmap(scan))`` program over
the seeds), whose per-seed divergence stop is this module's rule (:func:`stop_rule`): a stopped
seed is frozen inside the program. Everything after it is plain numpy over the recorded curves:
the zero-lag smoothing, the three rules and the default suggestion (and the same stop rule,
:func:`divergence_step`, so a :class:`FinderResult` can also be rebuilt from saved curves with
:meth:`FinderResult.from_curves`). The default was calibrated on a truth set of real tasks
(``benchmarks/finder_truth.py``: the dense sweep's best LR at 400 steps).

Why one file of ~690 lines: the result, the stop rule (in-program and numpy, kept together
so they cannot drift apart), the smoothing and the suggestion rules are one concept.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import optax

from jaxlr._optim import ArrayLike, Schedule, adam
from jaxlr._sweep import DivergenceRule, grid, sweep

if TYPE_CHECKING:
    import chex
    from flax import nnx
    from matplotlib.figure import Figure

#: Floor of the divergence scale relative to the start level (see :func:`find_lr`).
_FLOOR = 0.01
#: Half-width of the centered median that smooths the curves the suggestions read, in decades
#: of learning rate (3 steps of the default ramp).
_HALF_WIDTH_DECADES = 0.25
#: The default suggestion over the steepest point, on the default ramp: 10 ** 0.4 (see find_lr).
_SHIFT = 10.0 ** 0.4
#: The memory of the default ramp (1e-7 -> 10 in 100 steps), where the shift was calibrated:
#: ``ramp_memory(1e-7, 10.0, 100)`` = 5.89.
_MEMORY_REF = 1.0 / -math.expm1(-math.log(1e8) / 99)



class FinderResult:
    """The curves and suggestions of an LR range test (see :func:`find_lr`).

    Attributes:
        lrs: [steps] the learning rate of each step (the exponential ramp).
        losses: [seeds, steps] the training loss of each step's batch, measured before that
            step's update; NaN after a seed's divergence stop (the loss that fired it is kept).
        smoothed: [seeds, steps] ``losses`` smoothed without lag (a centered running median
            over a quarter decade of LR each side, then a 3-point mean: :func:`smooth_centered`),
            up to and including the stop step while the loss is finite; NaN after. The
            suggestions and the plot read it; the divergence stop reads a causal EMA of its own.
        diverged_at: [seeds] int, the step where the divergence stop fired, -1 if never.
        mean: [steps] mean of ``smoothed`` over the seeds that are still running at each step
            (NaN once every seed stopped).
        spread: [steps] standard deviation (ddof 0) of ``smoothed`` over those seeds.
        suggestions: dict ``valley``, ``steepest``, ``minimum`` -> learning rate (NaN when the
            curve does not define it), computed on ``mean`` over ``window``.
        suggestion: the default learning rate: ``steepest`` x 10**0.4, scaled to the ramp's
            density (see :func:`find_lr`), NaN if the curve cannot be read.
        window: (start, end) the steps the suggestions look at: from the end of the warm-up,
            ``max(2, steps // 10)``, to the first stop of any seed (exclusive) or the end.
        seeds: [seeds] the seed of each row; beta, divergence_factor: the settings used
            (``beta``: the factor of the stop rule's EMA; 0: nothing smoothed).

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> h = jnp.logspace(-1, 1, 8)  # a quadratic: GD diverges past lr = 2 / max(h) = 0.2
        >>> res = jaxlr.find_lr(lambda k: jnp.ones(8), lambda w, b: 0.5 * jnp.sum(h * w ** 2)
        ...                     + 0.0 * jnp.sum(b[0]), (jnp.zeros((4, 1)),),
        ...                     lambda lr: jaxlr.sgd(lr), batch_size=4)
        >>> res.losses.shape, bool(0 < res.diverged_at[0] < 100), res.suggestion < 0.2
        ((1, 100), True, True)
    """

    def __init__(self, *, lrs: npt.ArrayLike, losses: npt.ArrayLike, smoothed: npt.ArrayLike,
                 diverged_at: npt.ArrayLike, suggestions: dict[str, float], suggestion: float,
                 window: tuple[int, int], seeds: npt.ArrayLike, beta: float,
                 divergence_factor: float):
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
    def from_curves(cls, lrs: npt.ArrayLike, losses: npt.ArrayLike, *, beta: float = 0.98,
                    divergence_factor: float = 4.0, diverged_at: npt.ArrayLike | None = None,
                    seeds: npt.ArrayLike | None = None) -> FinderResult:
        """Apply the divergence stop, smoothing and suggestions of :func:`find_lr` to curves.

        Args:
            lrs: [steps] increasing learning rates (one per step).
            losses: [steps] or [seeds, steps] raw losses.
            beta: the stop rule's EMA factor in [0, 1) (0: no smoothing at all).
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
        half = half_width(lrs) if beta > 0 else 0
        for s in range(n_seeds):
            stop = divergence_step(raw[s], divergence_factor, beta)
            if given[s] >= 0:
                stop = int(given[s]) if stop < 0 else min(stop, int(given[s]))
            stops[s] = stop
            if stop >= 0:
                losses_out[s, stop + 1:] = np.nan
            smoothed[s] = smooth_centered(losses_out[s], half)

        mean, _ = _mean_spread(smoothed)
        start = _warmup(steps)
        alive = stops[stops >= 0]
        end = int(alive.min()) if alive.size else steps
        level, _ = _start_level(raw[:, :start])  # pooled over seeds
        suggestions = suggest(lrs[start:end], mean[start:end], level) if end - start >= 3 else {
            "valley": math.nan, "steepest": math.nan, "minimum": math.nan}
        _warn_if_unreliable(lrs, start, end, stops, mean)
        default = (default_suggestion(suggestions, lrs, float(lrs[end - 1]))
                   if end - start >= 3 else math.nan)
        return cls(lrs=lrs, losses=losses_out, smoothed=smoothed, diverged_at=stops,
                   suggestions=suggestions, suggestion=default,
                   window=(start, max(start, end)),
                   seeds=np.arange(n_seeds) if seeds is None else seeds, beta=beta,
                   divergence_factor=divergence_factor)

    def __repr__(self) -> str:
        stops = ", ".join(str(int(d)) for d in self.diverged_at)
        return (f"FinderResult(seeds={len(self.diverged_at)}, steps={len(self.lrs)}, "
                f"suggestion={self.suggestion:.3g}, diverged_at=[{stops}])")

    def plot(self, **kwargs: Any) -> Figure:
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
    model: Callable[[jax.Array], chex.ArrayTree] | nnx.Module,
    loss_fn: Callable,
    data: chex.ArrayTree | Iterable[chex.ArrayTree],
    optimizer: Callable[[Schedule], optax.GradientTransformation] = lambda lr: adam(lr),
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
    good learning rate from where the loss falls fastest.

    Every seed trains from its own initialization on its own batches with the same ramp

    .. math::
        \eta_t = \eta_{min} \left(\eta_{max} / \eta_{min}\right)^{t / (T - 1)},
        \qquad t = 0, \dots, T-1,

    all seeds in ONE compiled program (:func:`jaxlr.sweep` over ``grid(seed=seeds)``; the ramp is
    passed as the schedule to ``optimizer``). ``losses[s, t]`` is the loss of step ``t``'s batch
    before its update with :math:`\eta_t`.

    **Two smoothings.** The divergence stop runs inside the training program, so it reads a
    causal curve: the bias-corrected exponential moving average of fastai/Lightning,
    :math:`a_t = \beta a_{t-1} + (1-\beta) x_t`, :math:`a_{-1} = 0`,
    :math:`\hat x_t = a_t / (1 - \beta^{t+1})`, of each seed's raw losses :math:`x_t` (the
    correction makes :math:`\hat x_0 = x_0`, not :math:`(1-\beta) x_0`). That average lags:
    its mean age :math:`\sum_k k \beta^k / \sum_k \beta^k` (:math:`k \le t`) is 24 steps at
    step 60 and 29 at step 80 with :math:`\beta = 0.98`, i.e. about two decades of the
    default ramp (12.4 steps a decade), and on a valley in log-LR its minimum comes 1.2 to 2
    decades after the loss's. The suggestions and the plot therefore read ``smoothed``
    (:math:`\tilde x`): of each seed's raw losses up to and including its stop step, a
    centered running median over :math:`h` steps each side, :math:`h` = a quarter decade
    (``round(0.25 / log10 r)``, :math:`r` the growth per step: 3 by default), then a centered
    3-point mean, every window shrunk symmetrically at the ends (:func:`smooth_centered`): no
    lag, outlier batches dropped. ``beta=0`` turns both off (raw losses).

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

    **Rules**, on the mean over seeds of :math:`\tilde x` (``mean``) over ``window``: from
    step :math:`w` (after the warm-up) up to the first stop of any seed (exclusive). Slopes
    are :math:`d\tilde x / d\ln\eta` (``np.gradient`` against :math:`\ln \eta`, not the step
    index or the linear LR: Lightning#21141, #14248).

    - ``steepest``: the LR :math:`\eta_s` of the most negative slope, at or before the
      curve's minimum and where the curve is below :math:`\ell_0` (pooled over seeds), so
      neither early noise nor an early spike counts (Lightning#1767);
    - ``minimum``: the LR of the curve's minimum divided by 10 (fastai's ``minimum``);
    - ``valley``: fastai's ``valley`` re-implemented: the longest strictly decreasing
      subsequence of the curve ends at index ``e`` with length ``n``; with ``b = e - n`` and
      ``k = (e - b) / 3`` the LR at ``b + int(k) + int(k / 2)`` (about halfway down the valley).

    **Default** (``suggestion``): the steepest point, moved up by 0.4 decade and scaled to the
    ramp's memory :math:`n = 1/(1 - 1/r)` (the ramp's LRs up to step :math:`t` sum to about
    :math:`n \eta_t`: the loss at :math:`\eta_t` has seen about :math:`n` steps of it; 5.89 for
    the default ramp, :math:`n_0`):

    .. math::
        \eta^\star = \min\!\big(10^{0.4}\, (n / n_0)\, \eta_s,\; \eta_{end}\big),

    :math:`\eta_{end}` the last LR of ``window``; without a ``steepest``, the log-median of
    ``valley`` and ``minimum``.

    Why (``benchmarks/finder_truth.py``, ``benchmarks/README.md``): on a truth set of real tasks
    (the CLI's MLP and logistic regression on scikit-learn's digits, breast cancer and wine
    and on a ``make_classification`` set, under SGD, momentum, Adam, AdamW and RMSProp; the
    truth is the dense sweep's best constant LR at 400 steps, batch 128, by mean held-out loss
    over 3 seeds), on the six tuning tasks the truth lay 0.9x to 6.4x above the steepest
    point of the lag-free curve (3 seeds, default ramp), while the curve's minimum lay 0.33x
    to 140x above the truth (near the stability edge for SGD on digits; far above it where
    the task overfits) and ``valley`` 1.3x to 125x below it. The factor :math:`10^{0.4}` (2.5)
    is the middle of the factors that put all six within 3x (2.1 to 2.8). The four held-out
    tasks, which influenced no choice, came out within 3x too (0.67x to 2.72x). The old
    default (the median of the three rules on the lagging average, whose lag stood in for the
    shift) missed 3x on three tuning tasks (5x to 17x too low) and one held-out task (3.55x
    too high). Ratios, suggestion / truth (``valley``, ``steepest``: fastai's and Lightning's
    rules on the 0.98 average, as those libraries read them):

    | task (split) | truth | suggestion | fastai valley | Lightning steepest |
    |---|---|---|---|---|
    | digits-mlp-adam (tune) | 0.0464 | 0.031 (0.67x) | 0.0019 (0.04x) | 0.038 (0.81x) |
    | digits-mlp-sgd (tune) | 1.47 | 1.28 (0.87x) | 0.026 (0.02x) | 0.89 (0.61x) |
    | digits-mlp-momentum (tune) | 0.464 | 0.35 (0.75x) | 0.0071 (0.02x) | 0.29 (0.63x) |
    | digits-logreg-sgd (tune) | 6.81 | 2.69 (0.40x) | 0.079 (0.01x) | 1.87 (0.28x) |
    | cancer-mlp-adam (tune) | 0.00147 | 0.0040 (2.72x) | 0.0023 (1.57x) | 0.0040 (2.75x) |
    | synth-mlp-momentum (tune) | 0.0215 | 0.031 (1.44x) | 0.0049 (0.23x) | 0.0215 (1.00x) |
    | wine-mlp-sgd (held out) | 0.0681 | 0.054 (0.79x) | 0.018 (0.26x) | 0.24 (3.55x) |
    | cancer-logreg-adam (held out) | 0.0100 | 0.0147 (1.47x) | 0.010 (1.02x) | 0.0215 (2.15x) |
    | synth-mlp-rmsprop (held out) | 0.00147 | 0.0040 (2.72x) | 0.00052 (0.36x) | 0.0102 (6.97x) |
    | digits-mlp-adamw (held out) | 0.0464 | 0.031 (0.67x) | 0.0019 (0.04x) | 0.038 (0.81x) |

    Limits: read from one seed's curve (``seeds=1``, this function's default) 22 of the 30
    curves were within 3x: a noisy flat bottom can hold a steeper step than the descent, and a
    curve still falling at ``max_lr`` can put the steepest point at its top (capped there,
    with the warning), so pass ``seeds=3`` (the CLI's default). The memory scaling: on the
    tuning tasks the steepest point moved down about as :math:`1/n` when the ramp got denser
    (Adam: ~2.5x per doubling of ``steps``; SGD less); over all ten tasks the default stayed
    within 3x on 9 at ``steps=200`` and 8 at 400 (without the scaling about 5 and 3), 7 at
    50 (about 6): the calibration is for the default ramp. The truth is for 400 steps: a longer run
    may want a smaller LR (on the breast-cancer MLP the best LR is set by overfitting, which
    a 100-step ramp cannot see). On GD on a quadratic with top curvature L the rules give
    ``valley`` ~0.005/L to 0.008/L, ``steepest`` 0.12/L to 0.38/L (by start point),
    ``minimum`` 0.7/L to 1.1/L, the default 0.31/L to 0.95/L (stable below 2/L).

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
        beta: the factor in [0, 1) of the divergence stop's moving average (0.98 as fastai
            and Lightning); 0: no smoothing at all (the stop and the rules read raw losses).
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
        J. W. Tukey, "Exploratory Data Analysis", 1977 (running medians):
        https://archive.org/details/exploratorydataa00tuke_0 ;
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


def ramp_memory(min_lr: float, max_lr: float, steps: int) -> float:
    r"""The ramp's memory: how many steps' worth of its current LR the loss has seen.

    .. math::
        n = \frac{1}{1 - 1/r}, \qquad r = (\eta_{max}/\eta_{min})^{1/(T-1)},
        \qquad \sum_{k \le t} \eta_k = n\,\eta_t\,(1 - r^{-(t+1)}) \approx n\,\eta_t

    (a geometric series). :func:`find_lr` scales its default by :math:`n / n_0`, :math:`n_0` the
    default ramp's (5.89: 1e-7 to 10 in 100 steps).

    Args:
        min_lr, max_lr: the ramp's first and last learning rates (0 < min_lr < max_lr).
        steps: the ramp's steps (>= 2).

    Returns:
        :math:`n` (a float > 1).

    Example:
        >>> from jaxlr._finder.finder import ramp_memory
        >>> round(ramp_memory(1e-7, 10.0, 100), 2), round(ramp_memory(1e-7, 10.0, 400), 1)
        (5.89, 22.2)

    References:
        The ramp of the LR range test: L. N. Smith 2017, https://arxiv.org/abs/1506.01186
    """
    log_r = math.log(max_lr / min_lr) / (steps - 1)
    return 1.0 / -math.expm1(-log_r)


def exponential_ramp(min_lr: float, max_lr: float, steps: int) -> Schedule:
    r"""The schedule ``step -> min_lr * (max_lr / min_lr) ** (step / (steps - 1))`` (float32,
    jit/vmap-safe; computed as :math:`\exp(\ln\eta_{min} + t/(T-1)\,\ln(\eta_{max}/\eta_{min}))`
    so no power overflows)."""
    log_min = math.log(min_lr)
    log_ratio = math.log(max_lr / min_lr) / (steps - 1)

    def schedule(step: ArrayLike) -> jax.Array:
        t = jnp.asarray(step, jnp.float32)
        return jnp.exp(jnp.float32(log_min) + t * jnp.float32(log_ratio))

    return schedule


def divergence_step(losses: npt.ArrayLike, factor: float, beta: float = 0.98,
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


def _start_level(warmup_losses: npt.ArrayLike) -> tuple[float, float]:
    """Robust start level (median) and noise (1.4826 x median absolute deviation, the standard
    deviation for Gaussian noise) of the warm-up's raw losses: one early spike moves neither."""
    x = np.asarray(warmup_losses, np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return math.nan, math.nan
    level = float(np.median(x))
    return level, 1.4826 * float(np.median(np.abs(x - level)))


def smooth(losses: npt.ArrayLike, beta: float) -> np.ndarray:
    """Bias-corrected EMA of one curve: what the divergence stop reads.

    Up to the curve's first non-finite value (NaN from there on). Causal, as the stop runs
    inside the training program; fastai and Lightning read their suggestions from this curve,
    which lags (see :func:`find_lr`)."""
    x = np.asarray(losses, np.float64)
    out = np.full_like(x, np.nan)
    avg = 0.0
    for t, v in enumerate(x):
        if not math.isfinite(v):
            break
        avg = beta * avg + (1.0 - beta) * v
        out[t] = avg / (1.0 - beta ** (t + 1))
    return out


def smooth_centered(losses: npt.ArrayLike, half: int) -> np.ndarray:
    r"""Lag-free smoothing of one loss curve: a centered running median, then a 3-point mean.

    Up to the curve's first non-finite value (NaN from there):

    .. math::
        m_t = \operatorname{median}(x_{t-k_t}, \dots, x_{t+k_t}), \quad
        \tilde x_t = \operatorname{mean}(m_{t-j_t}, \dots, m_{t+j_t}), \quad
        k_t = \min(h, t, e-1-t),\; j_t = \min(1, t, e-1-t),

    with :math:`e` the first non-finite step (the end otherwise): every window is symmetric
    (shrunk at both ends), so the smoothed curve has no lag, and on a straight stretch it is
    the curve itself. The median drops outlier batches (up to :math:`h` in a window of
    :math:`2h+1`) and the blow-up's first values at the end; the 3-point mean rounds off the
    short plateaus a running median leaves at a minimum, whose first step ``argmin`` would
    pick (the mean halves that error on a noise-free valley). ``half`` = 0 returns the curve.

    Args:
        losses: [steps] raw losses.
        half: :math:`h`, the largest half-width in steps (>= 0).

    Returns:
        [steps] the smoothed curve, NaN from the first non-finite loss on.

    Example:
        >>> import numpy as np
        >>> from jaxlr._finder.finder import smooth_centered
        >>> smooth_centered([3.0, 2.0, 9.0, 1.0, 0.5, np.nan], 1).round(3).tolist()
        [3.0, 2.667, 2.0, 1.167, 0.5, nan]

    References:
        J. W. Tukey, "Exploratory Data Analysis", 1977, ch. 7 (running medians, then
        smoothing by means): https://archive.org/details/exploratorydataa00tuke_0
    """
    x = np.asarray(losses, np.float64)
    out = np.full_like(x, np.nan)
    bad = np.flatnonzero(~np.isfinite(x))
    end = int(bad[0]) if bad.size else len(x)
    if int(half) <= 0:
        out[:end] = x[:end]
        return out
    med = np.empty(end)
    for t in range(end):
        k = min(int(half), t, end - 1 - t)
        med[t] = np.median(x[t - k:t + k + 1])
    for t in range(end):
        j = min(1, t, end - 1 - t)
        out[t] = med[t - j:t + j + 1].mean()
    return out


def half_width(lrs: npt.ArrayLike) -> int:
    """The half-width in steps of :func:`smooth_centered` for a ramp: a quarter decade of LR.

    :math:`h` = ``round(0.25 / log10(r))``, :math:`r` the ramp's mean growth per step
    (``lrs[-1] / lrs[0]`` over ``len(lrs) - 1`` steps): 3 for the default ramp (1e-7 to 10 in
    100 steps), 12 for 400 steps, 0 when a step spans more than half a decade."""
    lrs = np.asarray(lrs, np.float64)
    per_step = math.log10(lrs[-1] / lrs[0]) / max(len(lrs) - 1, 1)
    return int(round(_HALF_WIDTH_DECADES / per_step)) if per_step > 0 else 0


def default_suggestion(suggestions: dict[str, float], lrs: npt.ArrayLike, top: float) -> float:
    """The default suggestion of :func:`find_lr` from its three rules (see the maths there).

    ``steepest`` x 10**0.4 x :func:`ramp_memory` / the default ramp's, at most ``top`` (the
    last LR the rules read); without a ``steepest``, the log-median of ``valley`` and
    ``minimum``; NaN if none of them is defined."""
    steep = suggestions.get("steepest", math.nan)
    if math.isfinite(steep) and steep > 0:
        lrs = np.asarray(lrs, np.float64)
        scale = ramp_memory(float(lrs[0]), float(lrs[-1]), len(lrs)) / _MEMORY_REF
        return min(_SHIFT * scale * steep, float(top))
    return _median_log([suggestions.get("valley", math.nan), suggestions.get("minimum", math.nan)])


def suggest(lrs: npt.ArrayLike, curve: npt.ArrayLike, level: float = math.inf
            ) -> dict[str, float]:
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


def valley_index(curve: npt.ArrayLike) -> int | None:
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


def _median_log(values: Iterable[float]) -> float:
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


def _validate(min_lr: float, max_lr: float, steps: int, seeds: int | Sequence[int], beta: float,
              factor: float) -> tuple[float, float, int, float, float]:
    def number(name: str, value: float) -> float:
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
