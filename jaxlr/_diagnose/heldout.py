"""The held-out side of a sweep's diagnosis: the level members are compared by, and overfitting.

Why a file of its own: with eval data the diagnosis answers "which LR generalises best", the
question the recommendation answers, so it must rank members as the recommendation does (the
mean final eval loss of a setting over its seeds) while the training curve still says how the
run behaved (diverged, oscillating, still falling). Larger LRs often reach a lower *training*
loss and a worse *held-out* loss; ranked by training loss, the held-out best LRs were told
"raise the LR" toward worse models (issue 18). The rules and thresholds are documented in
:func:`jaxlr.diagnose` (eval-aware context and ``overfitting``) and measured by
``tests/test_advice.py``.
"""

from __future__ import annotations

import warnings

import numpy as np

OVERFIT_RISE = 0.1  # overfitting: the final held-out loss is >= 10% above its minimum, and ...
OVERFIT_GAP = 0.01  # ... that rise is >= 1% of the range S - minimum (S: the start loss), and
OVERFIT_FALL = 0.01  # ... the training loss fell by >= 1% of its level at the held-out minimum
OVERFIT_SE = 2.0  # ... and by >= 2 standard errors of that difference (not noise)


def setting_mean(value: np.ndarray, setting: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """[M] the mean of ``value`` over the members of each member's setting where ``ok``
    (NaN where none is)."""
    _, inv = np.unique(setting, return_inverse=True)
    inv = inv.reshape(-1)
    good = ok & np.isfinite(value)
    total = np.bincount(inv, np.where(good, value, 0.0))
    count = np.bincount(inv, good.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean[inv]


def held_out_features(f: dict, curves: np.ndarray, steps: np.ndarray, setting: np.ndarray,
                      scale: np.ndarray) -> dict[str, np.ndarray]:
    """The held-out numbers of the rules, per member.

    Args:
        f: the training-curve features (``diverged``, ``final``, ``sigma``, ``y``: the curves
            with diverged steps replaced).
        curves: [M, E] the eval loss at ``steps`` [E] (after that many updates).
        setting: [M] setting ids (members with equal hyperparameters but the seed).
        scale: [M] S, the loss at the start (the group's median first training loss).

    Returns:
        ``level`` (the setting's mean final eval loss over its members that did not diverge),
        ``own`` (the member's final eval loss), ``excluded`` (a member of its setting diverged
        or has no finite final eval: never the better one, as ``best(over="seed")``),
        ``positive`` (``level`` >= 0), ``overfit`` and the numbers behind it.
    """
    m, t = f["y"].shape
    h = np.asarray(curves, np.float64).reshape(m, -1)
    steps = np.asarray(steps, np.int64).reshape(-1)
    own = h[:, -1]
    finite = np.isfinite(own) & ~f["diverged"]
    level = setting_mean(own, setting, finite)
    _, inv = np.unique(setting, return_inverse=True)
    bad = np.bincount(inv.reshape(-1), (~finite).astype(np.float64)) > 0
    excluded = bad[inv.reshape(-1)]
    # overfitting: the held-out minimum came before the last evaluation, the held-out loss
    # rose clearly since, and the training loss kept falling over the same steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no minimum
        masked = np.where(np.isfinite(h), h, np.inf)
        k = masked.argmin(axis=1)
        h_min = masked[np.arange(m), k]
    rise = own - h_min
    need = np.maximum(OVERFIT_RISE * np.abs(h_min), OVERFIT_GAP * (scale - h_min))
    rose = (h.shape[1] >= 2) & finite & np.isfinite(h_min) & (k < h.shape[1] - 1) & (
        rise > 0) & (rise >= need)
    q = max(2, t // 10)
    at = np.clip(steps[k] if steps.size else np.full(m, t), 1, t)  # training index of the min
    lo = np.maximum(at - q, 0)
    csum = np.cumsum(np.pad(f["y"], ((0, 0), (1, 0))), axis=1)
    n = at - lo
    before = (csum[np.arange(m), at] - csum[np.arange(m), lo]) / np.maximum(n, 1)
    fell = before - f["final"]
    noise = OVERFIT_SE * f["sigma"] * np.sqrt(1 / np.maximum(n, 1) + 1 / q)
    falling = fell >= np.maximum(OVERFIT_FALL * np.abs(before), noise)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero minimum: inf, as below
        relative_rise = np.where(np.abs(h_min) > 0, rise / np.abs(h_min), np.inf)
    return dict(level=level, own=own, excluded=excluded, positive=level >= 0,
                overfit=rose & falling, heldout_min=h_min,
                heldout_min_step=steps[k] if steps.size else np.full(m, -1),
                heldout_rise=relative_rise,
                train_at_min=before, evals=np.full(m, h.shape[1]))
