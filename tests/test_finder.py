"""The LR range test: stop, smoothing and suggestions against references computed here."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

import jaxlr
from jaxlr._finder.finder import FinderResult, find_lr, ramp_memory, smooth, valley_index

# GD on f(w) = 0.5 * sum(h_i w_i^2): stable for lr < 2/L, L = max h = 10; the default ramp
# 1e-7 -> 10 reaches ~100/L, past the blow-up (~10-20/L, see test_quadratic_gd).
H = np.logspace(-1.0, 1.0, 8)
L = float(H.max())
DUMMY = (jnp.zeros((4, 1)),)  # the loss ignores the batch
STARTS = {"ones": np.ones(8), "equal_energy": 1.0 / np.sqrt(H)}


def quadratic(shift=0.0):
    h = jnp.asarray(H, jnp.float32)
    return lambda w, batch: 0.5 * jnp.sum(h * w**2) + shift


def gd(lr):
    return jaxlr.sgd(lr)


def run_quadratic(start="ones", shift=0.0, **kw):
    w0 = jnp.asarray(STARTS[start], jnp.float32)
    return find_lr(lambda key: w0, quadratic(shift), DUMMY, gd, batch_size=4, **kw)


@pytest.fixture(scope="module")
def quad():
    return {start: run_quadratic(start) for start in STARTS}


def exact_gd_losses(lrs, w0):
    """Closed form in float64: w_{t+1} = (1 - lr_t h) w_t per coordinate; loss before update."""
    w = np.asarray(w0, np.float64).copy()
    out = []
    for lr in np.asarray(lrs, np.float64):
        out.append(0.5 * np.sum(H * w**2))
        w = (1.0 - lr * H) * w
    return np.asarray(out)


@pytest.mark.parametrize("start", sorted(STARTS))
def test_quadratic_gd(quad, start):
    res = quad[start]
    assert res.losses.shape == res.smoothed.shape == (1, 100) and res.lrs.shape == (100,)
    # the ramp: lr_t = min_lr * (max_lr / min_lr) ** (t / (steps - 1))
    np.testing.assert_allclose(res.lrs, 1e-7 * 1e8 ** (np.arange(100) / 99), rtol=1e-5)

    exact = exact_gd_losses(res.lrs, STARTS[start])
    t_star = int(np.argmax(exact > 1000 * exact[0]))  # first step 1000x above the start
    assert exact[t_star] > 1000 * exact[0]
    stop = int(res.diverged_at[0])
    assert stop >= 0, "the divergence stop never fired"
    assert res.lrs[stop] >= 2 / L, f"stopped at lr={res.lrs[stop]:.3g} < 2/L"
    assert abs(stop - t_star) <= 2, f"stop at step {stop}, exact 1000x crossing at {t_star}"
    # a NaN-only stop (float32 overflow) would come far later than the real blow-up
    assert np.all(exact[: stop + 1] < np.finfo(np.float32).max)
    # the recorded curve is the exact GD curve up to the stop, NaN after
    np.testing.assert_allclose(res.losses[0, : stop + 1], exact[: stop + 1], rtol=1e-4)
    assert np.isnan(res.losses[0, stop + 1:]).all() and np.isnan(res.smoothed[0, stop + 1:]).all()

    assert 0.05 / L <= res.suggestion <= 2 / L, (res.suggestion * L, res.suggestions)
    ref = documented_suggestions(res.lrs, res.losses, res.diverged_at)
    assert res.suggestions == pytest.approx(ref, rel=1e-12)
    assert set(res.suggestions) == {"valley", "steepest", "minimum"}
    assert res.suggestion == pytest.approx(documented_default(res), rel=1e-7)  # f32 ramp


def centered_reference(x, half=3):
    """find_lr's smoothing, written out: m_t = median of x[t-k..t+k], k = min(half, t, e-1-t),
    then the mean of m[t-j..t+j], j = min(1, t, e-1-t); e = the first non-finite step."""
    x = np.asarray(x, float)
    e = len(x) if np.isfinite(x).all() else int(np.argmin(np.isfinite(x)))
    m = [np.median(x[t - min(half, t, e - 1 - t): t + min(half, t, e - 1 - t) + 1])
         for t in range(e)]
    out = np.full(len(x), np.nan)
    for t in range(e):
        j = min(1, t, e - 1 - t)
        out[t] = np.mean(m[t - j: t + j + 1])
    return out


def test_smoothed_is_a_centered_median_then_mean(quad):
    """``smoothed`` (what the rules and the plot read): centered median over 3 steps each side
    on the default ramp (a quarter decade = 3.09 steps), then a centered 3-point mean."""
    res = quad["ones"]
    x = res.losses[0]
    e = int(np.flatnonzero(~np.isfinite(x))[0])  # after the stop
    np.testing.assert_allclose(res.smoothed[0], centered_reference(x), rtol=1e-12)
    assert np.isnan(res.smoothed[0, e:]).all()
    assert res.smoothed[0, 0] == x[0] and res.smoothed[0, e - 1] == x[e - 1]  # no lag at the ends
    # beta = 0: nothing smoothed
    raw = FinderResult.from_curves(res.lrs, x, beta=0.0, diverged_at=res.diverged_at)
    np.testing.assert_array_equal(raw.smoothed[0, :e], x[:e])


def test_stop_reads_the_bias_corrected_ema():
    """The divergence stop's curve (causal, in the program): fastai/Lightning's average."""
    beta, x = 0.98, sigmoid_curve(0.02)
    avg, ref = 0.0, []
    for t, v in enumerate(x):
        avg = beta * avg + (1 - beta) * v
        ref.append(avg / (1 - beta ** (t + 1)))
    np.testing.assert_allclose(smooth(x, beta), ref, rtol=1e-12)
    assert smooth(x, beta)[0] == x[0]  # the bias correction: no pull toward 0


def test_negative_loss_same_stop_and_suggestion(quad):
    pos = quad["ones"]
    neg = run_quadratic("ones", shift=-100.0)
    assert np.all(neg.losses[0, :10] < 0)
    np.testing.assert_array_equal(neg.diverged_at, pos.diverged_at)
    assert neg.suggestion == pos.suggestion
    assert neg.suggestions == pos.suggestions
    ok = np.isfinite(pos.smoothed)
    np.testing.assert_allclose(neg.smoothed[ok] + 100.0, pos.smoothed[ok], rtol=1e-5, atol=1e-4)


def test_nan_injected_at_a_known_step_stops_there():
    """The top coordinate decays as w_{t+1} = (1 - lr_t L) w_t; sqrt(w_top - a) turns NaN at
    the first step where w_top < a: with a between w_{k-1} and w_k that is step k exactly."""
    k = 60
    lrs = 1e-7 * 1e8 ** (np.arange(100) / 99)
    w_top = np.cumprod(np.r_[1.0, 1.0 - lrs[:-1] * L])
    a = math.sqrt(w_top[k - 1] * w_top[k])
    base = quadratic()

    def loss(w, batch):
        return base(w, batch) + 0.0 * jnp.sqrt(w[-1] - a)

    res = find_lr(lambda key: jnp.ones(8), loss, DUMMY, gd, batch_size=4)
    assert res.diverged_at.tolist() == [k]
    assert np.isfinite(res.losses[0, :k]).all() and np.isnan(res.losses[0, k:]).all()
    assert res.window == (10, k)  # the suggestions only read the curve before the stop
    assert math.isfinite(res.suggestion)


# --- minibatch: logistic regression on sklearn digits -------------------------------------
X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)
DIGITS = ((X_DIGITS / 16.0).astype(np.float32), Y_DIGITS.astype(np.int32))


def init_logreg(key):
    return {"w": 0.01 * jax.random.normal(key, (64, 10)), "b": jnp.zeros(10)}


def cross_entropy(params, batch):
    x, y = batch
    logp = jax.nn.log_softmax(x @ params["w"] + params["b"])
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def run_digits(**kw):
    return find_lr(init_logreg, cross_entropy, DIGITS, batch_size=32, seeds=3, **kw)


@pytest.fixture(scope="module")
def digits():
    return run_digits()


def test_seeds_give_one_curve_each(digits):
    res = digits
    assert res.losses.shape == res.smoothed.shape == (3, 100)
    assert res.mean.shape == res.spread.shape == (100,) and res.diverged_at.shape == (3,)
    assert res.seeds.tolist() == [0, 1, 2]
    for i, j in [(0, 1), (0, 2), (1, 2)]:  # own init and batches per seed
        assert not np.allclose(res.losses[i], res.losses[j], equal_nan=True)
    # mean / spread over the seeds still running (reference: nanmean / nanstd)
    ok = np.isfinite(res.smoothed).all(axis=0)
    np.testing.assert_allclose(res.mean[ok], res.smoothed[:, ok].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(res.spread[ok], res.smoothed[:, ok].std(axis=0), atol=1e-12)
    assert (res.spread[ok] > 0).any()
    # the suggestions, recomputed from the documented rules on the recorded curves
    ref = documented_suggestions(res.lrs, res.losses, res.diverged_at)
    assert res.suggestions == pytest.approx(ref, rel=1e-12)
    assert all(math.isfinite(v) for v in ref.values())
    assert res.suggestion == pytest.approx(documented_default(res), rel=1e-7)  # f32 ramp
    d = res.to_dict()
    assert d["suggestion"] == res.suggestion and d["losses"] is res.losses


def documented_suggestions(lrs, losses, stops, half=3):
    """find_lr's docstring, written out: smoothed = per seed, centered_reference (a centered
    running median, half = 3 on the default ramp, then a 3-point mean); mean over the seeds
    still running; window from w = max(2, T // 10) to the first stop
    of any seed (``stops``: diverged_at; exclusive), or the end; on it, with slopes
    np.gradient(mean, ln lr): ``steepest`` = LR of the most negative slope at or before the
    minimum where the mean is below l_0 (median of the warm-up's raw losses, pooled over
    seeds); ``minimum`` = LR of the minimum / 10;
    ``valley`` = fastai's rule (fastai_valley below)."""
    n_seeds, steps = losses.shape
    smoothed = np.stack([centered_reference(row, half) for row in losses])
    w = max(2, steps // 10)
    end = int(min(stops[stops >= 0], default=steps))
    lr, curve = lrs[w:end], np.nanmean(smoothed[:, w:end], axis=0)  # every seed runs there
    level = np.median(losses[:, :w])
    low = int(np.argmin(curve))
    slope = np.gradient(curve, np.log(lr))
    ok = [i for i in range(len(curve)) if i <= low and curve[i] < level and slope[i] < 0]
    return {"valley": float(lr[max(0, fastai_valley(list(curve)))]),
            "steepest": float(lr[min(ok, key=lambda i: slope[i])]) if ok else math.nan,
            "minimum": float(lr[low]) / 10}


def documented_default(res):
    """The default on the default ramp (memory n = n_0): min(10**0.4 * steepest, the window's
    last LR); without a steepest, the geometric mean of valley and minimum."""
    s = res.suggestions
    if math.isfinite(s["steepest"]):
        return min(10**0.4 * s["steepest"], res.lrs[res.window[1] - 1])
    return math.sqrt(s["valley"] * s["minimum"])


def test_deterministic_for_given_seeds(digits):
    again = run_digits()
    for name in ("losses", "smoothed", "mean", "spread", "diverged_at", "lrs"):
        np.testing.assert_array_equal(getattr(again, name), getattr(digits, name), err_msg=name)
    assert again.suggestions == digits.suggestions and again.suggestion == digits.suggestion


def test_suggestion_trains_better_than_lrs_30x_away(digits):
    lr = digits.suggestion
    res = jaxlr.sweep(init_logreg, cross_entropy, DIGITS, lambda hp: jaxlr.adam(hp["lr"]),
                      jaxlr.grid(lr=[lr / 30, lr, lr * 30]), steps=150, batch_size=32,
                      eval_data=DIGITS, progress=False)
    low, mid, high = res.eval[:, -1]
    assert mid < low and mid < high, (lr, res.eval[:, -1])


# --- the rules on constructed curves --------------------------------------------------------
RAMP = 1e-7 * 1e8 ** (np.arange(100) / 99)


def sigmoid_curve(noise=0.0, seed=0):
    """Flat at 2.3, falls by 2 around step 60, blows up after step 85."""
    t = np.arange(100)
    clean = 2.3 - 2.0 / (1 + np.exp(-(t - 60) / 4.0))
    clean = clean + np.where(t > 85, 0.05 * np.exp(0.6 * (t - 85)), 0.0)
    return clean + noise * np.random.default_rng(seed).standard_normal(100)


@pytest.mark.parametrize("spike_at", [1, 4, 8])
def test_early_spike_does_not_fool_steepest(spike_at):
    clean = FinderResult.from_curves(RAMP, sigmoid_curve(0.02))
    x = sigmoid_curve(0.02)
    x[spike_at] += 20.0
    spiked = FinderResult.from_curves(RAMP, x)
    ratio = spiked.suggestions["steepest"] / clean.suggestions["steepest"]
    assert 1 / 1.21**2 <= ratio <= 1.21**2  # within two ramp steps
    assert spiked.diverged_at.tolist() == clean.diverged_at.tolist()
    # the naive rule (most negative slope after a 10% burn-in) on fastai/Lightning's EMA, where
    # the spike decays for ~50 steps, is fooled:
    slope = np.gradient(smooth(x, 0.98)[10:80], np.log(RAMP[10:80]))
    assert RAMP[10 + int(np.argmin(slope))] < clean.suggestions["steepest"] / 100
    # the centered median barely sees the one-batch spike (+20): at most the noise's order
    assert np.nanmax(np.abs(spiked.smoothed - clean.smoothed)) < 0.1


def test_one_outlier_batch_is_not_a_divergence():
    x = sigmoid_curve(0.02)
    x[15] += 5.0  # one batch at 3x the loss, early in the flat part
    res = FinderResult.from_curves(RAMP, x)
    assert res.diverged_at[0] > 85
    x[16:25] += 5.0  # ... but a loss that stays up is one
    assert FinderResult.from_curves(RAMP, x).diverged_at[0] == 16


def valley_curve(center, noise=0.0, seed=0, lrs=RAMP):
    """A valley in log-LR with its minimum at 10**center: 1 + (log10 lr - center)**2."""
    u = np.log10(lrs)
    return 1 + (u - center) ** 2 + noise * np.random.default_rng(seed).standard_normal(len(u))


@pytest.mark.parametrize("center", [-4.0, -3.0, -2.0])
def test_smoothed_curve_has_no_lag(center):
    """The curve the rules read has its minimum where the loss has it (within a quarter
    decade, 3 ramp steps; noise 0.03 on a valley 1 + (log10 lr - center)**2); fastai/Lightning's
    EMA (beta 0.98) puts it 1.25 decades or more later on the default ramp."""
    x = valley_curve(center, noise=0.03, seed=int(-center))
    res = FinderResult.from_curves(RAMP, x)
    assert res.diverged_at.tolist() == [-1]
    at = np.log10(RAMP[int(np.nanargmin(res.mean))])
    assert abs(at - center) <= 0.25, at
    ema_at = np.log10(RAMP[int(np.argmin(smooth(x, 0.98)))])
    assert ema_at - center >= 1.25, ema_at  # the lag this replaces


def test_plotted_smoothed_curve_does_not_lag():
    """finder.png's bold curve has its minimum within a quarter decade of the loss's (a lagging
    EMA puts it 1.25-2 decades later, which this fails on)."""
    pytest.importorskip("matplotlib")
    from jaxlr._plot import plot_finder

    for center, seed in [(-4.0, 1), (-2.5, 2)]:
        x = np.stack([valley_curve(center, 0.03, seed + k) for k in range(3)])
        res = FinderResult.from_curves(RAMP, x)
        ax = plot_finder(res).axes[0]
        (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "smoothed"]
        lr, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert abs(np.log10(lr[int(np.nanargmin(y))]) - center) <= 0.25
        # ... and it follows the loss: within the noise of the exact valley everywhere
        assert np.nanmax(np.abs(y - valley_curve(center, lrs=lr))) < 0.1


def test_ramp_memory_is_the_geometric_sum():
    """n = 1 / (1 - 1/r): the ramp's LRs up to step t sum to n * lr_t (up to r**-t)."""
    n = ramp_memory(1e-7, 10.0, 100)
    assert n == pytest.approx(5.89, abs=0.005)
    t = 80
    assert RAMP[: t + 1].sum() == pytest.approx(n * RAMP[t], rel=1e-6)


def test_default_scales_with_the_ramp_memory():
    """The same curve read on a denser ramp (400 steps, 8 decades): the default is
    10**0.4 * (n / n_0) * steepest, n / n_0 = 3.76; on the default ramp the factor is 1."""
    lrs = 1e-7 * 1e8 ** (np.arange(400) / 399)
    t = np.arange(400)
    x = 2.3 - 2.0 / (1 + np.exp(-(t - 240) / 16.0))  # falls around lr 1e-2.2, never rises
    x = x + np.where(t > 340, 0.05 * np.exp(0.15 * (t - 340)), 0.0)
    with np.errstate(over="ignore"):
        res = FinderResult.from_curves(lrs, x)
    scale = ramp_memory(1e-7, 10.0, 400) / ramp_memory(1e-7, 10.0, 100)
    assert scale == pytest.approx(3.76, abs=0.01)
    steep = res.suggestions["steepest"]
    assert res.suggestion == pytest.approx(10**0.4 * scale * steep, rel=1e-12)
    base = FinderResult.from_curves(RAMP, sigmoid_curve(0.0))
    assert base.suggestion == pytest.approx(10**0.4 * base.suggestions["steepest"], rel=1e-12)


def test_default_never_passes_the_last_lr_read():
    """A loss still falling fastest at the top of the ramp: the default (steepest x 2.5) is
    capped at the last LR of the window, with the still-falling warning."""
    t = np.arange(100)
    x = 2.3 - 2.0 / (1 + np.exp(-(t - 97) / 3.0))
    with pytest.warns(RuntimeWarning, match="still falling"):
        res = FinderResult.from_curves(RAMP, x)
    assert 10**0.4 * res.suggestions["steepest"] > RAMP[-1]
    assert res.suggestion == RAMP[-1]


def fastai_valley(losses):
    """fastai.callback.schedule.valley, transcribed (returns the index)."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


@pytest.mark.parametrize("seed", range(6))
def test_valley_is_fastais(seed):
    rng = np.random.default_rng(seed)
    curve = sigmoid_curve(0.0)[:85] + rng.uniform(0.02, 0.5) * rng.standard_normal(85)
    assert valley_index(curve) == max(0, fastai_valley(list(curve)))
    assert valley_index(np.arange(10.0)) is None  # never decreases


@pytest.mark.parametrize("kwargs, match", [
    ({"min_lr": 0.0}, "min_lr must be > 0.*min_lr=0"),
    ({"min_lr": -1e-3}, "min_lr must be > 0.*min_lr=-0.001"),
    ({"min_lr": 1e-2, "max_lr": 1e-3}, "max_lr must be > min_lr.*max_lr=0.001, min_lr=0.01"),
    ({"steps": 5}, "steps must be a whole number >= 10.*steps=5"),
    ({"seeds": 0}, "seeds must be >= 1.*seeds=0"),
    ({"seeds": []}, "seeds must be a count >= 1 or a non-empty list"),
    ({"beta": 1.0}, r"beta must be in \[0, 1\).*beta=1"),
    ({"beta": -0.1}, r"beta must be in \[0, 1\).*beta=-0.1"),
    ({"divergence_factor": 0.0}, "divergence_factor must be > 0"),
    ({"min_lr": float("nan")}, "min_lr must be finite"),
])
def test_bad_arguments_raise_eagerly(kwargs, match):
    def never(*args):
        raise AssertionError("validation must happen before any training")

    with pytest.raises(ValueError, match=match):
        find_lr(never, never, DUMMY, never, batch_size=4, **kwargs)


def _rule_stop(curve, factor=4.0, beta=0.98):
    """The in-program rule (jaxlr._finder.stop_rule) run over a curve with lax.scan."""
    from jaxlr._finder.finder import _warmup, stop_rule

    rule = stop_rule(factor, beta, _warmup(len(curve)))

    def body(state, inp):
        t, loss = inp
        state, fired = rule.update(state, t, loss)
        return state, fired

    fired = jax.lax.scan(body, rule.init(),
                         (jnp.arange(len(curve)), jnp.asarray(curve, jnp.float32)))[1]
    hits = np.flatnonzero(np.asarray(fired))
    return int(hits[0]) if hits.size else -1


@pytest.mark.parametrize("seed", range(6))
def test_in_program_stop_rule_equals_the_numpy_rule(seed):
    """The stop fires inside the sweep's program at the step the documented rule gives."""
    from jaxlr._finder.finder import divergence_step

    rng = np.random.default_rng(seed)
    n = 100
    t = np.arange(n)
    fall = 5.0 * np.exp(-t / rng.uniform(10, 40)) + 1.0
    blow = np.where(t > rng.integers(50, 90), np.exp((t - 60) / rng.uniform(2, 8)), 0.0)
    curve = fall + blow + 0.05 * rng.standard_normal(n) - rng.uniform(0, 10)  # may be negative
    expected = divergence_step(curve, 4.0)
    assert expected > 0
    assert _rule_stop(curve) == expected


def test_stopped_seed_is_frozen_inside_the_program(quad):
    for res in quad.values():
        stop = int(res.diverged_at[0])
        assert stop > 0 and np.isnan(res.losses[0, stop + 1:]).all()
    # the sweep itself (the compiled program) reports the same stop with the finder's rule
    from jaxlr._finder.finder import _warmup, exponential_ramp, stop_rule

    w0 = jnp.asarray(STARTS["ones"], jnp.float32)
    ramp = exponential_ramp(1e-7, 10.0, 100)
    raw = jaxlr.sweep(lambda key: w0, quadratic(), DUMMY, lambda hp: gd(ramp), jaxlr.grid(seed=1),
                      steps=100, batch_size=4, progress=False,
                      divergence=stop_rule(4.0, 0.98, _warmup(100)))
    assert int(raw.diverged_at[0]) == int(quad["ones"].diverged_at[0])
