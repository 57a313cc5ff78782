"""Diagnosis of learning-rate problems from loss curves: a label, the evidence and advice.

Pure numpy over all curves at once (the rules are array expressions, no Python loop over steps);
only the per-member strings are built in Python. The rules and their thresholds are the module
constants below, documented in :func:`diagnose` and measured by ``tests/test_diagnose.py``.

Why one file of ~920 lines: the labels' rules share their curve statistics and the sweep
context; half of the file is the documented rules and thresholds with their evidence. The
held-out side (``heldout.py``) and the LR sensitivity (``sensitivity.py``) are files of their
own.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from jaxlr._diagnose.heldout import held_out_features
from jaxlr._diagnose.sensitivity import EDGE_EXTEND
from jaxlr._optim import DIVERGENCE_FACTOR

LABELS = ("diverged", "oscillating", "too_slow", "schedule_too_aggressive", "healthy")
PRUNED = "pruned"  # a sweep member pruned before MIN_STEPS steps: too short to judge
OVERFITTING = "overfitting"  # a sweep with eval data: held-out loss rising, training falling
GRID_EDGE = "grid_edge"  # a sweep: its group's best setting is at the smallest / largest LR

MIN_STEPS = 20  # shorter curves cannot show a trend: ValueError
STILL_FALLING = 0.1  # too_slow alone: >= 10% of the decrease came in the second half
STUCK = 0.01  # too_slow alone: the loss fell by < 1% of its start, or ...
NOISE_SE = 2.0  # ... by < 2 standard errors of (start - final): within the noise
SPIKY_CV = 1.0  # oscillating alone: second-half std >= 1.0x its mean (batch-8 noise: ~0.5x)
PERSISTENT_AC = 0.3  # ... lag-1 autocorrelation of the detrended log loss >= 0.3 (noise: ~0)
BOUNCES = 0.2  # ... the loss rose on >= 20% of the second half's steps
FLAT_TAIL = 0.1  # ... its lows fell < 10x from its first to its last quarter
CUT_FRACTION = 0.5  # a cut: the LR fell below 0.5x its running maximum
CUT_FALLING = 0.1  # aggressive: the loss fell >= 10% of its range in the w steps before the cut
CUT_STALL = 0.25  # ... and < 0.25x as much in the w steps after it
CLEAR_GAP = 0.05  # context, "clearly lower": >= 5% of the range lower, or ...
CLEAR_GAP_RATIO = (0.01, 1.5)  # ... >= 1% of it and >= 1.5x lower (non-negative losses)
NO_BETTER = (0.01, 1.25)  # context overrules a curve's look if no LR on that side was 1% / 1.25x
# lower
LR_SPAN = 10.0  # every run of a group diverged at one step, its LRs spanning >= 10x: not the LR


class Diagnosis(NamedTuple):
    """The diagnosis of one training run (one member of a sweep), as :func:`diagnose` returns it.

    ``str(d)`` is a one-line summary: ``"label: reason -> advice"``, led by the member's
    hyperparameters and seed when it comes from a sweep (``"lr=0.1, seed=1: label: ..."``).

    Attributes:
        label: one of ``"diverged"``, ``"oscillating"``, ``"too_slow"``,
            ``"schedule_too_aggressive"``, ``"healthy"``; in a sweep (:func:`diagnose_sweep`)
            also ``"overfitting"`` (eval data: held-out loss rising, training loss falling),
            ``"grid_edge"`` (the group's best setting is at its smallest or largest LR) and
            ``"pruned"`` (successive halving stopped it before a trend could show).
        reason: the evidence in the curve (and in the other runs of the sweep), in numbers.
        advice: what to change, with a number where possible (e.g. the LR to try).
        evidence: the numbers behind ``reason`` and ``advice``, name -> float or int (e.g.
            ``second_half_share``, ``tail_cv``, ``diverged_at``, ``context_lr``).
        hparams: the member's hyperparameters, seed included (:func:`diagnose_sweep`, i.e.
            ``SweepResult.diagnose()``), or None for a curve diagnosed alone.

    Example:
        A loss that falls by 1% a step is still falling after 100 steps:

        >>> import numpy as np
        >>> from jaxlr import diagnose
        >>> d = diagnose(0.99 ** np.arange(100), 0.1)
        >>> d.label, round(d.evidence["second_half_share"], 2)
        ('too_slow', 0.36)
        >>> print(d)
        too_slow: the loss is still falling: 36% of its decrease (0.99 -> 0.39) came in the
        second half -> raise the LR ~3x, to 0.3 (or train longer)
    """

    label: str  # one of LABELS (or PRUNED for a sweep member pruned too early to judge)
    reason: str  # the evidence in the curve, in numbers
    advice: str  # what to change, with a number where possible
    evidence: dict  # the numbers behind reason and advice: name -> float | int
    hparams: dict | None = None  # the member's hyperparameters and seed (in a sweep)

    def __str__(self) -> str:
        who = "" if not self.hparams else ", ".join(
            f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in self.hparams.items()
        ) + ": "
        return f"{who}{self.label}: {self.reason} -> {self.advice}"


def _fmt(x: float) -> str:
    """A short number: 0.003, 0.12, 41, 1.2e-14."""
    if not np.isfinite(x):
        return str(float(x))
    s = f"{x:.2g}"
    return f"{float(s):.0f}" if "e+" in s and abs(x) < 1e6 else s


def _pct(x: float) -> str:
    """A share as a percentage: 11%."""
    return f"{100 * max(float(x), 0.0):.0f}%" if np.isfinite(x) else "n/a"


def _window_median(x: np.ndarray, start: np.ndarray, n: np.ndarray) -> np.ndarray:
    """[M] median of row m of ``x`` over the ``n[m]`` steps from ``start[m]`` (clipped)."""
    m, t = x.shape
    offset = np.arange(max(1, int(n.max())))
    idx = start[:, None] + offset[None, :]
    inside = (idx >= 0) & (idx < t) & (offset[None, :] < n[:, None])
    vals = np.where(inside, x[np.arange(m)[:, None], np.clip(idx, 0, t - 1)], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty window gives NaN
        return np.nanmedian(vals, axis=1)


def _curve_features(loss: np.ndarray) -> dict[str, np.ndarray]:
    """The per-member numbers of the rules, from a [M, T] float64 loss array."""
    m, t = loss.shape
    finite = np.isfinite(loss)
    loss0 = np.where(finite[:, 0], loss[:, 0], 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        blown = loss - loss0[:, None] > DIVERGENCE_FACTOR * np.abs(loss0)[:, None]
    bad = ~finite | blown
    diverged = bad.any(axis=1)
    diverged_at = np.where(diverged, bad.argmax(axis=1), -1)
    y = np.where(bad, loss0[:, None], loss)  # diverged rows' numbers are not used
    k, q = max(2, t // 50), max(2, t // 10)
    start = y[:, :k].mean(axis=1)
    final = y[:, -q:].mean(axis=1)
    # standard error of start - final, from the step-to-step noise of the last 10% (a trend
    # barely moves differences: var(diff) = 2 sigma^2 for independent noise)
    sigma = np.sqrt(np.diff(y[:, -q:], axis=1).var(axis=1) / 2)
    noise = sigma * np.sqrt(1 / k + 1 / q)
    level = y[:, -max(2, t // 4):].mean(axis=1)
    csum = np.cumsum(np.pad(y, ((0, 0), (1, 0))), axis=1)
    floor = ((csum[:, k:] - csum[:, :-k]) / k).min(axis=1)  # the lowest k-step moving mean
    # share of the decrease in the second half, on window medians (a spike does not move it)
    m0, m1 = np.median(y[:, :k], axis=1), np.median(y[:, -q:], axis=1)
    mid = np.median(y[:, t // 2 - q // 2: t // 2 - q // 2 + q], axis=1)
    drop = m0 - m1
    tiny = 1e-12 * (np.abs(m0) + 1e-30)
    share = np.where(drop > tiny, (mid - m1) / np.maximum(drop, tiny), np.nan)
    # e: the curve made positive (shifted when it goes below 0; underflowed zeros made tiny)
    lo, hi = y.min(axis=1), y.max(axis=1)
    shift = np.where(lo >= 0, 0.0, lo - 1e-3 * (hi - lo))
    e = np.maximum(y - shift[:, None], 1e-30 * np.maximum(np.abs(hi), 1e-270)[:, None])
    tail = e[:, t // 2:]
    n4 = max(1, tail.shape[1] // 4)
    lows = lambda x: np.quantile(x, 0.1, axis=1)  # spikes do not move a window's lows
    trend = lows(tail[:, -n4:]) / lows(tail[:, :n4])
    cv = tail.std(axis=1) / tail.mean(axis=1)
    rose = (np.diff(tail, axis=1) > 0).mean(axis=1)
    lt = np.log(tail)
    s = np.arange(lt.shape[1]) - (lt.shape[1] - 1) / 2
    r = lt - lt.mean(axis=1, keepdims=True) - ((lt * s).sum(axis=1) / (s * s).sum())[:, None] * s
    denom = (r * r).sum(axis=1)
    ac = np.where(denom > 0, (r[:, 1:] * r[:, :-1]).sum(axis=1) / np.maximum(denom, 1e-300), 0.0)
    last = y[:, -min(100, t - 1) - 1:]
    rises = (np.diff(last, axis=1) > 0).sum(axis=1)
    amplitude = last.std(axis=1) / np.maximum(np.abs(last.mean(axis=1)), 1e-300)
    return dict(loss0=loss0, diverged=diverged, diverged_at=diverged_at, start=start,
                final=final, noise=noise, level=level, floor=floor, share=share, trend=trend, cv=cv,
                rose=rose, ac=ac, rises=rises, window=np.full(m, last.shape[1] - 1),
                amplitude=amplitude, e=e, shift=shift, sigma=sigma, y=y)


def _cut_features(e: np.ndarray, lr: np.ndarray, top: np.ndarray,
                  floor: np.ndarray) -> dict[str, np.ndarray]:
    """The first LR cut of each row of ``lr`` [M, T] and the loss ``e`` around it (``top`` and
    ``floor``: the start and lowest level of ``e``)."""
    m, t = e.shape
    ok = np.isfinite(lr).all(axis=1) & (lr > 0).any(axis=1)
    lr = np.where(np.isfinite(lr), lr, 0.0)
    runmax = np.maximum.accumulate(lr, axis=1)
    cut = (lr < CUT_FRACTION * runmax) & ok[:, None]
    c = np.where(cut.any(axis=1), cut.argmax(axis=1), t)
    w = np.clip(np.minimum(c, t - c), 0, max(4, t // 5))
    has = cut.any(axis=1) & (w >= 2)
    h = np.maximum(w // 2, 1)
    before = _window_median(e, c - w, h) - _window_median(e, c - h, h)
    after = _window_median(e, c, h) - _window_median(e, c + w - h, h)
    rows, cl = np.arange(m), np.clip(c, 1, t - 1)
    factor = np.where(has, lr[rows, cl] / np.maximum(runmax[rows, cl - 1], 1e-300), 1.0)
    falling = before / np.maximum(top - floor, 1e-300)
    stall = np.where(before > 0, after / np.maximum(before, 1e-300), np.inf)
    return dict(has_cut=has, cut_step=np.where(has, c, -1), cut_factor=factor, window=w,
                pre_drop=falling, stall=stall,
                aggressive=has & (falling >= CUT_FALLING) & (stall < CUT_STALL))


def _start_scale(f: dict, gid: np.ndarray) -> np.ndarray:
    """[M] S: the median first loss of each member's group."""
    group = gid[:, None] == gid[None, :]
    return np.nanmedian(np.where(group, f["loss0"][None, :], np.nan), axis=1)


