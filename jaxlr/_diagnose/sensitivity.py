"""How much a sweep's result depends on the LR: sensitivity, basin, divergence boundary, and how
sure the best LR is over seeds.

Why: one recommended LR hides what a user needs next. Is the best LR at the edge of the grid
(then the true optimum may lie outside it: the Deep Learning Tuning Playbook's first check)?
Is the good region a decade wide, or one grid point (then the LR must be tuned again at every
change)? Where does training start to diverge? Would another draw of seeds pick another LR?
Pure numpy over the members' final metrics, grouped like :meth:`SweepResult.best` with
``over="seed"``, so that every number here is about the setting the recommendation names.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

LR_NAMES = ("lr", "learning_rate")  # the grid axes read as the LR
BASIN_WITHIN = 0.1  # the basin: LRs whose mean loss is within 10% of the best
EDGE_EXTEND = 10.0  # best at the grid's edge: extend the grid a decade beyond it
LEVEL = 0.9  # the bootstrap interval's nominal coverage
N_BOOT = 1000  # bootstrap replicates


class Sensitivity(NamedTuple):
    """The LR sensitivity of one LR sweep (one setting of the other grid axes).

    Attributes:
        setting: the other axes' values (without the LR and ``seed``).
        by: the metric: "eval" (final eval loss) or "loss" (final training loss).
        lrs: [K] the LRs tried, ascending.
        loss: [K] mean over seeds of :math:`\\min(\\ell, \\ell_0)`, a diverged seed counting
            :math:`\\ell_0` (the curve the sensitivity statistic averages).
        mean: [K] mean over seeds of the metric, inf when a seed diverged (what
            ``result.best(over="seed")`` ranks by).
        seeds: [K] seeds per LR; diverged: [K] how many of them diverged; pruned: [K] how
            many successive halving stopped early (their final loss unknown: NaN).
        loss0: :math:`\\ell_0`, the loss at initialization (median first training loss).
        sensitivity: Wortsman et al.'s LR sensitivity, :math:`E_\\eta[\\min(\\ell(\\eta),
            \\ell_0)] - \\ell^*` over the LRs tried.
        best_lr: the LR of the lowest ``mean`` (the recommendation's); best_loss: that mean.
        edge: +1 when ``best_lr`` is the largest LR tried, -1 the smallest, 0 otherwise (or
            fewer than 2 LRs); extend_to: then the LR a decade beyond it (10x / 0.1x
            ``best_lr``; NaN when ``edge`` is 0), where to extend the grid.
        basin: (lo, hi), the contiguous LRs around ``best_lr`` whose ``mean`` is within
            ``within`` of ``best_loss``; basin_decades: log10(hi / lo).
        within: the basin's tolerance (0.1: 10%).
        boundary: the smallest LR at which a seed diverged (NaN if none did).
        interval: (lo, hi), the bootstrap interval over seeds of the best LR (NaN with one
            seed); level: its nominal coverage; agreement: the share of bootstrap replicates
            whose best LR is ``best_lr``.

    Example:
        >>> import numpy as np, jaxlr
        >>> loss = np.stack([np.r_[1.0, np.full(19, v)] for v in (0.4, 0.1, 0.2)])
        >>> res = jaxlr.SweepResult(
        ...     grid=jaxlr.grid(lr=[0.01, 0.1, 1.0]), loss=loss, lr=np.full(loss.shape, np.nan),
        ...     eval=None, eval_aux={}, eval_steps=None, diverged=np.zeros(3, bool),
        ...     diverged_at=np.full(3, -1))
        >>> s, = res.sensitivity()
        >>> round(s.sensitivity, 3), s.best_lr, s.edge  # mean(0.4, 0.1, 0.2) - 0.1
        (0.133, 0.1, 0)

    References:
        M. Wortsman et al. 2023, §2.2: https://arxiv.org/abs/2309.14322
    """

    setting: dict  # the other axes' values (without the LR and seed)
    by: str  # "eval" or "loss"
    lrs: np.ndarray  # [K] float64, ascending
    loss: np.ndarray  # [K] float64, mean over seeds of min(metric, loss0)
    mean: np.ndarray  # [K] float64, mean over seeds of the metric (inf: a seed diverged)
    seeds: np.ndarray  # [K] int64
    diverged: np.ndarray  # [K] int64
    pruned: np.ndarray  # [K] int64
    loss0: float
    sensitivity: float
    best_lr: float
    best_loss: float
    edge: int  # +1 largest LR tried, -1 smallest, 0 inside
    extend_to: float  # edge != 0: the LR a decade beyond the edge (NaN otherwise)
    basin: tuple  # (lo, hi) LRs
    basin_decades: float
    within: float
    boundary: float  # smallest diverged LR (NaN: none)
    interval: tuple  # (lo, hi) LRs (NaN with one seed)
    level: float
    agreement: float


def lr_axis(hparams: dict) -> str:
    """The name of the grid's LR axis (``lr`` or ``learning_rate``); ValueError without one."""
    for name in LR_NAMES:
        if name in hparams:
            return name
    raise ValueError(f"the LR sensitivity needs a grid with an LR axis ({' or '.join(LR_NAMES)}),"
                     f" got the axes {sorted(hparams)}; sweep the LR: jaxlr.grid(lr=[...])")


def lr_sensitivity(result: Any, *, by: str | None = None, within: float = BASIN_WITHIN,
                   level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0
                   ) -> list[Sensitivity]:
    r"""The LR sensitivity, basin, divergence boundary and best-LR interval of a sweep.

    One :class:`Sensitivity` per setting of the grid's other axes (``seed`` and the LR
    aside), in grid order. A member's value :math:`\ell` is ``result.metric(by)``, inf when it
    diverged or is not finite, unknown (NaN) when successive halving pruned it: an LR whose
    seeds were all pruned has no final loss, so the sensitivity is NaN, the basin ends before
    it, and it is never the best.

    - **LR sensitivity** (Wortsman et al. 2023, §2.2):

      .. math:: S = \mathbb{E}_{\eta}\big[\min(\ell(\eta), \ell_0)\big] - \ell^*,
         \qquad \ell^* = \min_\eta \min(\ell(\eta), \ell_0),

      the expectation over the LRs tried (uniform over the grid points: log-uniform over the
      range for a log-spaced grid, as in the paper), :math:`\ell(\eta)` the mean over seeds of
      the capped values (a diverged seed counts :math:`\ell_0`), :math:`\ell_0` the loss at
      initialization: the median over the group of the first training loss (the held-out loss
      at initialization is not recorded; it is the same loss function). 0 when every LR reaches
      the best loss; :math:`\ell_0 - \ell^*` at most.
    - **best LR**: the lowest mean over seeds, a setting with a diverged seed never the best
      (``result.best(over="seed")``; ties: the smaller LR). **edge**: +1 / -1 when it is the
      largest / smallest of >= 2 LRs, and then ``extend_to``, a decade beyond it.
    - **basin**: the contiguous LRs around the best whose mean is
      :math:`\le \ell_{best} + \text{within}\,|\ell_{best}|`, its width in decades
      :math:`\log_{10}(hi / lo)`.
    - **divergence boundary**: the smallest LR at which any seed diverged.
    - **bootstrap interval** of the best LR: seeds are drawn with replacement (``n_boot``
      times, ``np.random.default_rng(seed)``; the same draws for every LR when they share their
      seeds, since a seed fixes the initialization and the batches), the best LR of each draw
      found as above; the interval runs from its lower to its upper ``(1 - level) / 2``
      quantile (grid points). ``agreement``: the share of draws that pick ``best_lr``.

    Args:
        result: a :class:`jaxlr.SweepResult` with an ``lr`` (or ``learning_rate``) axis.
        by: "eval" (default with eval data) or "loss".
        within: the basin's relative tolerance (> 0).
        level: the interval's nominal coverage, in (0, 1).
        n_boot: bootstrap draws (>= 1).
        seed: the bootstrap's RNG seed.

    Returns:
        A list of :class:`Sensitivity`, one per setting of the other axes.

    Example:
        >>> import numpy as np, jaxlr
        >>> from jaxlr._diagnose import lr_sensitivity
        >>> lrs = np.array([0.01, 0.1, 1.0, 10.0])
        >>> final = np.array([0.5, 0.1, 0.105, np.nan])  # 10.0 diverged; loss0 = 1.0
        >>> loss = np.stack([np.r_[1.0, np.full(19, v)] for v in final])
        >>> res = jaxlr.SweepResult(
        ...     grid=jaxlr.grid(lr=lrs), loss=loss, lr=np.full(loss.shape, np.nan), eval=None,
        ...     eval_aux={}, eval_steps=None, diverged=np.isnan(final),
        ...     diverged_at=np.where(np.isnan(final), 1, -1))
        >>> s, = lr_sensitivity(res)
        >>> round(s.sensitivity, 4)  # mean(0.5, 0.1, 0.105, 1.0) - 0.1
        0.3263
        >>> s.best_lr, s.basin, round(s.basin_decades, 1), s.boundary
        (0.1, (0.1, 1.0), 1.0, 10.0)

    References:
        M. Wortsman et al., Small-scale proxies for large-scale Transformer training
        instabilities (2023), §2.2, https://arxiv.org/abs/2309.14322 (LR sensitivity).
        Google Research, Deep Learning Tuning Playbook, "the best trial is not at the
        boundary of the search space": https://github.com/google-research/tuning_playbook .
        B. Efron & R. Tibshirani, An Introduction to the Bootstrap (1993), ch. 13 (percentile
        intervals); X. Bouthillier et al., Accounting for variance in machine learning
        benchmarks (2021), https://arxiv.org/abs/2103.03098 (seeds as repeated measurements).
    """
    hp = {k: np.asarray(v).reshape(-1) for k, v in result.hparams.items()}
    name = lr_axis(hp)
    by = by or ("eval" if getattr(result, "eval", None) is not None else "loss")
    if by not in ("eval", "loss"):
        raise ValueError(f"by must be 'eval' or 'loss' (a loss: lower is better), got by={by!r}")
    if not (np.isfinite(within) and within > 0):
        raise ValueError(f"within must be a positive number (0.1: 10% of the best), got "
                         f"within={within!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (0.9: a 90% interval), got level={level!r}")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got n_boot={n_boot!r}")
    metric = np.asarray(result.metric(by), np.float64).reshape(-1)
    diverged = np.asarray(result.diverged, bool).reshape(-1)
    score = np.where(diverged | ~np.isfinite(metric), np.inf, metric)
    m = score.size
    pruned = np.asarray(getattr(result, "pruned_at", np.full(m, -1))).reshape(-1) >= 0
    score = np.where(pruned & ~diverged, np.nan, score)  # unknown, not diverged
    first = np.asarray(result.loss, np.float64)[:, 0]
    seeds = hp["seed"] if "seed" in hp else np.zeros(m, np.int64)
    others = [k for k in hp if k not in (name, "seed")]
    groups: dict[tuple, list[int]] = {}
    for i in range(m):
        groups.setdefault(tuple(hp[k][i].item() for k in others), []).append(int(i))
    rng = np.random.default_rng(seed)
    out = []
    for members in groups.values():
        idx = np.asarray(members)
        setting = {k: _decimal(hp[k][idx[0]]) for k in others}
        out.append(one_sweep(setting, by, np.asarray([_decimal(v) for v in hp[name][idx]]),
                             seeds[idx], score[idx], diverged[idx], first[idx], within, level,
                             int(n_boot), rng))
    return out


def one_sweep(setting: dict, by: str, lr: np.ndarray, seed: np.ndarray, score: np.ndarray,
              diverged: np.ndarray, first: np.ndarray, within: float, level: float,
              n_boot: int, rng: np.random.Generator) -> Sensitivity:
    """:class:`Sensitivity` of one LR sweep from its members' LR, seed, score (inf: diverged
    or not finite; NaN: pruned), diverged flag and first training loss."""
    lrs, inv = np.unique(lr, return_inverse=True)
    inv = inv.reshape(-1)
    k = len(lrs)
    ok0 = first[np.isfinite(first)]
    loss0 = float(np.median(ok0)) if ok0.size else np.nan
    capped = np.minimum(score, loss0) if np.isfinite(loss0) else score
    count = np.bincount(inv, minlength=k)
    curve = np.bincount(inv, capped, minlength=k) / count
    with np.errstate(invalid="ignore"):
        mean = np.bincount(inv, np.where(np.isfinite(score), score, 0.0), minlength=k) / count
    mean = np.where(np.bincount(inv, np.isinf(score), minlength=k) > 0, np.inf, mean)
    n_pruned = np.bincount(inv, np.isnan(score), minlength=k).astype(np.int64)
    mean = np.where(n_pruned > 0, np.nan, mean)
    curve = np.where(n_pruned > 0, np.nan, curve)
    n_div = np.bincount(inv, diverged, minlength=k).astype(np.int64)
    sens = float(curve.mean() - curve.min()) if np.isfinite(curve).all() else np.nan
    nan2 = (np.nan, np.nan)
    if not np.isfinite(mean).any():
        return Sensitivity(setting, by, lrs, curve, mean, count.astype(np.int64), n_div,
                           n_pruned, loss0,
                           sens, np.nan, np.nan, 0, np.nan, nan2, np.nan, within,
                           _boundary(lrs, n_div), nan2, level, np.nan)
    b = int(np.argmin(np.where(np.isnan(mean), np.inf, mean)))
    best = float(mean[b])
    edge = 0 if k < 2 else 1 if b == k - 1 else -1 if b == 0 else 0
    top = best + within * abs(best)
    lo, hi = b, b
    while lo > 0 and mean[lo - 1] <= top:
        lo -= 1
    while hi < k - 1 and mean[hi + 1] <= top:
        hi += 1
    interval, agreement = bootstrap_interval(lrs, inv, seed, score, level, n_boot, rng)
    return Sensitivity(setting, by, lrs, curve, mean, count.astype(np.int64), n_div, n_pruned,
                       loss0, sens, float(lrs[b]), best, edge,
                       float(lrs[b] * EDGE_EXTEND ** edge) if edge else np.nan,
                       (float(lrs[lo]), float(lrs[hi])),
                       float(np.log10(lrs[hi] / lrs[lo])) if lrs[lo] > 0 else np.nan, within,
                       _boundary(lrs, n_div), interval, level, agreement)


def _decimal(v: Any) -> Any:
    """A grid value as Python: float32 as its shortest decimal (0.1, not 0.10000000149)."""
    return float(str(v)) if isinstance(v, np.float32) else np.asarray(v).item()


def _boundary(lrs: np.ndarray, n_div: np.ndarray) -> float:
    return float(lrs[n_div > 0].min()) if (n_div > 0).any() else np.nan


def bootstrap_interval(lrs: np.ndarray, inv: np.ndarray, seed: np.ndarray, score: np.ndarray,
                       level: float, n_boot: int, rng: np.random.Generator
                       ) -> tuple[tuple[float, float], float]:
    """The percentile bootstrap interval over seeds of the best LR, and the share of draws
    that pick the full sample's best LR.

    Args:
        lrs: [K] the distinct LRs, ascending; inv: [M] each member's index into ``lrs``.
        seed: [M] each member's seed; score: [M] its value (inf: diverged; NaN: unknown,
            never the best).
        level: nominal coverage; n_boot: draws; rng: the random generator.

    Returns:
        ``((lo, hi), agreement)``; NaNs when no LR has two seeds.
    """
    k = len(lrs)
    rows = [np.flatnonzero(inv == j) for j in range(k)]
    if max(len(r) for r in rows) < 2:
        return (np.nan, np.nan), np.nan
    keys = [tuple(np.sort(seed[r]).tolist()) for r in rows]
    if len(set(keys)) == 1:  # every LR has the same seeds: draw seeds, the same for all LRs
        order = [r[np.argsort(seed[r], kind="stable")] for r in rows]
        table = score[np.stack(order)]  # [K, S]
        draw = rng.integers(0, table.shape[1], (n_boot, table.shape[1]))
        means = table[:, draw].mean(axis=2).T  # [B, K]
    else:  # each LR its own seeds
        means = np.stack([score[r][rng.integers(0, len(r), (n_boot, len(r)))].mean(axis=1)
                          for r in rows], axis=1)
    means = np.where(np.isnan(means), np.inf, means)
    valid = np.isfinite(means).any(axis=1)
    if not valid.any():
        return (np.nan, np.nan), np.nan
    picked = lrs[np.argmin(means[valid], axis=1)]
    full = np.asarray([score[r].mean() for r in rows])
    full = np.where(np.isnan(full), np.inf, full)
    best = lrs[int(np.argmin(full))] if np.isfinite(full).any() else np.nan
    tail = (1 - level) / 2
    return ((float(np.quantile(picked, tail, method="lower")),
             float(np.quantile(picked, 1 - tail, method="higher"))),
            float(np.mean(picked == best)))
