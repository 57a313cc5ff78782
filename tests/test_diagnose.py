"""Diagnosis of LR problems on curves whose truth is known by construction.

Generators (numpy, float64 maths, recorded as float32 like jaxlr.sweep's ``loss``):

- GD / heavy ball on a quadratic ``f(x) = 1/2 sum_i lam_i x_i^2`` with top curvature L
  (``lam = L * [1, geomspace(1/kappa, 1, d-1)]``): ``v' = beta v - eta_t lam x``, ``x' = x + v'``.
  For plain GD (beta = 0) the loss is closed form: ``f_t = 1/2 sum_i lam_i x0_i^2
  prod_{s<t} (1 - eta_s lam_i)^2``; it falls monotonically for eta < 2/L and blows up for
  eta > 2/L (the top direction grows by |1 - eta L| > 1 a step). Heavy ball with beta = 0.9 is
  stable for eta < 2 (1 + beta) / L = 3.8/L and rings (complex roots, modulus sqrt(beta)) in every
  direction with eta lam > (1 - sqrt(beta))^2: the loss rises on ~45% of steps while it
  converges like 0.9^t, to ~1e-14 in 300 steps.
- Minibatch SGD (batch 8) on noisy least squares: ``y = X w* + 0.31 eps``, feature variances
  spread 30x, ``loss_t = 1/(2B) |X_b w_t - y_b|^2`` on the step's batch (the batch noise makes
  it rise on ~50% of steps even at the noise floor ~ sigma^2 / 2 = 0.048), L the top eigenvalue
  of ``X^T X / n``. Above ~1.5/L the iterate is mean-square unstable but its log-growth is
  negative: a Kesten process with heavy-tailed, persistent spikes (Gurbuzbalaban et al. 2021,
  arXiv:2006.04740) - oscillating; far above, it blows up - diverged.
- jaxlr.sweep's quarantine: from the first step where the loss is non-finite or exceeds
  ``loss_0 + 100 |loss_0|`` the recorded loss is NaN (that step is recorded). Members of one
  sweep share the initial point and the batches (same seed).

Truth. Each generator labels the LRs of its clear ranges (e.g. GD: <= 0.01/L too slow,
0.4-1.6/L healthy, > 2/L diverged) and the cut members. The LRs between the ranges (the grey
zones: GD 0.03-0.3/L and 1.7-1.95/L, heavy ball 2-3.5/L, SGD 0.02-0.08/L and 0.8-1.3/L) are
scored too, against a rule stated on the generator's exact dynamics (``grey_truth``), never on
the diagnosis' features: ``diverged`` if the quarantine caught the run; else ``oscillating``
if its stationary expected loss is >= 1.5x the optimum (GREY_HIGH; infinite when the iteration
is mean-square unstable; a stable GD / heavy-ball run settles at the optimum); else
``too_slow`` if >= 1% of its excess loss is left at the last step (GREY_LEFT; GD and heavy
ball: the noise-free curve itself, SGD: its mean iterate); else ``healthy``. Applied to the
clear ranges' members the rule gives their labels
(``test_stated_rule_gives_the_clear_ranges_their_labels``).

Seeds. diagnose's thresholds were tuned on the generated sweeps of seed 0 (TUNING_SEED) and on
the fixed cases below; the precision/recall figures in its docstring are measured on seeds
101 and 102 (HELD_OUT_SEEDS), never used while tuning.
"""

import re

import numpy as np
import pytest

import jaxlr
from jaxlr._diagnose.diagnose import LABELS, Diagnosis, diagnose, diagnose_sweep

GD_STEPS, SGD_STEPS = 300, 500
GREY_LEFT = 0.01  # the stated rule: a run with >= 1% of its excess loss left is too slow,
GREY_HIGH = 1.5  # ... one whose stationary loss is >= 1.5x the optimum oscillates (LR too high)
# the figures in diagnose's docstring: tuned on TUNING_SEED, measured on HELD_OUT_SEEDS
TUNING_SEED, HELD_OUT_SEEDS = 0, (101, 102)