def _compare(f: dict, gid: np.ndarray, held: dict | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """[M, M] masks: member j (same group, not diverged) reached a clearly / even slightly
    lower level than member i (with ``held``: a lower held-out level of its setting)."""
    group = gid[:, None] == gid[None, :]
    top = _start_scale(f, gid)  # S of the group
    if held is None:
        level, pos, out = f["level"], f["shift"] == 0, f["diverged"]
    else:  # NaN levels (no finite eval) compare as neither lower nor higher
        level, pos, out = held["level"], held["positive"], f["diverged"] | held["excluded"]
    li, lj = level[:, None], level[None, :]
    with np.errstate(invalid="ignore"):
        gap = (li - lj) / np.maximum(top[:, None] - lj, 1e-300)
    positive = pos[:, None] & pos[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(positive & (lj > 0), li / np.where(lj > 0, lj, 1.0),
                         np.where(positive & (li > 0), np.inf, 1.0))
    ok = (group & ~np.eye(len(gid), dtype=bool) & ~out[None, :] & np.isfinite(li)
          & np.isfinite(lj))
    small_gap, min_ratio = CLEAR_GAP_RATIO
    with np.errstate(invalid="ignore"):
        clear = (gap >= CLEAR_GAP) | ((gap >= small_gap) & (ratio >= min_ratio))
        better = (gap >= NO_BETTER[0]) | (ratio >= NO_BETTER[1])
    return clear & ok, better & ok


def _context(f: dict, value: np.ndarray, gid: np.ndarray, clear: np.ndarray,
             better: np.ndarray, level: np.ndarray) -> dict[str, np.ndarray]:
    """Per member: the lowest clearly-lower member with another LR (-1 if none), whether larger /
    smaller LRs were tried and did even slightly better, the largest smaller LR that did not
    diverge."""
    known = np.isfinite(value)
    same = (gid[:, None] == gid[None, :]) & known[:, None] & known[None, :]
    with np.errstate(invalid="ignore"):
        larger = same & (value[None, :] > value[:, None] * (1 + 1e-6))
        smaller = same & (value[None, :] < value[:, None] * (1 - 1e-6))
    lower = clear & (larger | smaller)
    best = np.where(lower.any(axis=1),
                    np.where(lower, level[None, :], np.inf).argmin(axis=1), -1)
    safe = np.where(smaller & ~f["diverged"][None, :], value[None, :], -np.inf).max(axis=1)
    slightly = better & (larger | smaller)  # lower, but not clearly: named in a healthy advice
    near = np.where(slightly.any(axis=1),
                    np.where(slightly, level[None, :], np.inf).argmin(axis=1), -1)
    with np.errstate(invalid="ignore"):  # any lower level at all (NaN: not lower)
        below = smaller & ~f["diverged"][None, :] & (level[None, :] < level[:, None])
    lowest_smaller = np.where(below.any(axis=1),
                              np.where(below, level[None, :], np.inf).argmin(axis=1), -1)
    return dict(best=best, near=near, lowest_smaller=lowest_smaller,
                has_larger=larger.any(axis=1),
                has_smaller=smaller.any(axis=1),
                larger_better=(better & larger).any(axis=1),
                smaller_better=(better & smaller).any(axis=1),
                safe_lr=np.where(np.isfinite(safe), safe, np.nan))


def _schedule_context(cut: dict, value: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Per member: another with the same or a lower peak LR, cut later or never, that reached
    a clearly lower level (the one with the highest LR: the closest twin; -1 if none)."""
    step = np.where(cut["cut_step"] < 0, np.iinfo(np.int64).max, cut["cut_step"])
    with np.errstate(invalid="ignore"):
        not_higher = value[None, :] <= value[:, None] * (1 + 1e-6)
    later = clear & not_higher & (step[None, :] > step[:, None]) & cut["has_cut"][:, None]
    return np.where(later.any(axis=1),
                    np.where(later, value[None, :], -np.inf).argmax(axis=1), -1)


def _lr_independent(f: dict, value: np.ndarray, gid: np.ndarray) -> dict[str, np.ndarray]:
    """Per member: whether its divergence cannot be the LR's doing, and the LR range of its
    group when that is the evidence (NaN otherwise). At step 0 no update has been made: the
    initial model's loss or gradients were non-finite, whatever the LR. And when every member
    of a group diverged at the same step although their LRs span >= ``LR_SPAN`` x, the LR made
    no difference: a bad batch (e.g. a NaN/inf in the data) or a bad model is the cause."""
    div, at = f["diverged"], f["diverged_at"]
    same = gid[:, None] == gid[None, :]
    together = (~same | (div[None, :] & (at[None, :] == at[:, None]))).all(axis=1)
    known = same & np.isfinite(value)[None, :]
    lo = np.where(known, value[None, :], np.inf).min(axis=1)
    hi = np.where(known, value[None, :], -np.inf).max(axis=1)
    spans = div & together & (lo > 0) & np.isfinite(hi) & (hi >= LR_SPAN * lo)
    return dict(lr_free=div & ((at == 0) | spans), lr_lo=np.where(spans, lo, np.nan),
                lr_hi=np.where(spans, hi, np.nan))


def _labels(f: dict, cut: dict, ctx: dict, twin: np.ndarray, value: np.ndarray,
            overfit: np.ndarray):
    """The label of every member, and the curve-alone verdicts the texts explain."""
    drop = f["start"] - f["final"]
    stuck = drop <= np.maximum(STUCK * np.abs(f["start"]), NOISE_SE * f["noise"])
    osc = (((f["trend"] >= FLAT_TAIL) | (f["share"] > 1)) & (f["cv"] >= SPIKY_CV)
           & (f["ac"] >= PERSISTENT_AC) & (f["rose"] >= BOUNCES))
    slow = (stuck | (f["share"] >= STILL_FALLING)) & ~osc
    best = ctx["best"]
    found = best >= 0
    best_lr = value[np.maximum(best, 0)]
    too_slow = (found & (best_lr > value)) | (
        slow & ~found & (~ctx["has_larger"] | ctx["larger_better"]))
    too_high = (found & (best_lr < value)) | (
        osc & ~found & (~ctx["has_smaller"] | ctx["smaller_better"]))
    label = np.select(
        [f["diverged"], cut["aggressive"] | (twin >= 0), overfit, too_high, too_slow],
        ["diverged", "schedule_too_aggressive", OVERFITTING, "oscillating", "too_slow"],
        "healthy")
    return label, stuck, slow, osc


def _diagnose_arrays(loss: np.ndarray, value: np.ndarray, curve: np.ndarray | None,
                     gid: np.ndarray, diverged_at: np.ndarray | None = None,
                     evals: tuple | None = None) -> list[Diagnosis]:
    """The rules of :func:`diagnose` on validated arrays (``evals``: the held-out curves
    [M, E], their steps [E] and the members' setting ids [M], for :func:`diagnose_sweep`)."""
    m, _ = loss.shape
    f = _curve_features(loss)
    if diverged_at is not None:  # a sweep's own quarantine record
        recorded = diverged_at >= 0
        f["diverged_at"] = np.where(f["diverged"], f["diverged_at"],
                                    np.where(recorded, diverged_at, -1))
        f["diverged"] = f["diverged"] | recorded
    if curve is not None:
        top = np.maximum(f["start"], f["loss0"]) - f["shift"]
        cut = _cut_features(f["e"], curve, top, f["floor"] - f["shift"])
    else:
        cut = dict(has_cut=np.zeros(m, bool), cut_step=np.full(m, -1), cut_factor=np.ones(m),
                   window=np.zeros(m, int), pre_drop=np.zeros(m), stall=np.full(m, np.inf),
                   aggressive=np.zeros(m, bool))
    held = None
    if evals is not None:
        held = held_out_features(f, *evals, scale=_start_scale(f, gid))
    clear, better = _compare(f, gid, held)
    ctx = _context(f, value, gid, clear, better, f["level"] if held is None else held["level"])
    ctx.update(_lr_independent(f, value, gid))
    twin = _schedule_context(cut, value, clear)
    overfit = np.zeros(m, bool) if held is None else held["overfit"]
    label, stuck, slow, osc = _labels(f, cut, ctx, twin, value, overfit)
    return [_explain(i, str(label[i]), f, cut, ctx, twin, value, stuck, slow, osc, loss, held)
            for i in range(m)]


def _explain(i: int, label: str, f: dict, cut: dict, ctx: dict, twin: np.ndarray,
             value: np.ndarray, stuck: np.ndarray, slow: np.ndarray, osc: np.ndarray,
             loss: np.ndarray, held: dict | None = None) -> Diagnosis:
    """Reason, advice and evidence of member ``i``."""
    lr = float(value[i])
    has_lr = bool(np.isfinite(lr))
    start, level = float(f["start"][i]), float(f["level"][i])
    by = f["level"] if held is None else held["level"]  # what the context compares
    what = "" if held is None else "mean held-out loss "
    ev: dict[str, float | int] = {
        "lr": lr, "start": start, "final": float(f["final"][i]), "level": level,
        "floor": float(f["floor"][i]), "second_half_share": float(f["share"][i]),
        "tail_cv": float(f["cv"][i]), "tail_autocorr": float(f["ac"][i]),
        "tail_rose": float(f["rose"][i]), "tail_trend": float(f["trend"][i]),
        "rises": int(f["rises"][i]), "window": int(f["window"][i]),
        "amplitude": float(f["amplitude"][i]), "diverged_at": int(f["diverged_at"][i]),
    }
    if held is not None:
        ev.update(heldout_level=float(held["level"][i]), heldout_final=float(held["own"][i]),
                  heldout_min=float(held["heldout_min"][i]),
                  heldout_min_step=int(held["heldout_min_step"][i]),
                  heldout_rise=float(held["heldout_rise"][i]),
                  train_at_heldout_min=float(held["train_at_min"][i]))
    j = int(ctx["best"][i])
    if j >= 0:
        ev.update(context_member=j, context_lr=float(value[j]), context_level=float(by[j]))
    if cut["has_cut"][i]:
        ev.update(cut_step=int(cut["cut_step"][i]), cut_factor=float(cut["cut_factor"][i]),
                  pre_cut_drop=float(cut["pre_drop"][i]), post_cut_stall=float(cut["stall"][i]))
    bumps = (f"the loss rose {f['rises'][i]} times in the last {f['window'][i]} steps, "
             f"amplitude {_fmt(f['amplitude'][i])}x mean")
    compared = (f"{_fmt(float(value[j]))} reached {what}{_fmt(float(by[j]))} vs "
                f"{_fmt(float(by[i]))}" if j >= 0 else "")
    better = ("did better" if held is None else
              "reached a noticeably lower held-out loss (>= 1% of the range or 1.25x)")
    if label == "diverged":
        d = int(f["diverged_at"][i])
        if 0 <= d < loss.shape[1] and np.isfinite(loss[i, d]):
            reason = (f"the loss blew up at step {d}: {_fmt(loss[i, d])} vs {_fmt(f['loss0'][i])} "
                      f"at the start, over {DIVERGENCE_FACTOR:g}x")
        else:
            reason = f"the loss became non-finite (NaN/inf) at step {d}"
        safe = float(ctx["safe_lr"][i])
        ev["safe_lr"] = safe
        lo, hi = float(ctx["lr_lo"][i]), float(ctx["lr_hi"][i])
        if np.isfinite(lo):
            reason += f"; every member (LR {_fmt(lo)} to {_fmt(hi)}) diverged at step {d}"
        if ctx["lr_free"][i]:
            ev["lr_independent"] = 1
            why = ("at step 0, before any update" if d == 0 else
                   f"at step {d} at every LR from {_fmt(lo)} to {_fmt(hi)}")
            advice = (f"not the LR: the loss or its gradients became non-finite {why}, so no LR "
                      f"avoids it; look in the data (NaN/inf or extreme values in the batch of "
                      f"step {d}: np.isfinite) and in the model and loss (log(0), division by "
                      f"zero, sqrt of a negative)")
        elif np.isfinite(safe):
            advice = (f"lower the LR to {_fmt(safe)} or below (the largest LR that did not "
                      f"diverge), {_fmt(lr / safe)}x lower")
        else:
            advice = f"lower the LR ~10x, to {_fmt(lr / 10)}" if has_lr else "lower the LR ~10x"
    elif label == "schedule_too_aggressive":
        c, fac = int(cut["cut_step"][i]), float(cut["cut_factor"][i])
        reason = (f"the LR was cut x{_fmt(fac)} at step {c} while the loss was still falling "
                  f"({_pct(cut['pre_drop'][i])} of its range in the {cut['window'][i]} steps "
                  f"before); after the cut it fell {_fmt(max(cut['stall'][i], 0.0))}x as much")
        k = int(twin[i])
        if k >= 0:
            ck = int(cut["cut_step"][k])
            how = "without the cut" if ck < 0 else f"cut at step {ck}"
            reason += (f"; member {k} at LR {_fmt(float(value[k]))} {how} reached "
                       f"{what}{_fmt(float(by[k]))} vs {_fmt(float(by[i]))}")
            ev.update(schedule_member=k, schedule_level=float(by[k]))
        gentler = 0.5 if fac >= 0.05 else float(np.sqrt(max(fac, 0.0)))
        advice = (f"decay later (the loss was still falling at step {c}) or by {_fmt(gentler)} "
                  f"instead of {_fmt(fac)}")
    elif label == OVERFITTING:
        h_min, at = float(held["heldout_min"][i]), int(held["heldout_min_step"][i])
        reason = (f"the held-out loss rose from {_fmt(h_min)} at step {at} to "
                  f"{_fmt(float(held['own'][i]))} at the end ({_pct(held['heldout_rise'][i])} "
                  f"higher) while the training loss kept falling "
                  f"({_fmt(float(held['train_at_min'][i]))} -> {_fmt(float(f['final'][i]))})")
        stop = (f"stop earlier (the held-out loss was lowest at step {at}: early stopping on "
                f"the eval loss) or regularise (weight decay, dropout, more data)")
        if j >= 0 and float(value[j]) < lr:
            advice = (f"lower the LR ~{_fmt(lr / float(value[j]))}x, to "
                      f"{_fmt(float(value[j]))} (it reached {what}{_fmt(float(by[j]))} vs "
                      f"{_fmt(float(by[i]))} here), {stop}")
        elif j >= 0:
            advice = f"{stop}; the grid point {compared} here"
        elif ctx["lowest_smaller"][i] >= 0:  # lower, but not clearly: named, as in healthy
            k = int(ctx["lowest_smaller"][i])
            advice = (f"{stop}; keep the LR: the smaller {_fmt(float(value[k]))} reached "
                      f"{what}{_fmt(float(by[k]))} vs {_fmt(float(by[i]))} here: lower, but "
                      "not clearly")
        elif ctx["has_smaller"][i]:
            advice = f"{stop}; keep the LR: no smaller LR reached a lower held-out loss"
        else:
            advice = f"{stop}, or try a smaller LR (none was tried)"
    elif label == "oscillating":
        if j >= 0:
            reason = f"a smaller LR {compared} here"
            reason += f"; {bumps}" if f["rose"][i] >= BOUNCES else ""
            advice = (f"lower the LR ~{_fmt(lr / float(value[j]))}x, to "
                      f"{_fmt(float(value[j]))}")
        else:
            reason = (f"{bumps}; second half: std {_fmt(f['cv'][i])}x mean, spikes persist "
                      f"(lag-1 autocorrelation {_fmt(f['ac'][i])}), no progress (lows "
                      f"x{_fmt(f['trend'][i])} from its first to its last quarter)")
            advice = f"lower the LR ~3x, to {_fmt(lr / 3)}" if has_lr else "lower the LR ~3x"
    elif label == "too_slow":
        if j >= 0:
            reason = f"a larger LR {compared} here"
            advice = (f"raise the LR ~{_fmt(float(value[j]) / lr)}x, to "
                      f"{_fmt(float(value[j]))}")
        else:
            reason = (f"the loss barely moved: {_fmt(start)} -> {_fmt(float(f['final'][i]))}"
                      if stuck[i] else
                      f"the loss is still falling: {_pct(f['share'][i])} of its decrease "
                      f"({_fmt(start)} -> {_fmt(float(f['final'][i]))}) came in the second half")
            advice = (f"raise the LR ~3x, to {_fmt(3 * lr)} (or train longer)" if has_lr else
                      "raise the LR ~3x (or train longer)")
    elif slow[i]:
        reason = (f"the loss fell from {_fmt(start)} to {_fmt(level)} and is still falling "
                  f"({_pct(f['share'][i])} of it in the second half), but no larger LR "
                  f"{better}")
        advice = "keep the LR and train longer"
    elif osc[i]:
        reason = f"{bumps}, but no smaller LR {better}"
        advice = "keep the LR (to smooth the loss: larger batches)"
    else:
        reason = (f"the loss fell from {_fmt(start)} to {_fmt(level)} and levelled off "
                  f"({_pct(f['share'][i])} of the decrease in the second half)")
        advice = "keep the LR"
    k = int(ctx["near"][i])
    if label == "healthy" and held is not None and k >= 0:
        advice += (f"; {_fmt(float(value[k]))} reached {what}{_fmt(float(by[k]))} vs "
                   f"{_fmt(float(by[i]))} here: lower, but not clearly")
        ev.update(near_member=k, near_lr=float(value[k]), near_level=float(by[k]))
    return Diagnosis(label, reason, advice, ev)


def _as_arrays(losses: npt.ArrayLike, lrs: npt.ArrayLike | None,
               groups: Iterable[Hashable] | None):
    """Validate the inputs: loss [M, T], LR value [M] (NaN: unknown), LR curves [M, T] or None,
    group ids [M], and whether one curve was given."""
    loss = np.asarray(losses, dtype=np.float64)
    if loss.ndim not in (1, 2):
        raise ValueError(f"losses must be one curve [steps] or curves [M, steps], got an array "
                         f"of shape {loss.shape} (ndim={loss.ndim})")
    single = loss.ndim == 1
    loss = np.atleast_2d(loss)
    m, t = loss.shape
    if m < 1:
        raise ValueError(f"losses must hold at least one curve, got shape {loss.shape}")
    if t < MIN_STEPS:
        raise ValueError(f"losses must have at least {MIN_STEPS} steps to show a trend, got "
                         f"steps={t} (shape {loss.shape}); record the loss at every step")
    value, curve = np.full(m, np.nan), None
    if lrs is not None:
        lr = np.asarray(lrs, dtype=np.float64)
        if lr.ndim == 0 or (not single and lr.shape == (m,)):
            value = np.broadcast_to(lr, (m,)).copy()
            bad = ~(np.isfinite(value) & (value > 0))
            if bad.any():
                i = int(bad.argmax())
                raise ValueError(f"lrs must be positive and finite, got "
                                 f"lrs[{i}]={float(value[i])!r}")
        elif (single and lr.shape == (t,)) or lr.shape == (m, t):
            curve = lr.reshape(m, t)
            peak = np.where(np.isfinite(curve), curve, -np.inf).max(axis=1)
            value = np.where(peak > 0, peak, np.nan)
        else:
            want = ("a scalar or the LR curve [steps]" if single else
                    f"a scalar, one LR per member [M={m}] or LR curves [M={m}, steps={t}]")
            raise ValueError(f"lrs must be {want}, got an array of shape {lr.shape} for losses "
                             f"of shape {np.shape(losses)}")
    if groups is None:
        gid = np.zeros(m, dtype=np.int64)
    else:
        keys = list(groups)
        if len(keys) != m:
            raise ValueError(f"groups must give one group per member (M={m}), got {len(keys)}")
        ids: dict[Hashable, int] = {}
        gid = np.asarray([ids.setdefault(key, len(ids)) for key in keys], dtype=np.int64)
    return loss, value, curve, gid, single


def diagnose(losses: npt.ArrayLike, lrs: npt.ArrayLike | None = None, *,
             groups: Iterable[Hashable] | None = None) -> Diagnosis | list[Diagnosis]:
    r"""Diagnose learning-rate problems from loss curves: a label, the evidence and advice.

    Each curve is one run's training loss at every step (a sweep member's ``loss`` row). Given
    several curves with their LRs, the curves are also a *sweep context*: what the other LRs
    reached decides what one curve alone cannot (a noisy run at the noise floor vs a too-high
    LR; a still-falling run vs a too-low LR). Levels of a curve of T steps: ``loss_0`` its first
    value, *start* the mean of its first max(2, T/50) steps, *final* the mean of its last 10%
    (as :meth:`SweepResult.final_loss`), *level* (what it reached, compared across runs) the mean
    of its last 25%, *floor* its lowest max(2, T/50)-step moving mean; *the tail* is its second
    half. The first rule that holds gives the label:

    1. ``diverged``: a value is NaN/inf, or :math:`loss_t - loss_0 > 100\,|loss_0|` (the
       quarantine rule of :func:`jaxlr.sweep`, so a raw and a swept curve agree). The advice
       blames the data or the model, not the LR, when no LR can be the cause: the run diverged
       at step 0 (before any update), or every run of its group diverged at the same step
       although their LRs span >= 10x (evidence ``lr_independent``).
    2. ``schedule_too_aggressive`` (needs LR curves): the first *cut* c is the first step where
       the LR is below 0.5x its running maximum; with w = min(c, T - c, max(4, T/5)) and
       medians of w/2-step windows, the loss fell >= 10% of its range (max(start, loss_0) -
       floor) in the w steps before the cut and < 0.25x as much in the w steps after it
       ("progress stalls right after the cut"); or, in a sweep, a run with the same or a lower
       peak LR, cut later or never, reached a clearly lower level.
    3. ``oscillating`` (LR too high): in a sweep, a smaller LR reached a clearly lower level.
       Alone: the tail is spiky (std >= 1.0x its mean; minibatch noise at batch 8 is ~0.5x),
       its spikes persist (lag-1 autocorrelation of the linearly detrended log loss >= 0.3;
       independent batch noise gives ~0), it rises on >= 20% of its steps, and it makes no
       progress: its lows (10% quantile) fell < 10x from its first to its last quarter, or the
       mid-run loss was above the start. Heavy-ball ringing rises on ~45% of steps at every LR
       but falls by orders of magnitude, and minibatch noise rises on ~50% of steps but is
       neither spiky nor persistent, so the count of rises alone is no evidence.
    4. ``too_slow`` (LR too low): in a sweep, a larger LR reached a clearly lower level. Alone:
       still falling (on window medians, >= 10% of the decrease came in the second half) or
       stuck (start - final < 1% of start, or < 2 standard errors of that difference, the
       noise sigma from the last 10%'s step-to-step differences: within the noise).
    5. ``healthy`` otherwise.

    The context: runs of the same group with a different LR are compared by level. Run j is
    *clearly lower* than run i when :math:`level_i - level_j \ge 0.05\,(S - level_j)`, S the
    median ``loss_0`` of the group, or when that gap is >= 0.01 and :math:`level_i \ge 1.5\,
    level_j` (non-negative losses). The lowest clearly-lower run decides (its LR larger:
    ``too_slow``, smaller: ``oscillating``) and is named in the advice. A curve that looks too
    slow (oscillating) alone is ``healthy`` when larger (smaller) LRs were tried and none was
    even 1% or 1.25x lower: then "train longer" (or larger batches). Diverged runs are never
    the better one; a diverged run is advised the largest smaller LR that did not diverge.
    Limits of a curve alone: a run that a too-high LR threw onto a flat, high plateau looks
    stuck (``too_slow``), and with batches of 1-2 the batch noise itself is spiky; the sweep
    context tells both apart.

    Measured (``tests/test_diagnose.py``) on held-out generator seeds: the thresholds were tuned
    on the curves of seed 0, the figures below are those of seeds 101 and 102, 632 generated
    curves with known truth in 56 sweeps (GD and heavy ball 0.9 on quadratics, minibatch SGD on
    noisy least squares, early and late step cuts). Every curve is scored; LRs between the
    generators' clear ranges by a stated rule on the exact dynamics: diverged if the sweep's
    quarantine caught the run, else oscillating if its stationary expected loss is >= 1.5x the
    optimum (inf when the iteration is mean-square unstable), else too_slow if >= 1% of its
    excess loss is left at the last step (noise-free), else healthy:

    ========================  =========  ======  ================  ======
    label                     precision  recall  alone: precision  recall
    ========================  =========  ======  ================  ======
    diverged                       1.00    1.00              1.00    1.00
    oscillating                    1.00    0.94              1.00    0.75
    too_slow                       1.00    0.98              0.98    0.84
    schedule_too_aggressive        1.00    1.00              1.00    0.88
    healthy                        0.98    1.00              0.89    1.00
    ========================  =========  ======  ================  ======

    The misses are grey-zone LRs: SGD just above ~1/L whose loss settles 1.5-2x above the
    optimum (healthy here, oscillating by the rule) and SGD at 0.03-0.05/L with 1-3% of its
    excess left (healthy here, too slow by the rule); alone, a spiky curve that still makes
    progress reads as healthy or too slow.

    Measured on real sweeps (``benchmarks/diagnosis_truth.py``, run 1 in
    ``benchmarks/results/``; no threshold was tuned on them): the 10 tasks of the LR finder's
    truth set (the CLI's MLP and logistic regression on digits, breast cancer, wine and a
    ``make_classification`` set under SGD, momentum, Adam, AdamW, RMSProp), each a sweep of 31
    constant LRs x 3 seeds, 400 steps, held-out loss every 100 steps, diagnosed by
    ``SweepResult.diagnose()``: 930 members. Truth from the final held-out losses alone: the
    LRs around the best whose mean over seeds is within X of the best's are "keep", smaller
    LRs "raise", larger ones "lower", members the quarantine caught "diverged". Scored by the
    advice's direction (``oscillating``: lower, ``too_slow``: raise, ``healthy``: keep,
    ``overfitting``: the way its advice points). Precision / recall (n: members of that truth):

    =========  ===================  ===================
    direction  X = 10%              X = 50%
    =========  ===================  ===================
    diverged   1.00 / 1.00 (134)    1.00 / 1.00 (134)
    raise      0.98 / 0.80 (438)    0.92 / 1.00 (330)
    keep       0.42 / 0.94 (105)    1.00 / 0.84 (279)
    lower      1.00 / 0.81 (253)    0.91 / 1.00 (187)
    =========  ===================  ===================

    No advice points the wrong way (raise vs lower); the misses are keep vs move, because
    "clearly lower" is measured on the range S - level: where the best held-out loss is far
    below the start (digits, wine, breast cancer) the 1.5x ratio decides, so ``healthy`` spans
    settings up to ~1.5x the best (``keep`` precision 0.42 at 10%); where it is ~0.4 of the
    start (``make_classification``) 5% of the range is ~9% of the level, and ``too_slow`` /
    ``overfitting`` advise leaving settings 1.06-1.5x the best (``keep`` recall 0.27-0.30 there
    at 50%). ``diverged`` agrees by construction (both read the quarantine). Without the grey
    zone (mean within the tolerance's band edge, or seeds that disagree) 85% -> 92% of the
    advices point the right way at 10%, 95% -> 97% at 50%.

    Args:
        losses: one curve [steps] or curves [M, steps] (at least 20 steps; NaN after a
            divergence is fine).
        lrs: optional. A scalar or one LR per curve [M], or the LR at every step ([steps], or
            [M, steps], e.g. :attr:`SweepResult.lr`): curves reveal schedule cuts, and their
            peak is the run's LR. Without LRs there is no context and advice has no numbers.
        groups: optional [M] keys (any hashable): only runs with equal keys are compared (e.g.
            the other hyperparameters). Default: all runs are one LR sweep.

    Returns:
        One :class:`Diagnosis` (``label``, ``reason``, ``advice``, ``evidence``) for one curve,
        a list of M for [M, steps].

    Example:
        >>> import numpy as np
        >>> from jaxlr import diagnose
        >>> lam, t = np.array([1.0, 0.1]), np.arange(200)[:, None]  # GD on a quadratic, L = 1
        >>> gd = lambda lr: 0.5 * (lam * (1 - lr * lam) ** (2 * t)).sum(axis=1)
        >>> curves = np.stack([gd(0.01), gd(1.0), gd(2.5)])
        >>> for d in diagnose(curves, [0.01, 1.0, 2.5]):
        ...     print(d.label, "|", d.advice)
        too_slow | raise the LR ~100x, to 1
        healthy | keep the LR
        diverged | lower the LR to 1 or below (the largest LR that did not diverge), 2.5x lower
        >>> print(diagnose(gd(0.01)))
        too_slow: the loss is still falling: ...% of its decrease (0.5... -> 0.0...) came in the
        second half -> raise the LR ~3x (or train longer)

    References:
        L. N. Smith, Cyclical Learning Rates for Training Neural Networks (2017),
        arXiv:1506.01186 (LR range and its symptoms). Goodfellow, Bengio & Courville, Deep
        Learning (2016), ch. 8.3 (SGD, LR schedules) and 11.4 (the LR as the first
        hyperparameter to tune). Gurbuzbalaban, Simsekli & Zhu, The Heavy-Tail Phenomenon in
        SGD (2021), arXiv:2006.04740 (spiky losses at large LR). The seed article's "Diagnosing
        and fixing learning rate problems" (too high: oscillation, divergence; too low: slow;
        schedule too aggressive).
    """
    loss, value, curve, gid, single = _as_arrays(losses, lrs, groups)
    out = _diagnose_arrays(loss, value, curve, gid)
    return out[0] if single else out


def diagnose_sweep(result: Any) -> list[Diagnosis]:
    r"""Diagnose every member of a sweep, using the other members as context.

    The engine of ``SweepResult.diagnose()``: :func:`diagnose` on ``result.loss`` with
    - the LR of a member: ``result.hparams["lr"]`` when the grid has an ``lr`` axis, else the
      peak of its recorded LR curve ``result.lr``;
    - the LR curves ``result.lr`` (where recorded, i.e. not all NaN) to find schedule cuts;
    - groups: members with equal values of every other hyperparameter except ``seed`` are one
      LR sweep (seeds are pooled: a clear gap must hold whatever the seed);
    - ``result.diverged_at``: members the sweep quarantined are ``diverged``;
    - ``result.pruned_at``: a member that successive halving stopped at a rung is judged on
      the steps before it (and the evaluations up to it), with every member as context (its
      reason says so; when that is fewer than 20 steps its label is ``"pruned"``: too short to
      judge); the survivors are judged among themselves;
    - after population-based training (``result.copied()``: slots changed LR and ancestry
      along the run, so no two slots form an LR sweep) each slot is judged alone, on its own
      curves, by the within-curve rules (and ``overfitting``).

    **With eval data** (``result.eval`` [M, E] at ``result.eval_steps``) the context answers
    the recommendation's question, which LR generalises best:

    - a member's *held-out level* is the mean final eval loss (``eval[:, -1]``) of its setting
      (its hyperparameters but the seed) over the seeds that did not diverge. The context rules
      of :func:`diagnose` compare these levels instead of the training levels: *clearly lower*
      (:math:`h_i - h_j \ge 0.05\,(S - h_j)`, or :math:`\ge 0.01\,(S - h_j)` and
      :math:`h_i \ge 1.5\,h_j` when both are >= 0; S the group's median first training loss)
      for ``too_slow``, ``oscillating`` and the schedule twin, *even slightly lower* (1% of
      the range or 1.25x) to overrule a curve's look. A setting with a diverged seed or a
      non-finite final eval is never the better one (``best(over="seed")`` never recommends
      it). So the members of the recommended setting are never told to move toward another LR
      of the grid: no other setting has a lower mean held-out loss.
    - the training loss still decides ``diverged`` and the within-curve rules (still falling,
      stuck, spiky), whose verdicts the held-out levels overrule as above.
    - ``overfitting`` (after rules 1-2 of :func:`diagnose`, before 3): with E >= 2
      evaluations, :math:`h_{min}` the lowest at step :math:`s_{min}` before the last one and
      :math:`h_E` the last, the held-out loss rose,
      :math:`h_E - h_{min} \ge \max(0.1\,|h_{min}|,\ 0.01\,(S - h_{min}))`, while the
      training loss kept falling: the mean of the max(2, T/10) steps before :math:`s_{min}`
      minus *final* (the mean of the last 10%) is >= max(0.01 x that mean, 2 standard
      errors), :math:`SE = \sigma\sqrt{1/n_1 + 1/n_2}`, :math:`\sigma` from the last 10%'s
      step-to-step differences. Advice: the clearly better smaller LR when there is one, stop
      earlier (at :math:`s_{min}`) or regularise.
    - a ``healthy`` member's advice names a setting that was lower, but not clearly.

    **grid_edge** (not after population-based training): the best setting of each group,
    the lowest mean over seeds of the recommendation's metric (the final eval loss with eval
    data, else the final training loss, the mean of the last 10% of steps; a diverged seed
    counts inf, as :meth:`SweepResult.best` with ``over="seed"``), when its LR is the smallest
    or largest of the group's >= 2 LRs: its members labelled ``healthy``, ``too_slow`` or
    ``oscillating`` become ``grid_edge`` (the earlier reason kept), advised to extend the grid
    a decade beyond the edge (to 10x the largest, 1/10 the smallest LR tried); an
    ``overfitting`` or ``schedule_too_aggressive`` member of it keeps its label, with that
    advice added. Evidence: ``grid_edge`` (+1 largest, -1 smallest), ``extend_to``.

    Args:
        result: a :class:`SweepResult` (``loss``, ``lr`` [M, steps], ``hparams``,
            ``diverged_at``; ``eval`` [M, E] and ``eval_steps`` [E] when evaluated).

    Returns:
        A list of M :class:`Diagnosis`, in member order, each with its member's
        ``hparams`` (``result.grid[i]``, seed included).

    Example:
        >>> import numpy as np, jaxlr
        >>> from jaxlr._diagnose import diagnose_sweep
        >>> t = np.arange(100)
        >>> loss = np.stack([0.99 ** t, 0.5 ** t, np.where(t < 8, 2.0 ** t, np.nan)])
        >>> res = jaxlr.SweepResult(
        ...     grid=jaxlr.grid(lr=[1e-3, 0.1, 1.0]), loss=loss, lr=np.full(loss.shape, np.nan),
        ...     eval=None, eval_aux={}, eval_steps=None, diverged=np.array([0, 0, 1], bool),
        ...     diverged_at=np.array([-1, -1, 7]), state=((), ()), assemble=lambda p, r: p)
        >>> [d.label for d in diagnose_sweep(res)]
        ['too_slow', 'healthy', 'diverged']
        >>> print(diagnose_sweep(res)[2])
        lr=1: diverged: the loss blew up at step 7: 130 vs 1 at the start, over 100x -> lower
        the LR to 0.1 or below (the largest LR that did not diverge), 10x lower

        With eval data, LR 1.0 reaches the lowest training loss and the worst held-out loss:

        >>> loss = np.stack([0.995 ** t, 0.97 ** t, 0.9 ** t])
        >>> res = jaxlr.SweepResult(
        ...     grid=jaxlr.grid(lr=[0.01, 0.1, 1.0]), loss=loss, lr=np.full(loss.shape, np.nan),
        ...     eval=np.array([[0.8, 0.7], [0.3, 0.2], [0.25, 0.5]]), eval_aux={},
        ...     eval_steps=np.array([50, 100]), diverged=np.zeros(3, bool),
        ...     diverged_at=np.full(3, -1))
        >>> [d.label for d in diagnose_sweep(res)]
        ['too_slow', 'healthy', 'overfitting']
        >>> print(diagnose_sweep(res)[2].advice)
        lower the LR ~10x, to 0.1 (it reached mean held-out loss 0.2 vs 0.5 here), stop earlier
        (the held-out loss was lowest at step 50: early stopping on the eval loss) or
        regularise (weight decay, dropout, more data)

    References:
        See :func:`diagnose`. Overfitting and early stopping on held-out data: Goodfellow,
        Bengio & Courville, Deep Learning (2016), ch. 7.8,
        https://www.deeplearningbook.org/contents/regularization.html . The best setting at
        the grid's edge: the Deep Learning Tuning Playbook,
        https://github.com/google-research/tuning_playbook
    """
    found = _diagnose_members(result)
    grid = getattr(result, "grid", None)
    if grid is None:
        return found
    return [d._replace(hparams=grid[i]) for i, d in enumerate(found)]


def _diagnose_members(result: Any) -> list[Diagnosis]:
    """:func:`diagnose_sweep` without the members' hyperparameters."""
    loss = np.asarray(result.loss, dtype=np.float64)
    m = loss.shape[0] if loss.ndim == 2 else 0
    hp = {k: np.asarray(v).reshape(-1) for k, v in result.hparams.items()}
    curve = None if result.lr is None else np.asarray(result.lr, dtype=np.float64)
    if curve is not None and not np.isfinite(curve).any():
        curve = None
    names = [k for k in hp if k not in ("lr", "seed")]
    keys = [tuple(hp[k][i].item() for k in names) for i in range(m)]
    loss, value, curve, gid, _ = _as_arrays(loss, curve, keys)
    if "lr" in hp:
        value = hp["lr"].astype(np.float64)
    div_at = None if result.diverged_at is None else np.asarray(result.diverged_at).reshape(m)
    ids: dict[tuple, int] = {}  # a setting: every hyperparameter but the seed
    setting = np.asarray([ids.setdefault(tuple(hp[k][i].item() for k in hp if k != "seed"),
                                         len(ids)) for i in range(m)], dtype=np.int64)
    held, held_steps = _eval_curves(result, m)
    if getattr(result, "copied", lambda: False)():  # population-based: slots change LR
        alone = np.arange(m)
        return _diagnose_arrays(loss, value, curve, alone, div_at,
                                None if held is None else (held, held_steps, alone))
    pruned_at = np.asarray(getattr(result, "pruned_at", np.full(m, -1))).reshape(m)
    if not (pruned_at >= 0).any():
        out = _diagnose_arrays(loss, value, curve, gid, div_at,
                               None if held is None else (held, held_steps, setting))
        return _grid_edges(out, result, held, value, gid, setting)
    # successive halving: the survivors are judged among themselves on the whole run; the
    # members pruned at a rung are judged with every member, on the steps before that rung
    out: list[Diagnosis | None] = [None] * m
    for rung in np.unique(pruned_at):
        sel = pruned_at == rung if rung < 0 else np.ones(m, bool)
        span = slice(None) if rung < 0 else slice(0, int(rung))
        if loss[sel, span].shape[1] < MIN_STEPS:
            for i in np.flatnonzero(pruned_at == rung):
                out[i] = Diagnosis(
                    PRUNED, f"pruned at step {rung} by successive halving, before the "
                    f"{MIN_STEPS} steps a trend needs: too short to judge",
                    f"nothing to fix: its setting ranked below the survivors at step {rung}; "
                    f"use min_steps >= {MIN_STEPS} to diagnose pruned members",
                    {"pruned_at": int(rung)})
            continue
        evals = None
        if held is not None:
            cols = held_steps <= rung if rung >= 0 else np.ones(held_steps.shape, bool)
            if cols.any():
                evals = (held[sel][:, cols], held_steps[cols], setting[sel])
        found = _diagnose_arrays(loss[sel, span], value[sel],
                                 None if curve is None else curve[sel, span], gid[sel],
                                 None if div_at is None else np.where(
                                     (div_at >= 0) & (div_at < loss[:, span].shape[1]), div_at,
                                     -1)[sel], evals)
        for i, d in zip(np.flatnonzero(sel), found):
            if pruned_at[i] == rung:
                out[i] = d if rung < 0 else d._replace(
                    reason=f"pruned at step {rung} by successive halving; until then {d.reason}",
                    evidence={**d.evidence, "pruned_at": int(rung)})
    return _grid_edges(out, result, held, value, gid, setting)


def _eval_curves(result: Any, m: int) -> tuple[np.ndarray | None, np.ndarray]:
    """The held-out curves [M, E] and their steps [E] of a result (None without eval data)."""
    held = getattr(result, "eval", None)
    if held is None:
        return None, np.zeros(0, np.int64)
    held = np.asarray(held, np.float64)
    if held.ndim != 2 or held.shape[0] != m or held.shape[1] < 1:
        return None, np.zeros(0, np.int64)
    steps = getattr(result, "eval_steps", None)
    steps = (np.asarray(steps, np.int64).reshape(-1) if steps is not None else np.zeros(0))
    if steps.shape != (held.shape[1],):  # unknown steps: the evaluations at the end
        steps = np.full(held.shape[1], np.asarray(result.loss).shape[1], np.int64)
    return held, steps


def _grid_edges(out: list[Diagnosis], result: Any, held: np.ndarray | None, value: np.ndarray,
                gid: np.ndarray, setting: np.ndarray) -> list[Diagnosis]:
    """Rule ``grid_edge``: the members of each group's best setting (by the recommendation's
    metric, :meth:`SweepResult.best` with ``over="seed"``) when that setting's LR is the
    smallest or largest of its group (of >= 2 LRs)."""
    score = _recommendation_score(result, held)
    m = len(out)
    order = list(dict.fromkeys(setting.tolist()))  # settings in grid order
    mean = {s: float(np.mean(score[setting == s])) for s in order}
    for g in np.unique(gid):
        in_group = gid == g
        lrs = value[in_group & np.isfinite(value)]
        if lrs.size == 0 or lrs.max() <= lrs.min() * (1 + 1e-6):
            continue
        group_settings = [s for s in order if (in_group & (setting == s)).any()]
        means = [mean[s] for s in group_settings]
        if not np.isfinite(means).any():
            continue
        best = group_settings[int(np.argmin(means))]
        lr = float(value[np.flatnonzero(setting == best)[0]])
        if not np.isfinite(lr):
            continue
        edge = 1 if lr >= lrs.max() * (1 - 1e-6) else -1 if lr <= lrs.min() * (1 + 1e-6) else 0
        if edge == 0:
            continue
        members = np.flatnonzero(setting == best)
        for i in members:
            out[i] = _edge_diagnosis(out[i], edge, lr, float(np.min(means)), len(members),
                                     held is not None)
    return out[:m]


def _recommendation_score(result: Any, held: np.ndarray | None) -> np.ndarray:
    """[M] the metric the recommendation ranks by (lower is better): the final eval loss with
    eval data, else the final training loss (mean of the finite values of the last 10% of
    steps); inf for diverged members and non-finite values (as :meth:`SweepResult.best`)."""
    loss = np.asarray(result.loss, np.float64)
    if held is not None:
        score = held[:, -1]
    else:
        last = loss[:, -max(1, loss.shape[1] // 10):]
        finite = np.isfinite(last)
        score = np.where(finite.any(axis=1), np.where(finite, last, 0.0).sum(axis=1)
                         / np.maximum(finite.sum(axis=1), 1), np.inf)
    diverged = np.asarray(getattr(result, "diverged", np.zeros(len(loss), bool)), bool)
    return np.where(diverged.reshape(-1) | ~np.isfinite(score), np.inf, score)


def _edge_diagnosis(d: Diagnosis, edge: int, lr: float, best: float, seeds: int,
                    held: bool) -> Diagnosis:
    """``d`` of a member of a best setting at the grid's edge: relabelled ``grid_edge`` when
    it was healthy, too slow or oscillating; other labels keep theirs, with the edge added."""
    if d is None or d.label in ("diverged", PRUNED):
        return d
    side, beyond = ("largest", "above") if edge > 0 else ("smallest", "below")
    target = lr * EDGE_EXTEND if edge > 0 else lr / EDGE_EXTEND
    extend = (f"extend the grid {'to' if edge > 0 else 'down to'} ~{_fmt(target)}: the best LR "
              f"may lie {beyond} {_fmt(lr)}")
    evidence = {**d.evidence, "grid_edge": edge, "extend_to": target, "group_best": best}
    if d.label not in ("healthy", "too_slow", "oscillating"):
        return d._replace(advice=f"{d.advice}; {extend}", evidence=evidence)
    metric = "held-out" if held else "final training"
    over = f" over {seeds} seeds" if seeds > 1 else ""
    reason = (f"best at the {side} LR tried, {_fmt(lr)}: the lowest mean {metric} loss of its "
              f"group ({_fmt(best)}{over})")
    if d.label != "healthy":
        reason += f"; {d.reason}"
    return Diagnosis(GRID_EDGE, reason, extend, evidence)
