"""Every way to set the LR side by side: per category of a categorical axis (e.g. each
optimizer, tuned or LR-free), its best setting, the LR it used, its basin, and its distance
to the best category (:meth:`SweepResult.compare`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from jaxlr._sweep.curves import tail_mean

if TYPE_CHECKING:
    from jaxlr._sweep.result import SweepResult

BASIN = 0.10  # a setting is in the basin when its mean is within 10% of its category's best


class Comparison(NamedTuple):
    """One category of :meth:`SweepResult.compare`.

    Attributes:
        category: the category's value (e.g. ``"prodigy"``).
        value: the best setting's metric, the mean over its seeds (inf: all diverged).
        setting: that setting's other hyperparameters (``seed`` left out).
        lr: the LR its updates used at the end: the median over its seeds of the mean recorded
            LR over the last 10% of steps (for an LR-free method, its effective step size);
            NaN when the optimizer records none.
        basin: ``(low, high)`` of the grid's ``lr`` values whose setting is within 10% of the
            category's best (None without an ``lr`` axis of more than one value).
        gap: ``value / best category's value - 1`` (0 for the best category).
    """

    category: Any
    value: float
    setting: dict
    lr: float
    basin: tuple[float, float] | None
    gap: float


def compare(result: SweepResult, axis: str, by: str, mode: str = "min") -> list[Comparison]:
    """See :meth:`SweepResult.compare`."""
    if axis not in result.hparams:
        raise ValueError(f"axis must be a grid axis {list(result.hparams)}, got axis={axis!r}")
    sign = 1.0 if mode == "min" else -1.0
    score = sign * np.asarray(result.metric(by), np.float64)
    score = np.where(np.asarray(result.diverged) | ~np.isfinite(score), np.inf, score)
    lr_curve = np.asarray(result.lr, np.float64)
    end_lr = tail_mean(np.where(np.isfinite(lr_curve), lr_curve, np.nan))
    end_lr = np.where(np.isfinite(lr_curve).any(axis=1), end_lr, np.nan)
    groups = result.by_setting()
    names = [k for k in result.hparams if k != "seed"]
    out = []
    for category in dict.fromkeys(result.hparams[axis].tolist()):
        rows = [(key, idx) for key, idx in groups.items()
                if key[names.index(axis)] == category]
        means = np.array([np.mean(score[idx]) for _, idx in rows])
        b = int(np.argmin(means))
        key, idx = rows[b]
        basin = None
        if "lr" in result.hparams and len(rows) > 1 and np.isfinite(means[b]):
            tol = BASIN * abs(means[b])
            lrs = [_shown(result.hparams["lr"][i[0]].item()) for (_, i), mu in zip(rows, means)
                   if mu <= means[b] + tol]
            basin = (min(lrs), max(lrs))
        out.append(Comparison(category, float(sign * means[b]),
                              {n: _shown(v) for n, v in zip(names, key) if n != axis},
                              float(np.median(end_lr[idx])), basin, 0.0))
    finite = [c.value for c in out if np.isfinite(c.value)]
    best = (min(finite) if mode == "min" else max(finite)) if finite else np.nan
    return [c._replace(gap=c.value / best - 1.0 if best else np.nan) for c in out]


def _shown(v: Any) -> Any:
    """A float32 grid value as written (0.1, not 0.10000000149011612)."""
    return float(str(np.float32(v))) if isinstance(v, float) else v


def format_comparison(rows: list[Comparison], by: str) -> str:
    """One line per category, best first."""
    order = sorted(rows, key=lambda c: (not np.isfinite(c.gap), c.gap))
    lines = []
    for c in order:
        if not np.isfinite(c.value):
            lines.append(f"{c.category}: every setting diverged")
            continue
        gap = "the best" if c.gap == 0 else f"{c.gap:+.1%} vs {order[0].category}"
        lr = f"LR at the end {c.lr:.3g}" if np.isfinite(c.lr) else "no LR recorded"
        basin = ("" if c.basin is None else
                 f"; basin within {BASIN:.0%} of its best: lr {c.basin[0]:.3g}..{c.basin[1]:.3g}")
        lines.append(f"{c.category}: {by} {c.value:.4g} ({gap}); {lr}{basin}")
    return "\n".join(lines)
