"""Each documented rule and threshold pinned by a hand-made case that flips when it alone moves.

- The diagnosis' oscillation rule (``jaxlr.diagnose``'s docstring, rule 3, "Alone"): the tail
  (second half) is spiky (std >= 1.0x its mean), its spikes persist (lag-1 autocorrelation of
  the linearly detrended log loss >= 0.3), it rises on >= 20% of its steps, and it makes no
  progress (its lows, the 10% quantile, fell < 10x from its first to its last quarter, or the
  mid-run loss was above the start). For each conjunct a pair of curves sits just above / just
  below its threshold (by 1%; the rises: 20 vs 19 of 99 steps) with every other conjunct
  holding by a margin: the label flips between ``oscillating`` and what rules 4/5 give, so
  dropping the conjunct or moving its threshold by 2% fails a test. The rule's quantities are
  recomputed here from the docstring's words (numpy, written out below), never read from the
  module.
- ``SweepResult.final_loss``: the mean over the last 10% of the steps (``max(1, T // 10)``).
- ``Best.std`` with ``over="seed"``: the standard deviation over the seeds, ddof = 0 (numpy's
  default, as ``FinderResult.spread`` and ``SweepResult.table``).
- ``find_lr``'s stop: the divergence scale has a floor of 1% of ``|l_0|``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlr
from jaxlr._diagnose.diagnose import diagnose
from jaxlr._finder.finder import FinderResult, stop_rule

T = 200  # steps of the hand-made curves; the tail is the last 100
PERIOD = 10  # the tail's spikes: one 2-step ramp at the end of every 10 steps


def spiky(height=10.0, first=0.5, fall=0.5, rises=20, head="falls"):
    """A curve of T steps. Tail: a baseline falling geometrically by ``fall`` over the 100
    steps with, in each period of 10, a spike of 2 rising steps, baseline x (1 + first *
    height) then x (1 + height) (``rises`` < 20: that many periods keep only the second step,
    one rise less each). ``height`` sets the spikiness (std / mean), ``first`` the persistence
    (a 2-step block vs a single step: the autocorrelation), ``fall`` the lows' trend.
    Head: ``"falls"`` from 100 to ~1 (exp(-t/8)); ``"climbs"`` / ``"sags"`` linearly from 1 to
    1.03 / 0.97 (the mid-run loss just above / below the start), the tail scaled to match."""
    n = T // 2
    s = np.arange(n)
    base = fall ** (s / (n - 1))
    tail = base.copy()
    for k in range(n // PERIOD):
        j = k * PERIOD + PERIOD - 2
        if k >= 20 - rises:
            tail[j] = base[j] * (1 + first * height)
        tail[j + 1] = base[j + 1] * (1 + height)
    if head == "falls":
        return np.concatenate([1 + 99 * np.exp(-s / 8), tail])
    end = {"climbs": 1.03, "sags": 0.97}[head]
    return np.concatenate([1 + (end - 1) * s / (n - 1), end * tail])


def documented(x):
    """The rule's quantities, from the docstring: tail = second half; spiky = std / mean;
    persistence = lag-1 autocorrelation of the residual of a least-squares line through the
    log tail; rises = share of the tail's steps that went up; trend = 10% quantile of the tail's
    last quarter / that of its first quarter; share = (mid - final) / (start - final) on
    medians of the first max(2, T/50), the middle and the last max(2, T/10) steps (> 1: the
    mid-run loss was above the start; >= 0.1: "still falling", rule 4); stuck (rule 4):
    start - final < 1% of start or < 2 standard errors (sigma from the last 10%'s step
    differences / sqrt 2) on the means of those first / last windows."""
    n = len(x)
    tail = x[n // 2:]
    log = np.log(tail)
    i = np.arange(len(log))
    slope, intercept = np.polyfit(i, log, 1)
    r = log - (slope * i + intercept)
    q = len(tail) // 4
    k, w = max(2, n // 50), max(2, n // 10)
    m0, m1 = np.median(x[:k]), np.median(x[-w:])
    mid = np.median(x[n // 2 - w // 2: n // 2 - w // 2 + w])
    start, final = x[:k].mean(), x[-w:].mean()
    se = np.diff(x[-w:]).std() / np.sqrt(2) * np.sqrt(1 / k + 1 / w)
    return dict(cv=tail.std() / tail.mean(), ac=(r[1:] * r[:-1]).sum() / (r * r).sum(),
                rose=(np.diff(tail) > 0).mean(),
                trend=np.quantile(tail[-q:], 0.1) / np.quantile(tail[:q], 0.1),
                share=(mid - m1) / (m0 - m1),
                stuck=(start - final) <= max(0.01 * abs(start), 2 * se))


# the thresholds of the docstring, written here (not imported)
SPIKY, PERSISTENT, BOUNCES, FLAT = 1.0, 0.3, 0.2, 0.1

# name: (curve, the conjunct under test and its value's side of the threshold)
CASES = {
    "spiky_above": (dict(height=5.818), "cv", 1.01),
    "spiky_below": (dict(height=5.604), "cv", 0.99),
    "persistent_above": (dict(first=0.2714), "ac", 0.303),
    "persistent_below": (dict(first=0.2595), "ac", 0.297),
    "bounces_above": (dict(rises=20), "rose", 20 / 99),
    "bounces_below": (dict(rises=19), "rose", 19 / 99),
    "flat_tail_above": (dict(fall=0.04464), "trend", 0.101),
    "flat_tail_below": (dict(fall=0.04344), "trend", 0.099),
}
HOLDS = {"cv": lambda v: v >= SPIKY, "ac": lambda v: v >= PERSISTENT,
         "rose": lambda v: v >= BOUNCES, "trend": lambda v: v >= FLAT}
MARGIN = {"cv": 1.05 * SPIKY, "ac": 1.05 * PERSISTENT, "rose": BOUNCES, "trend": 1.05 * FLAT}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_conjunct_of_the_oscillation_rule_flips_the_label(case):
    kwargs, name, value = CASES[case]
    x = spiky(**kwargs)
    f = documented(x)
    assert f[name] == pytest.approx(value, rel=1e-3)  # the curve is where it should be
    for other in HOLDS:  # every other conjunct holds by a margin
        if other != name:
            assert f[other] >= MARGIN[other], (other, f[other])
    assert f["share"] < 0.05 and not f["stuck"]  # rule 4 alone would not call it too slow
    expected = "oscillating" if HOLDS[name](f[name]) else "healthy"
    assert diagnose(x).label == expected


@pytest.mark.parametrize("head, expected", [("climbs", "oscillating"), ("sags", "too_slow")])
def test_mid_run_above_the_start_is_no_progress_although_the_lows_fell(head, expected):
    """The other half of the no-progress conjunct: the lows fell 10x+ (trend < 0.1), but the
    loss in the middle of the run was above the start (share > 1): oscillating. Just below the
    start (share < 1) the rule fails, and rule 4 ("still falling": share >= 0.1) applies."""
    x = spiky(fall=0.02, head=head)
    f = documented(x)
    assert f["trend"] < 0.07 and f["cv"] >= MARGIN["cv"] and f["ac"] >= MARGIN["ac"]
    assert f["rose"] >= BOUNCES
    assert f["share"] == pytest.approx(1.03 if head == "climbs" else 0.97, abs=0.006)
    assert diagnose(x).label == expected


# --- SweepResult.final_loss, Best.std -----------------------------------------------------
def fake_result(loss, **columns):
    """A SweepResult over hand-written curves (no training)."""
    loss = np.asarray(loss, np.float32)
    m = loss.shape[0]
    return jaxlr.SweepResult(
        grid=jaxlr.Grid({k: np.asarray(v) for k, v in columns.items()}), loss=loss,
        lr=np.full(loss.shape, np.nan, np.float32), eval=None, eval_aux={},
        eval_steps=np.zeros(0, np.int32), diverged=np.zeros(m, bool),
        diverged_at=np.full(m, -1), state=((), ()), assemble=lambda p, r: p)


@pytest.mark.parametrize("steps", [9, 50, 101])
def test_final_loss_is_the_mean_of_the_last_tenth(steps):
    """Each step's loss is its index (0 .. T-1), so a window of w steps has mean
    T - (w + 1) / 2: a window one step longer or shorter than max(1, T // 10) gives another
    number."""
    res = fake_result(np.arange(steps, dtype=np.float64)[None], lr=[0.1])
    w = max(1, steps // 10)  # 1, 5, 10
    assert res.final_loss().tolist() == [steps - (w + 1) / 2]
    res.diverged[0] = True
    assert res.final_loss().tolist() == [np.inf]


def test_best_std_over_seeds_is_the_population_std():
    """Final losses 1 and 3 (lr 0.1, two seeds) and 2 and 2 (lr 1.0): lr 0.1 and lr 1.0 tie on
    the mean 2, the first wins (argmin); std over the seeds: sqrt(((1-2)^2 + (3-2)^2) / 2) = 1
    with ddof 0 (with ddof 1 it would be sqrt(2))."""
    loss = np.repeat([[1.0], [3.0], [2.0], [2.0]], 20, axis=1)
    res = fake_result(loss, lr=np.array([0.1, 0.1, 1.0, 1.0], np.float32),
                      seed=np.array([0, 1, 0, 1], np.int32))
    best = res.best(by="loss", over="seed")
    assert best.hparams == {"lr": pytest.approx(0.1)} and best.index == 0
    assert best.value == 2.0 and best.std == 1.0


# --- find_lr's stop: the 1% floor of the divergence scale -----------------------------------
def _in_program_stop(curve, factor, beta, warmup):
    """The rule the sweep's program runs (jaxlr._finder.stop_rule), scanned over a curve."""
    rule = stop_rule(factor, beta, warmup)

    def body(state, inp):
        return rule.update(state, *inp)

    fired = jax.lax.scan(body, rule.init(), (jnp.arange(len(curve), dtype=jnp.int32),
                                             jnp.asarray(curve, jnp.float32)))[1]
    hits = np.flatnonzero(np.asarray(fired))
    return int(hits[0]) if hits.size else -1


@pytest.mark.parametrize("level", [1.0, -1.0])
@pytest.mark.parametrize("step_up, fires", [(0.05, True), (0.03, False)])
def test_stop_floor_is_one_percent_of_the_start_level(level, step_up, fires):
    """A flat curve (no fall, no noise: the scale's other terms are 0) that steps up by
    ``step_up`` at step 50. find_lr's documented threshold: lowest + f * max(l_0 - lowest,
    rho, 0.01 |l_0|) = l_0 + 4 * 0.01 = l_0 + 0.04 with the default f = 4. With beta = 0 (no
    smoothing) the stop fires at the second step above it (two consecutive batches): 51; a
    step of 0.03 never fires. Negative losses: the floor is on |l_0|."""
    x = np.full(100, level)
    x[50:] += step_up
    # the reference, written out: warm-up max(2, T // 10) = 10 steps, median l_0 = level,
    # MAD noise 0, lowest smoothed loss since the warm-up = level, so theta = level + 4 * 0.01
    theta = level + 4.0 * 0.01 * abs(level)
    above = x > theta
    expected = next((t for t in range(11, 100) if above[t] and above[t - 1]), -1)
    assert expected == (51 if fires else -1)
    res = FinderResult.from_curves(1e-7 * 1e8 ** (np.arange(100) / 99), x, beta=0.0)
    assert res.diverged_at.tolist() == [expected]
    assert _in_program_stop(x, 4.0, 0.0, 10) == expected
