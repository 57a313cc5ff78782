"""Advice you can trust on real tasks (issue 18): the eval-aware sweep context, ``overfitting``,
``grid_edge``, the recommendation and the diagnosis agreeing, and the LR sensitivity report.

Every rule is tested on hand-made curves at both sides of its threshold, and against the
documented formula written out here (``overfits_reference``, ``sensitivity_reference``); the
real case is softmax regression on scikit-learn's digits trained by minibatch SGD in numpy
(float64, seeded), where larger LRs reach a lower training loss and a worse held-out loss.
"""

import json
import re

import numpy as np
import pytest

import jaxlr
from jaxlr import _records
from jaxlr._diagnose import diagnose, diagnose_sweep, lr_sensitivity
from jaxlr._diagnose.sensitivity import bootstrap_interval

T = 100  # steps of the hand-made curves
# the overfitting rule's documented thresholds (diagnose_sweep's docstring), written out
OVERFIT_RISE, OVERFIT_GAP, OVERFIT_FALL, OVERFIT_SE = 0.1, 0.01, 0.01, 2.0


def make_result(loss, lrs, *, held=None, held_steps=None, seeds=None, extra=None,
                diverged=None, pruned_at=None):
    """A SweepResult of hand-made curves (float32 as jaxlr.sweep records them)."""
    loss = np.asarray(loss, np.float64)
    cols = {"lr": np.asarray(lrs, np.float32)}
    cols.update({k: np.asarray(v) for k, v in (extra or {}).items()})
    if seeds is not None:
        cols["seed"] = np.asarray(seeds, np.int32)
    bad = ~np.isfinite(loss)
    diverged = bad.any(axis=1) if diverged is None else np.asarray(diverged, bool)
    held = None if held is None else np.asarray(held, np.float32).reshape(len(loss), -1)
    if held is not None and held_steps is None:
        held_steps = np.linspace(loss.shape[1] / held.shape[1], loss.shape[1], held.shape[1])
    return jaxlr.SweepResult(
        grid=jaxlr.Grid(cols), loss=loss.astype(np.float32),
        lr=np.full(loss.shape, np.nan, np.float32), eval=held, eval_aux={},
        eval_steps=None if held is None else np.asarray(held_steps, np.int32),
        diverged=diverged, diverged_at=np.where(diverged, bad.argmax(axis=1), -1),
        pruned_at=pruned_at)


def levelled(floor, start=1.0, steps=T):
    """[steps] a curve from ``start`` levelling off at ``floor`` (0.9^t: flat after ~50 steps,
    so no within-curve rule fires)."""
    t = np.arange(steps)
    return floor + (start - floor) * 0.9 ** t


def labels(out):
    return [d.label for d in out]


# --- eval-aware context ------------------------------------------------------------------------
def test_the_held_out_level_decides_the_context_not_the_training_level():
    lrs = [0.01, 0.1, 1.0]
    loss = np.stack([levelled(f) for f in (0.5, 0.2, 0.05)])  # training: larger LR lower
    blind = diagnose_sweep(make_result(loss, lrs))
    assert labels(blind) == ["too_slow", "too_slow", "grid_edge"]  # the issue: 0.1 "too slow"
    res = make_result(loss, lrs, held=[[0.6, 0.6], [0.25, 0.25], [0.5, 0.5]])
    out = diagnose_sweep(res)
    assert labels(out) == ["too_slow", "healthy", "oscillating"]
    assert out[0].evidence["context_lr"] == pytest.approx(0.1)
    assert "mean held-out loss 0.25 vs 0.6" in out[0].reason
    assert out[2].evidence["context_lr"] == pytest.approx(0.1)
    assert "lower the LR ~10x, to 0.1" in out[2].advice
    assert out[1].evidence["heldout_level"] == pytest.approx(0.25)
    assert res.best(over=None).hparams["lr"] == pytest.approx(0.1)


def test_members_are_compared_by_their_setting_mean_over_seeds():
    """Member (0.1, seed 1) at 0.40 vs member (1.0, seed 0) at 0.20 is clearly lower by the
    documented rule (ratio 2 >= 1.5, gap >= 1% of the range), but the settings' means over
    seeds, 0.35 vs 0.38 (what best(over="seed") ranks), are not: 0.1 stays healthy."""
    lrs, seeds = np.repeat([0.01, 0.1, 1.0], 2), np.tile([0, 1], 3)
    held = [0.9, 0.9, 0.30, 0.40, 0.20, 0.56]
    loss = np.stack([levelled(0.2)] * 6)  # training says nothing
    s = 1.0  # S: the median first training loss
    li, lj = 0.40, 0.20
    assert (li - lj) / (s - lj) >= 0.01 and li / lj >= 1.5  # per member: clearly lower
    out = diagnose_sweep(make_result(loss, lrs, held=held, seeds=seeds))
    assert labels(out)[2:4] == ["healthy", "healthy"]
    assert all(d.evidence["heldout_level"] == pytest.approx(0.35, abs=1e-6) for d in out[2:4])
    assert labels(out)[:2] == ["too_slow", "too_slow"]
    assert all(d.evidence["context_lr"] == pytest.approx(0.1) for d in out[:2])