# --- generators ------------------------------------------------------------------------------
def quarantine(loss):
    """jaxlr.sweep's record: NaN after the first non-finite or blown-up (> 100 |loss_0|) step."""
    loss = np.asarray(loss, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~np.isfinite(loss) | (loss - loss[:, :1] > 100 * np.abs(loss[:, :1]))
    after = np.cumsum(bad, axis=1) - bad > 0  # strictly after the first bad step
    return np.where(after, np.nan, loss).astype(np.float32)


def lr_curves(lr, steps, cut_at=None, factor=None):
    """[M, steps] constant LRs, each multiplied by ``factor`` from step ``cut_at`` on."""
    lr = np.asarray(lr, np.float64)[:, None] * np.ones((1, steps))
    if cut_at is not None:
        after = np.arange(steps)[None] >= np.asarray(cut_at)[:, None]
        lr = np.where(after, lr * np.asarray(factor, np.float64)[:, None], lr)
    return lr


def quadratic(lr, rng, *, steps=GD_STEPS, kappa=20.0, L=1.0, d=20, beta=0.0, truth=False):
    """Losses [M, steps] of GD (beta=0, closed form) or heavy ball on one quadratic; ``lr`` is
    [M] LRs or [M, steps] LR curves. All members start from the same x0. With ``truth``, also
    the stated rule's verdict per member (see :func:`grey_truth`) from the exact float64 run."""
    lr = np.asarray(lr, np.float64)
    eta = lr if lr.ndim == 2 else lr_curves(lr, steps)
    lam = L * np.concatenate([[1.0], np.geomspace(1.0 / kappa, 1.0, d - 1)])
    x0 = rng.standard_normal(d)
    with np.errstate(over="ignore", invalid="ignore"):
        if beta == 0.0:  # f_t = 1/2 sum lam x0^2 prod_{s<t} (1 - eta_s lam)^2
            factors = np.cumprod((1 - eta[:, :-1, None] * lam) ** 2, axis=1)
            factors = np.concatenate([np.ones((len(eta), 1, d)), factors], axis=1)
            loss = 0.5 * (lam * x0**2 * factors).sum(axis=2)
        else:
            x = np.broadcast_to(x0, (len(eta), d)).copy()
            v = np.zeros_like(x)
            loss = np.empty(eta.shape)
            for t in range(eta.shape[1]):
                loss[:, t] = 0.5 * (lam * x * x).sum(axis=1)
                v = beta * v - eta[:, t:t + 1] * lam * x
                x = x + v
    if not truth:
        return quarantine(loss), eta.astype(np.float32)
    # the iteration map of each direction is linear with companion matrix [[1 + beta - e lam,
    # -beta], [1, 0]] (GD: beta = 0, the map 1 - e lam): unstable when a root has modulus > 1
    e_lam = eta[:, -1, None] * lam  # the LR at the end (constant LRs for the grey members)
    roots = [np.abs(np.roots([1.0, -(1 + beta - v), beta])).max() for v in e_lam.ravel()]
    unstable = (np.reshape(roots, e_lam.shape) > 1 + 1e-12).any(axis=1)
    stationary = np.where(unstable, np.inf, 1.0)  # noise-free: a stable run settles at f* = 0
    with np.errstate(invalid="ignore"):
        left = loss[:, -1] / loss[:, 0]  # f* = 0: the excess loss left at the last step
    record = quarantine(loss)
    return record, eta.astype(np.float32), grey_truth(record, stationary, left)


def least_squares(lr_over_L, rng, *, steps=SGD_STEPS, batch=8, n=512, d=10, sigma=0.31,
                  spread=30.0, w_scale=1.5, truth=False):
    """Losses and LRs [M, steps] of minibatch SGD on one noisy least-squares problem (same
    batches for all members); ``lr_over_L`` is [M] or [M, steps], in units of 1/L. With
    ``truth``, also the stated rule's verdict per member (see :func:`grey_truth`)."""
    X = rng.standard_normal((n, d)) * np.sqrt(np.geomspace(1.0, 1.0 / spread, d))
    w_star = w_scale * rng.standard_normal(d)
    y = X @ w_star + sigma * rng.standard_normal(n)
    L = np.linalg.eigvalsh(X.T @ X / n)[-1]
    rel = np.asarray(lr_over_L, np.float64)
    eta = (rel if rel.ndim == 2 else lr_curves(rel, steps)) / L
    idx = rng.integers(0, n, size=(steps, batch))
    w = np.zeros((len(eta), d))
    loss = np.empty(eta.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            r = w @ X[idx[t]].T - y[idx[t]]  # [M, batch] residuals
            loss[:, t] = 0.5 * (r * r).mean(axis=1)
            w = w - eta[:, t:t + 1] * (r @ X[idx[t]]) / batch
    if not truth:
        return quarantine(loss), eta.astype(np.float32)
    record = quarantine(loss)
    return record, eta.astype(np.float32), grey_truth(record, *sgd_stationary_and_progress(
        X, y, eta, batch))


def sgd_stationary_and_progress(X, y, eta, batch):
    """[M] stationary expected loss over the noise floor, and [M] share of the excess loss left
    at the last step, of SGD with batches of ``batch`` rows drawn uniformly with replacement,
    from the exact moment maps. With w_ls the least-squares solution, r_i = y_i - x_i^T w_ls,
    the floor f* = mean r_i^2 / 2, e = w - w_ls, A_b = X_b^T X_b / B (E[A_b] = H = X^T X / n) and
    g_b = -(1/B) sum_b x_j r_j (E[g_b] = 0), one step is e' = (I - eta A_b) e - eta g_b, and the
    expected batch loss is f* + 1/2 E[e^T H e] (the batch does not depend on w):

    - mean: E[e'] = (I - eta H) E[e]; the excess left is that of the mean iterate after the
      T - 1 updates before the last recorded loss, over its value at w_0 = 0;
    - second moment: M' = Op(M) + eta^2 S / B with Op(M) = M - eta (H M + M H) + eta^2 ((1 - 1/B)
      H M H + (1/B) mean_i x_i x_i^T M x_i x_i^T) and S = mean_i r_i^2 x_i x_i^T (E[e] -> 0);
      mean-square unstable when the spectral radius of Op exceeds 1 (stationary loss: inf),
      else the fixed point M* = (I - Op)^-1 eta^2 S / B gives the stationary loss
      f* + tr(H M*) / 2 (vec(A M B) = (B^T kron A) vec(M); the last step's LR)."""
    n, d = X.shape
    H = X.T @ X / n
    eye = np.eye(d)
    w_ls = np.linalg.lstsq(X, y, rcond=None)[0]
    r = y - X @ w_ls
    floor = 0.5 * np.mean(r * r)
    S = (X * (r * r)[:, None]).T @ X / n
    K = np.einsum("ni,nj,nk,nl->ikjl", X, X, X, X).reshape(d * d, d * d) / n
    ratio = []
    for e in eta[:, -1]:
        op = (np.eye(d * d) - e * (np.kron(eye, H) + np.kron(H, eye))
              + e**2 * ((1 - 1 / batch) * np.kron(H, H) + K / batch))
        if np.abs(np.linalg.eigvals(op)).max() >= 1.0:
            ratio.append(np.inf)
            continue
        m_star = np.linalg.solve(np.eye(d * d) - op, e**2 * (S / batch).ravel()).reshape(d, d)
        ratio.append((floor + 0.5 * np.trace(H @ m_star)) / floor)
    err = np.broadcast_to(-w_ls, (len(eta), d)).copy()  # w_0 = 0
    excess0 = 0.5 * np.einsum("mi,ij,mj->m", err, H, err)
    for t in range(eta.shape[1] - 1):
        err = err - eta[:, t:t + 1] * err @ H
    left = 0.5 * np.einsum("mi,ij,mj->m", err, H, err) / excess0
    return np.asarray(ratio), left


def grey_truth(record, stationary, left):
    """The stated truth rule for the members between the generators' clear LR ranges (see the
    module docstring): ``diverged`` if the sweep's quarantine caught the run; else
    ``oscillating`` if its stationary expected loss is >= GREY_HIGH x the optimum (inf: the
    iteration is (mean-square) unstable); else ``too_slow`` if >= GREY_LEFT of its excess loss
    is left at the last step (noise-free: GD / heavy ball exactly, SGD's mean iterate); else
    ``healthy``."""
    caught = np.isnan(record).any(axis=1)
    return np.select([caught, stationary >= GREY_HIGH, left >= GREY_LEFT],
                     ["diverged", "oscillating", "too_slow"], "healthy").tolist()


def log_uniform(rng, lo, hi, n):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def gd_sweep(rng):
    """One quadratic, one sweep: 2 too slow (<= 0.01/L: the top direction alone needs >= 100 of
    the 300 steps), 3 healthy (0.4-1.6/L), 2 diverged (> 2/L), a 100x cut far too early (before
    a tenth to two fifths of the slowest direction's time constant kappa/(eta L)), a 10x cut after
    convergence (healthy), the early-cut member's LR without the cut (healthy), and two members
    in the grey zones (0.03-0.3/L, 1.7-1.95/L) that are context for the others but not scored."""
    kappa, L = log_uniform(rng, 5, 30, 1)[0], log_uniform(rng, 0.1, 10, 1)[0]
    rel = np.concatenate([log_uniform(rng, 1e-3, 1e-2, 2), rng.uniform(0.4, 1.6, 3),
                          rng.uniform(2.2, 4.0, 2), [log_uniform(rng, 0.03, 0.3, 1)[0],
                                                     rng.uniform(1.7, 1.95)]])
    base = rng.uniform(0.6, 1.2, 2)
    early = max(2, int(rng.uniform(0.1, 0.4) * kappa / base[0]))
    late = int(rng.uniform(0.6, 0.8) * GD_STEPS)
    scheduled = lr_curves(base[[0, 1, 0]], GD_STEPS, [early, late, GD_STEPS], [0.01, 0.1, 1.0])
    lr = np.concatenate([lr_curves(rel, GD_STEPS), scheduled]) / L
    labels = (["too_slow"] * 2 + ["healthy"] * 3 + ["diverged"] * 2 + [None] * 2
              + ["schedule_too_aggressive", "healthy", "healthy"])
    loss, lr, rule = quadratic(lr, rng, kappa=kappa, L=L, truth=True)
    return loss, lr, [r if lab is None else lab for lab, r in zip(labels, rule)], rule


def momentum_sweep(rng):
    """Heavy ball 0.9 on one quadratic: 2 too slow (<= 5e-4/L), 3 healthy (0.2-1.5/L: ringing
    while converging to ~1e-14), 1 diverged (> 3.8/L), 1 unscored at 2-3.5/L."""
    kappa, L = log_uniform(rng, 5, 20, 1)[0], log_uniform(rng, 0.1, 10, 1)[0]
    rel = np.concatenate([log_uniform(rng, 1e-4, 5e-4, 2), rng.uniform(0.2, 1.5, 3),
                          rng.uniform(4.2, 6.0, 1), rng.uniform(2.0, 3.5, 1)])
    labels = ["too_slow"] * 2 + ["healthy"] * 3 + ["diverged", None]
    loss, lr, rule = quadratic(rel / L, rng, kappa=kappa, L=L, beta=0.9, truth=True)
    return loss, lr, [r if lab is None else lab for lab, r in zip(labels, rule)], rule


def sgd_sweep(rng):
    """One least-squares problem: 2 too slow (<= 0.01/L), 3 healthy (0.1-0.6/L), 3 oscillating
    (1.5-1.75/L; diverged if the quarantine caught them), 1 diverged (3-5/L), a 100x cut at steps
    10-30 of 0.1/L (which needs ~80 steps to reach the floor), a 10x cut of 0.5/L at 60-80%
    (healthy: the floor drops), 0.1/L without the cut (healthy), and two unscored members in the
    grey zones (0.02-0.08/L, 0.8-1.3/L)."""
    rel = np.concatenate([log_uniform(rng, 2e-3, 1e-2, 2), rng.uniform(0.1, 0.6, 3),
                          rng.uniform(1.5, 1.75, 3), rng.uniform(3.0, 5.0, 1),
                          [log_uniform(rng, 0.02, 0.08, 1)[0], rng.uniform(0.8, 1.3)]])
    cut = [int(rng.uniform(10, 30)), int(rng.uniform(0.6, 0.8) * SGD_STEPS), SGD_STEPS]
    scheduled = lr_curves([0.1, 0.5, 0.1], SGD_STEPS, cut, [0.01, 0.1, 1.0])
    loss, lr, rule = least_squares(np.concatenate([lr_curves(rel, SGD_STEPS), scheduled]), rng,
                                   truth=True)
    labels = (["too_slow"] * 2 + ["healthy"] * 3 + ["oscillating"] * 3 + ["diverged"]
              + [None] * 2 + ["schedule_too_aggressive", "healthy", "healthy"])
    labels = ["diverged" if lab and np.isnan(row).any() else lab
              for row, lab in zip(loss, labels)]
    return loss, lr, [r if lab is None else lab for lab, r in zip(labels, rule)], rule


def generated_set(seed, sweeps=(10, 8, 10)):
    """The sweeps of one generator seed: 10 GD (120 curves), 8 heavy-ball (56) and 10 SGD (140):
    316 curves, each ``(loss, lr, truth, rule)`` (``rule``: the stated rule's verdict for every
    member, the truth of the grey-zone ones)."""
    rng = np.random.default_rng(seed)
    return [make(rng) for make, k in zip((gd_sweep, momentum_sweep, sgd_sweep), sweeps)
            for _ in range(k)]


def confusion(pairs):
    """5x5 counts [truth, predicted] in LABELS order (every member is scored)."""
    c = np.zeros((len(LABELS), len(LABELS)), int)
    for truth, pred in pairs:
        c[LABELS.index(truth), LABELS.index(pred)] += 1
    return c


def precision_recall(c):
    tp = np.diag(c).astype(float)
    return tp / np.maximum(c.sum(axis=0), 1), tp / np.maximum(c.sum(axis=1), 1)


def show(title, c):
    short = [lab[:8] for lab in LABELS]
    p, r = precision_recall(c)
    head = "truth / diagnosed"
    lines = [title, f"{head:>26} " + " ".join(f"{s:>8}" for s in short) + "  precision  recall"]
    for k, lab in enumerate(LABELS):
        lines.append(f"{lab:>26} " + " ".join(f"{v:>8d}" for v in c[k])
                     + f"  {p[k]:9.2f}  {r[k]:6.2f}")
    print("\n".join(lines))


@pytest.fixture(scope="module")
def held_out():
    """The generated sweeps of the held-out seeds (never looked at while tuning)."""
    return [s for seed in HELD_OUT_SEEDS for s in generated_set(seed)]


@pytest.fixture(scope="module")
def measured(held_out):
    sweep_pairs, alone_pairs = [], []
    for loss, lr, labels, _ in held_out:
        sweep_pairs += [(t, d.label) for t, d in zip(labels, diagnose(loss, lr))]
        alone_pairs += [(t, diagnose(row, curve).label) for t, row, curve in
                        zip(labels, loss, lr)]
    return confusion(sweep_pairs), confusion(alone_pairs)


# --- the issue's cases ------------------------------------------------------------------------
def test_gd_on_quadratics_too_slow_healthy_diverged():
    rng = np.random.default_rng(1)
    for kappa, L in [(10.0, 1.0), (25.0, 0.05), (5.0, 30.0)]:
        loss, lr = quadratic(np.array([0.01, 1.0, 2.5]) / L, rng, kappa=kappa, L=L)
        expected = ["too_slow", "healthy", "diverged"]
        assert [d.label for d in diagnose(loss, lr)] == expected  # as a sweep
        assert [diagnose(row).label for row in loss] == expected  # each curve alone
        # plain GD below 2/L falls monotonically
        assert np.all(np.diff(loss[:2].astype(np.float64), axis=1) <= 1e-12 * loss[:2, :1])
    sweep = diagnose(loss, lr[:, 0])
    assert "raise the LR" in sweep[0].advice and _num(sweep[0].advice, ", to") == pytest.approx(
        float(lr[1, 0]), rel=0.05)  # toward the healthy grid point
    assert sweep[2].evidence["diverged_at"] == _first_blown(loss[2]) > 0
    assert "lower the LR" in sweep[2].advice


def test_sgd_noise_sanity_against_the_issue_reference():
    """Issue 6 measured second-half mean 0.048 at 0.1/L vs 2.5 at 1.8/L, std/mean 0.5 vs 3.6."""
    means, cvs = {0.1: [], 1.8: []}, {0.1: [], 1.8: []}
    for seed in range(40):
        loss, _ = least_squares(np.array([0.1, 1.8]), np.random.default_rng(seed), steps=400)
        raw = loss[:, 200:].astype(np.float64)
        for k, rel in enumerate((0.1, 1.8)):
            if np.isfinite(raw[k]).all():
                means[rel].append(raw[k].mean())
                cvs[rel].append(raw[k].std() / raw[k].mean())
    lo, hi = np.median(means[0.1]), np.median(means[1.8])
    print(f"\nsecond-half mean {lo:.3f} at 0.1/L vs {hi:.2f} at 1.8/L; std/mean "
          f"{np.median(cvs[0.1]):.2f} vs {np.median(cvs[1.8]):.2f}")
    assert 0.035 < lo < 0.08 and hi > 10 * lo
    assert 0.4 < np.median(cvs[0.1]) < 0.65 and np.median(cvs[1.8]) > 2.0


def test_sgd_noise_floor_is_healthy_and_too_high_lr_oscillates():
    rng = np.random.default_rng(7)
    healthy = np.array([0.1, 0.2, 0.4, 0.6])
    found = 0
    for _ in range(6):
        loss, lr = least_squares(np.concatenate([healthy, [1.6, 1.7]]), rng)
        # the pitfall: at the noise floor the batch loss rises on ~50% of steps
        rises = (np.diff(loss[:4, 250:], axis=1) > 0).mean(axis=1)
        assert np.all((rises > 0.4) & (rises < 0.6))
        sweep = diagnose(loss, lr)
        assert [d.label for d in sweep[:4]] == ["healthy"] * 4
        assert all(diagnose(row).label == "healthy" for row in loss[:4])
        for k in (4, 5):
            if np.isnan(loss[k]).any():  # blown up: quarantined by the sweep rule
                assert sweep[k].label == "diverged"
                continue
            found += 1
            assert sweep[k].label == "oscillating", sweep[k]
            assert "lower the LR" in sweep[k].advice and _num(sweep[k].advice, "to") < lr[k, 0]
    assert found >= 4


def test_momentum_ringing_is_not_a_too_high_lr():
    rng = np.random.default_rng(3)
    rel = np.array([3e-4, 0.2, 0.5, 1.0, 1.5])
    for kappa in (5.0, 10.0, 20.0):
        loss, lr = quadratic(rel, rng, kappa=kappa, beta=0.9)
        rises = (np.diff(loss[1:].astype(np.float64), axis=1) > 0).mean(axis=1)
        assert np.all(rises > 0.3)  # rings at every healthy LR ...
        assert np.all(loss[1:, -1] < 1e-9 * loss[1:, 0])  # ... while converging
        labels = [d.label for d in diagnose(loss, lr)]
        assert labels == ["too_slow"] + ["healthy"] * 4
        assert [diagnose(row).label for row in loss[1:]] == ["healthy"] * 4


def test_step_cut_100x_far_too_early_vs_the_same_lr_without_it():
    rng = np.random.default_rng(5)
    # GD, kappa 30 at 1/L: the slowest direction needs ~30 steps; the LR is cut at step 5
    curves = lr_curves([1.0, 1.0], GD_STEPS, [5, GD_STEPS], [0.01, 1.0])
    loss, lr = quadratic(curves, rng, kappa=30.0)
    cut, uncut = diagnose(loss, lr)
    assert (cut.label, uncut.label) == ("schedule_too_aggressive", "healthy")
    assert diagnose(loss[0], lr[0]).label == "schedule_too_aggressive"  # seen alone too
    assert cut.evidence["cut_step"] == 5 and cut.evidence["cut_factor"] == pytest.approx(0.01)
    assert "decay later" in cut.advice and "instead of 0.01" in cut.advice
    assert "member 1" in cut.reason  # the uncut run at the same LR, named
    # the same curve with the LR as a scalar shows no cut: the schedule is unknown
    assert diagnose(loss[0], 1.0).label != "schedule_too_aggressive"
    # SGD: 0.1/L cut 100x at step 15 vs 0.1/L throughout
    for seed in range(4):
        loss, lr = least_squares(lr_curves([0.1, 0.1], SGD_STEPS, [15, SGD_STEPS], [0.01, 1]),
                                 np.random.default_rng(seed))
        assert [d.label for d in diagnose(loss, lr)] == ["schedule_too_aggressive", "healthy"]


def test_generated_set_precision_and_recall(measured):
    """The figures in diagnose's docstring are measured on the held-out seeds HELD_OUT_SEEDS
    (101, 102): the thresholds were tuned on the sweeps of TUNING_SEED (0) and the fixed cases of
    this file, so those curves are not used here. Every member is scored: the grey-zone ones
    against the stated rule (module docstring), none dropped."""
    in_sweep, alone = measured
    total = int(in_sweep.sum())
    show(f"\n{total} generated curves, diagnosed as sweeps (with the LR context):", in_sweep)
    show("each curve alone (no context):", alone)
    assert total == 2 * 316 and np.all(in_sweep.sum(axis=1) >= 15)
    p, r = precision_recall(in_sweep)
    assert np.all(p >= 0.9) and np.all(r >= 0.9), (p, r)
    # the figures in diagnose's docstring are these, to the 2 decimals printed
    documented = _documented_figures()
    pa, ra = precision_recall(alone)
    for k, lab in enumerate(LABELS):
        measured_row = (p[k], r[k], pa[k], ra[k])
        assert np.allclose(documented[lab], measured_row, rtol=0, atol=0.005 + 1e-9), \
            (lab, measured_row)
    assert documented["curves"] == total
    assert documented["seeds"] == HELD_OUT_SEEDS and documented["tuned"] == TUNING_SEED
    assert TUNING_SEED not in HELD_OUT_SEEDS


def test_stated_rule_gives_the_clear_ranges_their_labels(held_out):
    """The grey-zone rule is no new truth: applied to every constant-LR member of the held-out
    sweeps (the uncut scheduled members included), it gives each the label of the generator's
    range (too slow, healthy, oscillating, diverged); only the cut members have labels it does
    not define."""
    checked = 0
    for _, lr, labels, rule in held_out:
        constant = np.all(lr == lr[:, :1], axis=1)
        assert [lab for lab, c in zip(labels, constant) if c] == \
            [r for r, c in zip(rule, constant) if c]
        checked += int(constant.sum())
    assert checked == 2 * (10 * 10 + 8 * 7 + 10 * 12)


# --- context, NaN, sweeps ---------------------------------------------------------------------
def test_nan_curve_is_diverged_with_a_number_in_the_advice():
    loss, _ = quadratic(np.array([0.5, 1.0, 3.0]), np.random.default_rng(0))
    assert np.isnan(loss[2]).any()
    alone = diagnose(loss[2], 3.0)
    assert alone.label == "diverged" and "to 0.3" in alone.advice and "~10x" in alone.advice
    assert diagnose(loss[2]).advice == "lower the LR ~10x"
    sweep = diagnose(loss, [0.5, 1.0, 3.0])
    assert sweep[2].label == "diverged"
    assert "to 1 or below" in sweep[2].advice and "largest LR that did not diverge" in \
        sweep[2].advice
    assert sweep[2].evidence["safe_lr"] == 1.0
    nan_at = np.where(np.arange(GD_STEPS) >= 40, np.nan, 1.0)
    d = diagnose(nan_at)
    assert d.label == "diverged" and d.evidence["diverged_at"] == 40 and "step 40" in d.reason


def test_context_too_slow_and_too_high_name_the_better_grid_point():
    rng = np.random.default_rng(11)
    loss, lr = quadratic(np.array([0.003, 0.03, 1.0]), rng, kappa=30.0)
    slow = diagnose(loss, lr[:, 0])
    assert [d.label for d in slow[:2]] == ["too_slow", "too_slow"]
    assert slow[0].evidence["context_lr"] == pytest.approx(1.0)
    assert re.search(r"a larger LR 1 reached \S+ vs \S+ here", slow[0].reason)
    # the advice names the move, and does not repeat the reason's numbers
    assert re.fullmatch(r"raise the LR ~\S+x, to 1", slow[0].advice), slow[0].advice
    # stuck: SGD at 1e-4/L barely moves; alone it is too slow with the numbers of its start/end
    stuck = diagnose(least_squares(np.array([1e-4]), rng)[0][0], 1e-4)
    assert stuck.label == "too_slow" and "barely moved" in stuck.reason
    assert "raise the LR ~3x, to 0.0003" in stuck.advice
    # groups: members of other groups are no context
    alone = diagnose(loss, lr[:, 0], groups=["a", "b", "c"])
    assert all("context_lr" not in d.evidence for d in alone)


def test_negative_losses_shifted_keep_their_labels():
    rng = np.random.default_rng(2)
    loss, lr = quadratic(np.array([0.005, 0.8, 1.2, 2.6]), rng, kappa=15.0)
    base = [d.label for d in diagnose(loss, lr)]
    shifted = [d.label for d in diagnose(loss.astype(np.float64) - 10.0, lr)]
    assert base == shifted == ["too_slow", "healthy", "healthy", "diverged"]


def test_batch_equals_rows_without_context_and_str_is_one_line():
    rng = np.random.default_rng(4)
    loss, _ = least_squares(np.array([0.005, 0.3, 1.6]), rng)
    batch = diagnose(loss)
    rows = [diagnose(row) for row in loss]
    assert [d[:3] for d in batch] == [d[:3] for d in rows]
    for a, b in zip(batch, rows):
        np.testing.assert_equal(a.evidence, b.evidence)
    d = batch[1]
    assert isinstance(d, Diagnosis) and d._fields == ("label", "reason", "advice", "evidence",
                                                      "hparams")
    assert str(d).startswith(f"{d.label}: ") and "\n" not in str(d) and " -> " in str(d)
    assert all(isinstance(v, (int, float)) for v in d.evidence.values())
    # 1.6/L is in the generator's oscillating range (mean-square unstable) and was not caught
    assert not np.isnan(loss[2]).any() and batch[2].label == "oscillating"
    assert re.search(r"rose \d+ times in the last \d+ steps, amplitude", batch[2].reason)


def fake_result(loss, lr_curve, **columns):
    grid = jaxlr.Grid({k: np.asarray(v) for k, v in columns.items()})
    loss = np.asarray(loss, np.float32)
    bad = np.isnan(loss)
    return jaxlr.SweepResult(
        grid=grid, loss=loss, lr=np.asarray(lr_curve, np.float32), eval=None, eval_aux={},
        eval_steps=np.zeros(0, np.int32), diverged=bad.any(axis=1),
        diverged_at=np.where(bad.any(axis=1), bad.argmax(axis=1) - 1, -1), state=((), ()),
        assemble=lambda p, r: p)


def test_diagnose_sweep_uses_hparams_groups_and_lr_curves():
    rng = np.random.default_rng(8)
    rel = np.array([0.01, 1.0, 2.5])
    loss_a, lr_a = quadratic(rel, rng, kappa=10.0)
    loss_b, _ = quadratic(rel * 0.1, rng, kappa=10.0)  # "wd=1": everything 10x slower
    loss = np.concatenate([loss_a, loss_b])
    lr = np.concatenate([lr_a, lr_a])
    res = fake_result(loss, lr, lr=np.tile(rel, 2).astype(np.float32),
                      wd=np.repeat([0.0, 1.0], 3).astype(np.float32),
                      seed=np.zeros(6, np.int32))
    out = diagnose_sweep(res)
    assert [d.label for d in out[:3]] == ["too_slow", "healthy", "diverged"]
    # group wd=1 only sees its own members: its 0.1 (=1.0 here) member is compared with 0.25
    # the lowest level (mean of the last 25%) among the group's other members names the context
    level = loss[:, -GD_STEPS // 4:].astype(np.float64).mean(axis=1)
    assert 4 + int(np.argmin(level[4:])) == 5  # LR 0.25 converges fastest in group wd=1
    assert out[3].label == "too_slow" and out[3].evidence["context_member"] == 5
    assert all(d.evidence.get("context_member", 0) < 3 for d in out[:3])
    assert out[2].evidence["diverged_at"] == _first_blown(loss_a[2]) > 0
    # no "lr" column: the LR is the peak of the recorded curve, cuts come from the curve
    curves = lr_curves([1.0, 1.0], GD_STEPS, [5, GD_STEPS], [0.01, 1.0])
    loss, lr = quadratic(curves, np.random.default_rng(9), kappa=30.0)
    res = fake_result(loss, lr, warmup=np.array([0, 1], np.int32))
    assert [d.label for d in diagnose_sweep(res)] == ["schedule_too_aggressive", "healthy"]
    # LR curves all NaN (optimizer without a jaxlr LR state) and a "lr" column: still works
    res = fake_result(loss_a, np.full(loss_a.shape, np.nan), lr=rel.astype(np.float32))
    assert [d.label for d in diagnose_sweep(res)] == ["too_slow", "healthy", "diverged"]


def _all_blow_up_at(step, lrs, steps=60):
    """[M, steps] float32 curves: falling until ``step``, inf there, NaN after (the sweep's
    record), for every LR alike (bad data or a bad model, not the LR)."""
    t = np.arange(steps)
    loss = np.where(t < step, 2.0 * 0.99 ** t, np.nan)[None].repeat(len(lrs), 0)
    loss[:, step] = np.inf
    return loss.astype(np.float32)


def test_every_lr_diverging_at_the_same_step_blames_the_data_or_model_not_the_lr():
    lrs = np.array([1e-5, 1e-4, 1e-3, 1e-2, 1e-1], np.float32)  # four orders of magnitude
    loss = _all_blow_up_at(7, lrs)
    res = jaxlr.SweepResult(
        grid=jaxlr.grid(lr=lrs), loss=loss, lr=np.full(loss.shape, np.nan, np.float32),
        eval=None, eval_aux={}, eval_steps=np.zeros(0, np.int32), diverged=np.ones(5, bool),
        diverged_at=np.full(5, 7), state=((), ()), assemble=lambda p, r: p)
    out = res.diagnose()  # SweepResult.diagnose -> diagnose_sweep
    assert [d.label for d in out] == ["diverged"] * 5
    for d in out:
        assert "lower the LR" not in d.advice
        assert "not the LR" in d.advice and "data" in d.advice and "step 7" in d.advice
        assert "every member (LR 1e-05 to 0.1) diverged at step 7" in d.reason
        assert d.evidence["lr_independent"] == 1
    # the same curves with LRs within 10x: the LR may be the cause, the usual advice stands
    near = diagnose(loss[:2], [0.5, 1.0])
    assert all("lower the LR ~10x" in d.advice and "lr_independent" not in d.evidence
               for d in near)
    # the same LR span, but one member diverging later: the usual advice stands
    late = loss.copy()
    late[0] = _all_blow_up_at(30, lrs[:1])[0]
    assert all("not the LR" not in d.advice for d in diagnose(late, lrs))


def test_divergence_at_step_0_is_never_the_lr():
    """At step 0 no update has been made: the loss of the initial model is non-finite."""
    loss = _all_blow_up_at(0, [1e-3])[0]
    d = diagnose(loss, 1e-3)
    assert d.label == "diverged" and "lower the LR" not in d.advice
    assert "step 0, before any update" in d.advice and "data" in d.advice
    assert d.evidence["lr_independent"] == 1


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("losses, lrs, match", [
    (np.ones((2, 3, 30)), None, r"losses must be .* shape \(2, 3, 30\)"),
    (np.ones(()), None, r"losses must be .*\(ndim=0\)"),
    (np.ones(10), None, r"at least 20 steps.*steps=10"),
    (np.ones((3, 5)), None, r"at least 20 steps.*steps=5"),
    (np.ones((3, 30)), np.ones(4), r"lrs must be .*M=3.*got an array of shape \(4,\)"),
    (np.ones((3, 30)), np.ones((3, 29)), r"lrs must be .*shape \(3, 29\)"),
    (np.ones(30), np.ones(29), r"lrs must be a scalar or the LR curve \[steps\].*\(29,\)"),
    (np.ones((2, 30)), [1e-3, -1.0], r"lrs must be positive and finite, got lrs\[1\]=-1"),
])
def test_bad_input_names_the_argument_and_value(losses, lrs, match):
    with pytest.raises(ValueError, match=match):
        diagnose(losses, lrs)


def test_bad_groups():
    with pytest.raises(ValueError, match=r"groups must give one group per member \(M=2\), got 3"):
        diagnose(np.ones((2, 30)), [1.0, 2.0], groups=[0, 1, 2])


# --- helpers ----------------------------------------------------------------------------------
def _first_blown(row):
    """The documented divergence step: the first non-finite value or loss_t - loss_0 >
    100 |loss_0| (-1 if none), by a plain loop."""
    row = np.asarray(row, np.float64)
    for t, v in enumerate(row):
        if not np.isfinite(v) or v - row[0] > 100 * abs(row[0]):
            return t
    return -1


def _num(text, after):
    """The first number after the word ``after`` in ``text``."""
    m = re.search(rf"{after} ([0-9.eE+-]+)", text)
    assert m, (after, text)
    return float(m.group(1))


def _documented_figures():
    """{label: (precision, recall, alone precision, alone recall), "curves": n} from the table in
    diagnose's docstring."""
    doc = " ".join(diagnose.__doc__.split())
    out = {"curves": int(re.search(r"(\d+) generated curves", doc).group(1)),
           "tuned": int(re.search(r"tuned on the curves of seed (\d+)", doc).group(1)),
           "seeds": tuple(int(x) for x in re.search(
               r"those of seeds (\d+) and (\d+)", doc).groups())}
    doc = diagnose.__doc__
    for lab in LABELS:
        m = re.search(rf"^\s*{lab}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", doc, re.M)
        assert m, f"no figures for {lab} in diagnose's docstring"
        out[lab] = tuple(float(x) for x in m.groups())
    return out