def test_a_setting_with_a_diverged_seed_is_never_the_better_one():
    lrs, seeds = np.repeat([0.01, 0.1, 1.0], 2), np.tile([0, 1], 3)
    loss = np.stack([levelled(0.2)] * 6)
    loss[5, 40:] = np.nan  # 1.0, seed 1 diverged (training loss decides)
    held = [0.9, 0.9, 0.3, 0.3, 0.05, 0.05]  # ... though its held-out loss is finite
    res = make_result(loss, lrs, held=held, seeds=seeds)
    out = diagnose_sweep(res)
    assert out[5].label == "diverged"
    assert labels(out)[2:4] == ["healthy", "healthy"]  # 1.0 reached 0.05, but lost a seed
    assert "near_lr" not in out[2].evidence
    assert res.best(over="seed").hparams["lr"] == pytest.approx(0.1)


@pytest.mark.parametrize("ratio, expected", [(1.45, "healthy"), (1.55, "oscillating")])
def test_the_clear_gap_rule_on_held_out_levels(ratio, expected):
    """S = 20, the best held-out level 1.0: the gap is 2.4-2.9% of S - 1 (between the 1% and
    5% of the rule), so only the 1.5x ratio decides."""
    lrs = [0.01, 0.1, 1.0]
    loss = np.stack([levelled(1.0, start=20.0)] * 3)
    out = diagnose_sweep(make_result(loss, lrs, held=[5.0, 1.0, ratio * 1.0]))
    assert (ratio - 1.0) / (20.0 - 1.0) > 0.01 and (ratio - 1.0) / (20.0 - 1.0) < 0.05
    assert out[2].label == expected
    if expected == "healthy":  # lower, but not clearly: named in the advice
        assert "0.1 reached mean held-out loss 1 vs 1.5 here: lower, but not clearly" in \
            out[2].advice


# --- overfitting --------------------------------------------------------------------------------
def overfit_curves(fall=0.1, last=0.6, noise=0.0, evals=(0.6, 0.5, 0.55, None), steps=200):
    """Training: 1.0, then ``1 - fall`` over the last 10% (alternating +-noise); held-out at
    steps 50, 100, 150, 200 (``last`` for the final one): minimum 0.5 at step 100."""
    q = steps // 10
    train = np.ones(steps)
    train[-q:] = 1.0 - fall + noise * (-1.0) ** np.arange(q)
    held = [last if v is None else v for v in evals]
    return train, np.asarray(held, np.float64), np.linspace(steps / len(held), steps, len(held))


def overfits_reference(train, held, steps, s):
    """The documented rule, written out: E >= 2; h_min (first lowest) before the last eval;
    h_E - h_min >= max(0.1 |h_min|, 0.01 (S - h_min)); the training loss's mean over the
    max(2, T/10) steps before s_min minus its final (last 10%) mean >= max(0.01 x that mean,
    2 sigma sqrt(1/n1 + 1/n2)), sigma^2 = var(step-to-step differences of the last 10%) / 2."""
    if len(held) < 2:
        return False
    k = min(range(len(held)), key=lambda i: (held[i], i))
    if k == len(held) - 1:
        return False
    h_min, h_end = held[k], held[-1]
    if not float(h_end - h_min) >= max(OVERFIT_RISE * abs(h_min), OVERFIT_GAP * (s - h_min)):
        return False
    n_t = len(train)
    q = max(2, n_t // 10)
    at = int(min(max(steps[k], 1), n_t))
    window = train[max(at - q, 0):at]
    before = sum(window) / len(window)
    final = sum(train[-q:]) / q
    diffs = [train[n_t - q + i + 1] - train[n_t - q + i] for i in range(q - 1)]
    mean_d = sum(diffs) / len(diffs)
    sigma = (sum((d - mean_d) ** 2 for d in diffs) / len(diffs) / 2) ** 0.5
    se = sigma * (1 / len(window) + 1 / q) ** 0.5
    return bool(before - final >= max(OVERFIT_FALL * abs(before), OVERFIT_SE * se))


def one_member(train, held, steps):
    res = make_result(train[None], [0.1], held=held[None], held_steps=steps)
    return diagnose_sweep(res)[0]


@pytest.mark.parametrize("kw, expected, rule", [
    ({}, True, "base case: held-out +20%, training -10%"),
    ({"last": 0.545}, False, "rise 9% of the minimum (< 10%)"),
    ({"last": 0.555}, True, "rise 11% of the minimum"),
    ({"evals": (0.02, 0.01, 0.015, 0.018), "last": 0.018}, False,
     "+80%, but < 1% of the range S - h_min"),
    ({"evals": (0.02, 0.01, 0.015, 0.021), "last": 0.021}, True, "+110% and > 1% of the range"),
    ({"fall": 0.009}, False, "training fell 0.9% (< 1%)"),
    ({"fall": 0.011}, True, "training fell 1.1%"),
    ({"fall": 0.05, "noise": 0.07}, False, "training fell 5%, within 2 standard errors"),
    ({"fall": 0.05, "noise": 0.04}, True, "training fell 5%, beyond 2 standard errors"),
    ({"fall": -0.1}, False, "training rose"),
    ({"evals": (0.6, 0.55, 0.52, 0.5), "last": 0.5}, False, "held-out lowest at the end"),
])
def test_overfitting_rule_at_each_threshold(kw, expected, rule):
    train, held, steps = overfit_curves(**kw)
    assert overfits_reference(train, held, steps, s=train[0]) is expected, rule
    d = one_member(train, held, steps)
    assert (d.label == "overfitting") is expected, (rule, d)
    if expected:
        assert d.evidence["heldout_min_step"] == 100 and "step 100" in d.advice
        assert "stop earlier" in d.advice and "regularise" in d.advice
        assert f"rose from {d.evidence['heldout_min']:.2g}" in d.reason


def test_overfitting_needs_two_evaluations():
    train, held, steps = overfit_curves()
    assert one_member(train, held[-1:], steps[-1:]).label != "overfitting"
    assert one_member(train, held[1::2], steps[1::2]).label == "overfitting"  # 0.5 -> 0.6


def test_overfitting_matches_the_written_out_rule_on_random_cases():
    rng = np.random.default_rng(0)
    agree = hits = 0
    for _ in range(60):
        train, held, steps = overfit_curves(
            fall=rng.uniform(-0.02, 0.08), last=rng.uniform(0.45, 0.8),
            noise=rng.uniform(0, 0.05), evals=tuple(rng.uniform(0.48, 0.7, 3)) + (None,))
        ref = overfits_reference(train, held, steps, s=train[0])
        hits += ref
        agree += ref == (one_member(train, held, steps).label == "overfitting")
    assert agree == 60 and 10 <= hits <= 50  # both verdicts occur


def test_overfitting_advice_follows_the_context():
    lrs = [0.01, 0.1, 1.0]
    train = np.stack([levelled(0.5), levelled(0.2), levelled(0.05)])
    train[2, -10:] = 0.01  # 1.0 keeps falling at the end
    held = [[0.7, 0.6], [0.3, 0.25], [0.3, 0.5]]
    out = diagnose_sweep(make_result(train, lrs, held=held, held_steps=[50, 100]))
    assert labels(out) == ["too_slow", "healthy", "overfitting"]
    assert out[2].advice.startswith("lower the LR ~10x, to 0.1 (it reached mean held-out loss "
                                    "0.25 vs 0.5 here), stop earlier")
    # no smaller LR did better: keep the LR, stop earlier or regularise
    alone = diagnose_sweep(make_result(train[2:], lrs[2:], held=held[2:], held_steps=[50, 100]))
    assert alone[0].label == "overfitting"
    assert alone[0].advice.endswith("or try a smaller LR (none was tried)")


@pytest.mark.parametrize("smaller, end", [
    # 0.48 vs 0.5: lower, but not clearly (gap 0.02 / (S - 0.48) < 5%, ratio 1.04 < 1.5)
    (0.48, "keep the LR: the smaller 0.1 reached mean held-out loss 0.48 vs 0.5 here: lower, "
           "but not clearly"),
    (0.55, "keep the LR: no smaller LR reached a lower held-out loss"),
])
def test_overfitting_keep_advice_names_a_smaller_lr_that_did_better(smaller, end):
    """The "no smaller LR reached a lower held-out loss" claim is made only when it is true;
    a smaller LR that was lower but not clearly is named instead (as a healthy advice does)."""
    train = np.stack([levelled(0.2), levelled(0.05)])
    train[1, -10:] = 0.01  # lr 1 keeps falling at the end
    held = [[smaller, smaller], [0.3, 0.5]]
    out = diagnose_sweep(make_result(train, [0.1, 1.0], held=held, held_steps=[50, 100]))
    assert out[1].label == "overfitting"
    assert f"more data); {end}" in out[1].advice, out[1].advice


# --- grid_edge ----------------------------------------------------------------------------------
@pytest.mark.parametrize("held, edge, lr, text", [
    ([0.6, 0.4, 0.2], 1, 1.0, "extend the grid to ~10: the best LR may lie above 1"),
    ([0.2, 0.4, 0.6], -1, 0.01, "extend the grid down to ~0.001: the best LR may lie below 0.01"),
    ([0.6, 0.2, 0.4], 0, 0.1, None),
])
def test_grid_edge_at_both_ends_and_not_in_the_middle(held, edge, lr, text):
    lrs = [0.01, 0.1, 1.0]
    loss = np.stack([levelled(0.2)] * 3)
    out = diagnose_sweep(make_result(loss, lrs, held=held))
    best = int(np.argmin(held))
    if edge == 0:
        assert "grid_edge" not in labels(out) and all("grid_edge" not in d.evidence for d in out)
        return
    d = out[best]
    assert d.label == "grid_edge" and d.advice == text
    side = "largest" if edge > 0 else "smallest"
    assert d.reason.startswith(f"best at the {side} LR tried, {lr:g}: the lowest mean "
                               f"held-out loss of its group")
    assert d.evidence["grid_edge"] == edge
    assert d.evidence["extend_to"] == pytest.approx(lr * 10.0 ** edge)  # a decade beyond
    assert [x.label for i, x in enumerate(out) if i != best] != ["grid_edge"] * 2


def test_grid_edge_ranks_settings_as_the_recommendation_does():
    """Without eval data by the final training loss (mean of the last 10%); per group of the
    other axes; a setting with a diverged seed is never the best; one LR is no grid."""
    lrs, wd = np.tile([0.01, 0.1, 1.0], 2), np.repeat([0.0, 1.0], 3).astype(np.float32)
    floors = [0.5, 0.3, 0.1, 0.5, 0.1, 0.3]  # wd=0: best at 1.0 (edge), wd=1: at 0.1
    res = make_result(np.stack([levelled(f) for f in floors]), lrs, extra={"wd": wd})
    out = diagnose_sweep(res)
    assert [i for i, d in enumerate(out) if d.label == "grid_edge"] == [2]
    # seeds: 1.0 has the best mean but lost a seed: 0.1 is the best, inside the grid
    lrs, seeds = np.repeat([0.01, 0.1, 1.0], 2), np.tile([0, 1], 3)
    loss = np.stack([levelled(f) for f in (0.5, 0.5, 0.3, 0.3, 0.1, 0.1)])
    loss[5, 60:] = np.nan
    res = make_result(loss, lrs, seeds=seeds)
    assert "grid_edge" not in labels(diagnose_sweep(res))
    assert res.best(over="seed").hparams["lr"] == pytest.approx(0.1)
    # one LR per group: no edge to speak of
    res = make_result(np.stack([levelled(0.1)] * 2), [0.1, 0.1], extra={"wd": [0.0, 1.0]})
    assert "grid_edge" not in labels(diagnose_sweep(res))


def test_grid_edge_keeps_an_overfitting_label_and_adds_its_advice():
    lrs = [0.01, 0.1, 1.0]
    train = np.stack([levelled(0.5), levelled(0.3), levelled(0.05)])
    train[2, -10:] = 0.01
    out = diagnose_sweep(make_result(train, lrs, held=[[0.7, 0.6], [0.5, 0.4], [0.2, 0.3]],
                                     held_steps=[50, 100]))
    assert out[2].label == "overfitting" and out[2].evidence["grid_edge"] == 1
    assert out[2].advice.endswith("; extend the grid to ~10: the best LR may lie above 1")


# --- the real case: softmax regression on digits ------------------------------------------------
def digits_sgd(lrs, seeds, steps=400, batch=128, every=50):
    """Softmax regression on sklearn's digits (scaled to [0, 1], 1,438 train / 359 held out,
    the split of ``jaxlr sweep --dataset digits``), minibatch SGD from zero weights, float64:
    each member's batches drawn by ``np.random.default_rng(seed)``. Returns the training loss
    [M, steps] (each batch's, before its update), the held-out loss [M, E] after every
    ``every`` updates, and those steps."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.data / 16.0, d.target
    perm = np.random.default_rng(0).permutation(len(x))
    n = len(x) // 5
    xt, yt, xe, ye = x[perm[n:]], y[perm[n:]], x[perm[:n]], y[perm[:n]]
    xt = np.concatenate([xt, np.ones((len(xt), 1))], axis=1)  # the bias as a feature
    xe = np.concatenate([xe, np.ones((len(xe), 1))], axis=1)
    lrs = np.asarray(lrs, np.float64)
    w = np.zeros((len(lrs), xt.shape[1], 10))
    idx = np.stack([np.random.default_rng(int(s)).integers(0, len(xt), (steps, batch))
                    for s in seeds], axis=1)
    eye = np.eye(10)

    def xent(z, labels):
        z = z - z.max(axis=-1, keepdims=True)
        p = np.exp(z)
        total = p.sum(axis=-1, keepdims=True)
        nll = np.log(total[..., 0]) - np.take_along_axis(z, labels[..., None], -1)[..., 0]
        return nll, p / total

    loss, held = np.empty((len(lrs), steps)), []
    for t in range(steps):
        xb, yb = xt[idx[t]], yt[idx[t]]
        nll, p = xent(xb @ w, yb)
        loss[:, t] = nll.mean(axis=1)
        w -= lrs[:, None, None] * (xb.transpose(0, 2, 1) @ ((p - eye[yb]) / batch))
        if (t + 1) % every == 0:
            held.append(xent(xe @ w, np.broadcast_to(ye, (len(lrs), len(ye))))[0].mean(axis=1))
    return loss, np.stack(held, axis=1), np.arange(every, steps + 1, every)


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    grid = np.geomspace(0.3, 30, 11)
    lrs, seeds = np.repeat(grid, 2), np.tile([0, 1], len(grid))
    loss, held, steps = digits_sgd(lrs, seeds)
    return make_result(loss, lrs, held=held, held_steps=steps, seeds=seeds), grid, loss, held


def test_digits_lrs_in_the_held_out_best_band_are_not_called_too_slow(digits):
    res, grid, loss, held = digits
    lrs = np.repeat(grid, 2)
    mean_held = held[:, -1].reshape(len(grid), 2).mean(axis=1)
    best = mean_held.min()
    band = grid[mean_held <= 1.1 * best]  # the held-out best band: within 10% of the best
    assert len(band) >= 3 and band.min() < grid[np.argmin(mean_held)] < band.max()
    train = loss[:, -T // 4:].mean(axis=1).reshape(len(grid), 2).mean(axis=1)
    beyond = grid > band.max()
    # the situation: larger LRs reach a lower training loss and a worse held-out one
    assert train[beyond].min() < train[np.isin(grid, band)].min()
    assert mean_held[beyond].min() > 1.1 * best
    blind = diagnose(loss, lrs)  # compared by training loss: the band is told to go faster
    in_band = np.isin(np.float32(lrs), np.float32(band))
    assert any(d.label == "too_slow" for d, b in zip(blind, in_band) if b)
    out = res.diagnose()
    assert not any(d.label == "too_slow" for d, b in zip(out, in_band) if b)
    # whatever points elsewhere points toward a lower mean held-out loss
    for d in out:
        if "context_lr" in d.evidence:
            assert d.evidence["context_level"] < d.evidence["heldout_level"]
    # the LRs well above the band are told to lower the LR, to the band
    for d, lr in zip(out, lrs):
        if np.float32(lr) >= np.float32(grid[-2]):
            assert d.label in ("oscillating", "overfitting") and "lower the LR" in d.advice
            assert np.float32(d.evidence["context_lr"]) in np.float32(band)


def test_recommendation_and_diagnosis_never_point_apart(digits):
    """The CLI printed "recommended: lr=0.046" then "too_slow: ... raise the LR ~22x" toward
    an LR with a worse eval loss. Compared by training loss that is what the recommended
    member is told here too; the summary's diagnosis agrees with the recommendation."""
    res, grid, loss, held = digits
    s = _records.summarize(res)
    rec = s["recommended"]
    lr = rec["hparams"]["lr"]
    mean_held = held[:, -1].reshape(len(grid), 2).mean(axis=1)
    assert lr == pytest.approx(grid[np.argmin(mean_held)], rel=1e-6)
    blind = diagnose(loss, np.repeat(grid, 2))[rec["member"]]
    assert blind.label == "too_slow" and "raise the LR" in blind.advice
    assert rec["diagnosis"]["label"] == "healthy"
    text = _records.format_recommendation(s)
    line = next(x for x in text.splitlines() if x.strip().startswith("diagnosis:"))
    assert "raise the LR" not in line and "lower the LR" not in line
    assert text.startswith(f"recommended: lr={lr:.4g}")
    checked = 0
    for row in s["rows"]:  # no setting is told to move toward a worse mean held-out loss
        mine = row["metrics"]["eval loss"]["mean"]
        for i in row["members"]:
            m = re.search(r"the grid point (\S+) reached|(?:lower|raise) the LR ~\S+x, to "
                          r"([^ ,]+)", s["diagnosis"][i]["advice"])
            if m is None:
                continue
            target = float(m.group(1) or m.group(2))  # printed to 2 significant digits
            to = next(r for r in s["rows"] if r["hparams"]["lr"] == pytest.approx(target,
                                                                                  rel=0.06))
            assert to["metrics"]["eval loss"]["mean"] < mine, (row["hparams"], target)
            checked += 1
    assert checked >= 10
    json.dumps(_records.plain(s), allow_nan=False)  # JSON-safe


# --- the recommendation's text ------------------------------------------------------------------
def test_one_recommendation_everywhere_the_seed_mean():
    """Setting 0.1 has the best mean (0.30, 0.32) but 1.0 the single best seed (0.25, 0.45):
    best()'s default, the summary, the table's star and the recommendation line all name 0.1;
    best(over="member") is the single best seed, and the text says so."""
    lrs, seeds = np.repeat([0.01, 0.1, 1.0], 2), np.tile([0, 1], 3)
    held = [0.9, 0.9, 0.30, 0.32, 0.25, 0.45]
    res = make_result(np.stack([levelled(0.2)] * 6), lrs, held=held, seeds=seeds)
    s = _records.summarize(res)
    assert s["recommended"]["hparams"] == {"lr": 0.1} and s["recommended"]["member"] == 2
    best = res.best()
    assert best.hparams == {"lr": 0.1} and best.value == pytest.approx(0.31)
    assert best.std == pytest.approx(0.01)  # ddof 0 over the two seeds
    assert res.best(over="seed") == best
    one = res.best(over="member")
    assert (one.index, one.hparams, one.value) == (4, {"lr": 1.0, "seed": 0},
                                                   pytest.approx(0.25))
    assert s["recommended"]["best_member"] == {"member": 4, "hparams": {"lr": 1.0},
                                               "seed": 0, "value": pytest.approx(0.25)}
    starred = [ln for ln in res.table().splitlines() if ln.startswith("*")]
    assert len(starred) == 1 and starred[0].split()[1] == "0.1"
    text = _records.format_recommendation(s)
    assert "lowest mean eval loss over seeds: result.best()" in text.splitlines()[0]
    assert "best LR over seeds: " in text and "(90% bootstrap interval; " in text
    assert ('result.best(over="member") ranks single members instead: lr=1, seed 0 (eval '
            'loss 0.25), the best single seed, not the best setting') in text
    with pytest.raises(ValueError, match="over must be None, 'seed' or 'member'"):
        res.best(over="seeds")


def test_a_sweeps_diagnosis_carries_and_prints_its_members_hyperparameters():
    lrs, seeds = np.repeat([0.01, 0.1, 1.0], 2), np.tile([0, 7], 3)
    res = make_result(np.stack([levelled(0.2)] * 6), lrs, seeds=seeds)
    found = res.diagnose()
    for i, d in enumerate(found):
        assert d.hparams == {"lr": float(lrs[i]),
                             "seed": int(seeds[i])}
        assert str(d).startswith(f"lr={lrs[i]:g}, seed={seeds[i]}: {d.label}: {d.reason} -> ")
    assert diagnose(levelled(0.2), 0.1).hparams is None  # a curve alone has none
    assert str(diagnose(levelled(0.2), 0.1)).startswith("healthy: ")


def test_recommendation_names_the_grid_edge_and_the_sensitivity():
    lrs = [0.01, 0.1, 1.0]
    res = make_result(np.stack([levelled(0.2)] * 3), lrs, held=[0.6, 0.4, 0.2])
    s = _records.summarize(res)
    assert s["recommended"]["grid_edge"] == {"edge": "largest", "lr": 1.0, "extend_to": 10.0}
    lines = _records.format_recommendation(s).splitlines()
    assert lines[1] == "  grid edge: best at the largest LR tried, 1: extend the grid to ~10"
    assert lines[2].startswith("  LR sensitivity ")
    assert "basin 1 (one grid point, mean eval loss within 10% of the best)" in lines[2]
    assert "no LR diverged" in lines[2]
    assert lines[3].startswith("  diagnosis: grid_edge: best at the largest LR tried, 1")
    assert s["sensitivity"] == [s["recommended"]["sensitivity"]]
    # inside the grid: no edge line
    inside = _records.summarize(make_result(np.stack([levelled(0.2)] * 3), lrs,
                                            held=[0.6, 0.2, 0.4]))
    assert inside["recommended"]["grid_edge"] is None
    assert "grid edge" not in _records.format_recommendation(inside)


# --- LR sensitivity -----------------------------------------------------------------------------
def sensitivity_reference(table, loss0):
    """Wortsman et al. 2023 §2.2 written out: E_eta[min(l(eta), l0)] - min_eta of the same, the
    expectation over the grid's LRs, l(eta) the mean over seeds of the capped values (NaN,
    i.e. diverged, counts l0)."""
    capped = []
    for row in table:
        vals = [loss0 if not np.isfinite(v) else min(v, loss0) for v in row]
        capped.append(sum(vals) / len(vals))
    return sum(capped) / len(capped) - min(capped)


def sweep_of_finals(finals, lrs, first=2.0, seeds=None):
    """A result whose members' final training loss (the last 10%) is ``finals`` (NaN:
    diverged at step 5) and whose first loss is ``first``."""
    rows = []
    for v in finals:
        row = np.full(40, first if np.isfinite(v) else np.nan)
        row[:5] = first
        if np.isfinite(v):
            row[5:] = v
        rows.append(row)
    return make_result(np.stack(rows), lrs, seeds=seeds)


def test_sensitivity_statistic_against_the_paper_formula_by_hand():
    lrs = np.repeat([1e-3, 1e-2, 1e-1, 1.0], 2)
    table = [[1.5, 1.7], [0.4, 0.6], [0.3, 2.5], [0.2, np.nan]]  # 2.5 > l0 is capped at l0
    res = sweep_of_finals(np.ravel(table), lrs, first=2.0, seeds=np.tile([0, 1], 4))
    s, = res.sensitivity(by="loss")
    # by hand: capped means 1.6, 0.5, 1.15, 1.1 -> mean 1.0875, minimum 0.5
    assert s.sensitivity == pytest.approx(1.0875 - 0.5, abs=1e-6)
    assert s.sensitivity == pytest.approx(sensitivity_reference(table, 2.0), abs=1e-6)
    np.testing.assert_allclose(s.loss, [1.6, 0.5, 1.15, 1.1], atol=1e-6)
    assert s.loss0 == 2.0 and s.by == "loss"
    assert s.best_lr == 0.01 and s.best_loss == pytest.approx(0.5)  # 1.0 lost a seed: out
    np.testing.assert_array_equal(s.mean[3], np.inf)
    assert s.boundary == 1.0 and list(s.diverged) == [0, 0, 0, 1]
    assert s.edge == 0


def basin_reference(lrs, finals, within):
    """The contiguous run of LRs around the lowest value whose value is <= best + within
    |best|, written out."""
    b = int(np.argmin(finals))
    top = finals[b] + within * abs(finals[b])
    lo = hi = b
    while lo > 0 and finals[lo - 1] <= top:
        lo -= 1
    while hi < len(finals) - 1 and finals[hi + 1] <= top:
        hi += 1
    return lrs[lo], lrs[hi]


@pytest.mark.parametrize("finals, within, basin", [
    ([0.9, 0.549, 0.5, 0.551, 0.54], 0.1, (0.01, 0.1)),  # 0.551 > 0.55 ends the run at 1.0
    ([0.9, 0.551, 0.5, 0.549, 0.9], 0.1, (0.1, 1.0)),
    ([0.9, 0.56, 0.5, 0.58, 0.54], 0.2, (0.01, 10.0)),  # within 20%: all but the first
    ([0.9, 0.56, 0.5, 0.58, 0.54], 0.1, (0.1, 0.1)),  # 0.54 is within, but not contiguous
])
def test_basin_is_the_contiguous_run_within_the_tolerance(finals, within, basin):
    lrs = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    s, = sweep_of_finals(finals, lrs).sensitivity(by="loss", within=within)
    assert basin == basin_reference(lrs, finals, within)
    assert s.basin == pytest.approx(basin)
    assert s.basin_decades == pytest.approx(np.log10(basin[1] / basin[0]))
    assert s.within == within


def test_edge_boundary_and_pruned_members():
    lrs = [1e-3, 1e-2, 1e-1, 1.0]
    s, = sweep_of_finals([0.9, 0.5, 0.3, 0.2], lrs).sensitivity(by="loss")
    assert (s.edge, s.best_lr, s.boundary) == (1, 1.0, None or s.boundary)
    assert np.isnan(s.boundary) and np.isnan(s.interval[0])  # one seed: no interval
    s, = sweep_of_finals([0.2, 0.5, np.nan, np.nan], lrs).sensitivity(by="loss")
    assert (s.edge, s.best_lr, s.boundary) == (-1, 0.001, 0.1)
    # successive halving stopped 1e-3 (and 1e-1) early: their final loss is unknown
    res = sweep_of_finals([0.9, 0.5, 0.3, 0.2], lrs)
    res.pruned_at = np.array([10, -1, 10, -1])
    s, = res.sensitivity(by="loss")
    np.testing.assert_array_equal(s.lrs, lrs)
    assert list(s.pruned) == [1, 0, 1, 0] and np.isnan(s.mean[[0, 2]]).all()
    assert np.isnan(s.sensitivity) and s.best_lr == 1.0 and s.basin == (1.0, 1.0)
    summary = _records.summarize(res)
    text = _records.format_recommendation(summary)
    assert "LR sensitivity n/a (successive halving stopped 2 of 4 LRs early: no final loss)" in text
    assert "basin 1 (one grid point, mean final training loss within 10% of the best; next to " \
        "pruned LRs, so maybe wider)" in text


def test_bootstrap_is_seeded_paired_and_exact_without_noise():
    lrs = np.array([0.01, 0.1, 1.0])
    inv, seed = np.repeat(np.arange(3), 4), np.tile(np.arange(4), 3)
    flat = np.repeat([0.5, 0.2, 0.4], 4)
    assert bootstrap_interval(lrs, inv, seed, flat, 0.9, 200, np.random.default_rng(0)) == \
        ((0.1, 0.1), 1.0)
    # a shared per-seed offset (a seed's batches, the same for every LR) cancels when paired
    offset = np.tile([0.0, 1.0, -1.0, 0.5], 3)
    assert bootstrap_interval(lrs, inv, seed, flat + offset, 0.9, 200,
                              np.random.default_rng(0)) == ((0.1, 0.1), 1.0)
    noisy = flat + np.random.default_rng(1).normal(0, 0.3, 12)
    a = bootstrap_interval(lrs, inv, seed, noisy, 0.9, 200, np.random.default_rng(5))
    b = bootstrap_interval(lrs, inv, seed, noisy, 0.9, 200, np.random.default_rng(5))
    assert a == b and a[0][0] <= a[0][1]


def test_bootstrap_interval_covers_the_true_best_lr_on_a_synthetic_sweep():
    """Known truth: mean loss 0.5 (log10 lr + 1.6)^2 + 0.1 on 10 log-spaced LRs (best grid
    point 10^-1.67), 5 seeds with independent N(0, 0.1^2) noise: the sample argmin misses it
    in ~1/3 of the sweeps; the 90% interval covers it in >= 85% of them."""
    lrs = np.geomspace(1e-3, 1.0, 10)
    mu = 0.5 * (np.log10(lrs) + 1.6) ** 2 + 0.1
    truth = lrs[np.argmin(mu)]
    rng = np.random.default_rng(0)
    inv, seed = np.repeat(np.arange(10), 5), np.tile(np.arange(5), 10)
    covered = missed = 0
    widths = []
    for r in range(200):
        score = (mu[:, None] + 0.1 * rng.standard_normal((10, 5))).ravel()
        missed += lrs[np.argmin(score.reshape(10, 5).mean(axis=1))] != truth
        (lo, hi), _ = bootstrap_interval(lrs, inv, seed, score, 0.9, 500,
                                         np.random.default_rng(r))
        covered += lo <= truth <= hi
        widths.append(np.log10(hi / lo))
    print(f"\ncoverage {covered / 200:.2f}, point estimate wrong {missed / 200:.2f}, "
          f"mean width {np.mean(widths):.2f} decades")
    assert covered / 200 >= 0.85 and missed / 200 >= 0.2 and np.mean(widths) < 1.0


def test_sensitivity_per_setting_with_eval_and_errors():
    lrs = np.tile([0.01, 0.1, 1.0], 2)
    wd = np.repeat([0.0, 0.5], 3).astype(np.float32)
    res = make_result(np.stack([levelled(0.2)] * 6), lrs, extra={"wd": wd},
                      held=[0.6, 0.2, 0.4, 0.6, 0.5, 0.3])
    found = lr_sensitivity(res)
    assert [f.setting for f in found] == [{"wd": 0.0}, {"wd": 0.5}]
    assert [f.by for f in found] == ["eval", "eval"]
    assert [f.best_lr for f in found] == [0.1, 1.0] and [f.edge for f in found] == [0, 1]
    assert found[0].sensitivity == pytest.approx(sensitivity_reference(
        [[0.6], [0.2], [0.4]], 1.0), abs=1e-6)
    with pytest.raises(ValueError, match=r"needs a grid with an LR axis .* got the axes"):
        lr_sensitivity(make_result(np.stack([levelled(0.2)] * 2), [0.1, 0.2]).__class__(
            grid=jaxlr.Grid({"wd": np.array([0.0, 1.0])}), loss=np.ones((2, 30)),
            lr=np.ones((2, 30)), eval=None, eval_aux={}, eval_steps=None,
            diverged=np.zeros(2, bool), diverged_at=np.full(2, -1)))
    for kw, match in [({"by": "accuracy"}, "by must be 'eval' or 'loss'"),
                      ({"within": 0.0}, "within must be a positive number"),
                      ({"level": 1.0}, r"level must be in \(0, 1\)"),
                      ({"n_boot": 0}, "n_boot must be a positive integer")]:
        with pytest.raises(ValueError, match=match):
            res.sensitivity(**kw)


# --- the figure ---------------------------------------------------------------------------------
def test_sensitivity_figure_artists(tmp_path):
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    from jaxlr._plot.plot import plot_sensitivity

    lrs, seeds = np.repeat([1e-3, 1e-2, 1e-1, 1.0], 2), np.tile([0, 1], 4)
    res = sweep_of_finals([1.5, 1.7, 0.5, 0.6, 0.52, 0.58, np.nan, 0.2], lrs, seeds=seeds)
    s, = res.sensitivity(by="loss")
    path = tmp_path / "sensitivity.png"
    fig = plot_sensitivity(res, by="loss", path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    gid = lambda g: [a for a in ax.lines if a.get_gid() == g]
    line, = gid("loss")
    np.testing.assert_allclose(line.get_xdata(), s.lrs)
    np.testing.assert_allclose(line.get_ydata(), s.loss)
    assert gid("loss0")[0].get_ydata()[0] == pytest.approx(s.loss0)
    star, = gid("best")
    assert (star.get_xdata()[0], star.get_ydata()[0]) == pytest.approx((s.best_lr, s.best_loss))
    interval, = gid("interval")
    np.testing.assert_allclose(interval.get_xdata(), s.interval)
    boundary, = gid("boundary")
    assert boundary.get_xdata()[0] == pytest.approx(s.boundary) == 1.0
    basin, = [p for p in ax.patches if p.get_gid() == "basin"]
    xs = ([basin.get_x(), basin.get_x() + basin.get_width()] if hasattr(basin, "get_width")
          else np.asarray(basin.get_xy())[:, 0])  # a Rectangle (matplotlib >= 3.9) or Polygon
    assert min(xs) == pytest.approx(s.basin[0]) and max(xs) == pytest.approx(s.basin[1])
    assert "sensitivity" in line.get_label() and "LR sensitivity" in ax.get_title()
