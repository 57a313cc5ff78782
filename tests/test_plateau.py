"""reduce_on_plateau: torch's decision rule, |best|-relative threshold, traced hyperparameters."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlr


class TorchPlateau:
    """torch.optim.lr_scheduler.ReduceLROnPlateau.step, written out from torch's source.

    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html
    is_better (min, rel): a < best * (1 - threshold); (min, abs): a < best - threshold;
    (max, rel): a > best * (threshold + 1); (max, abs): a > best + threshold.
    step: better -> best = a, num_bad = 0 else num_bad += 1; in cooldown -> counter -= 1,
    num_bad = 0; num_bad > patience -> new = max(lr * factor, min_lr), applied if lr - new > eps;
    cooldown_counter = cooldown; num_bad = 0.
    """

    def __init__(self, lr, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        self.lr, self.mode, self.factor, self.patience = lr, mode, factor, patience
        self.threshold, self.threshold_mode = threshold, threshold_mode
        self.cooldown, self.min_lr, self.eps = cooldown, min_lr, eps
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad = 0
        self.cooldown_counter = 0

    def is_better(self, a):
        t = self.threshold
        if self.mode == "min":
            return a < (self.best * (1 - t) if self.threshold_mode == "rel" else self.best - t)
        return a > (self.best * (t + 1) if self.threshold_mode == "rel" else self.best + t)

    def step(self, a):
        if self.is_better(a):
            self.best, self.num_bad = a, 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            new = max(self.lr * self.factor, self.min_lr)
            if self.lr - new > self.eps:
                self.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad = 0
        return self.lr


def jaxlr_lrs(metrics, base=1.0, **kw):
    """LR of each update when update k is given value=metrics[k] (one compiled scan)."""
    opt = jaxlr.sgd(jaxlr.reduce_on_plateau(base, **kw))

    @jax.jit
    def run(ms):
        def body(state, m):
            _, state = opt.update(jnp.zeros(1), state, value=m)
            return state, jaxlr.current_lr(state)

        return jax.lax.scan(body, opt.init(jnp.zeros(1)), ms)[1]

    return np.asarray(run(jnp.asarray(metrics, jnp.float32)))


def torch_lrs(metrics, lr=1.0, **kw):
    ref = TorchPlateau(lr, **kw)
    return np.array([ref.step(float(m)) for m in metrics])


rng = np.random.default_rng(0)
CASES = {
    "flat": (np.ones(40), dict(patience=3)),
    "improving": (np.linspace(10, 1, 40), dict(patience=2)),
    "noisy": (1 + 0.3 * rng.standard_normal(120) + np.linspace(1, 0, 120), dict(patience=4)),
    "cooldown": (np.ones(60), dict(patience=2, cooldown=5)),
    "patience0": (np.r_[np.linspace(5, 1, 10), np.ones(10)], dict(patience=0)),
    "mode_max": (np.r_[np.linspace(0, 0.9, 10), 0.9 * np.ones(30)], dict(mode="max", patience=3)),
    "abs": (np.r_[np.linspace(1, 0.9, 30), 0.9 - 1.3e-3 * np.arange(30)],
            dict(threshold_mode="abs", threshold=0.01, patience=2)),
    "min_lr": (np.ones(80), dict(patience=1, factor=0.5, min_lr=0.03)),
    "eps_skip": (np.ones(40), dict(patience=1, factor=0.5, eps=0.3)),
    "factor_half": (np.ones(40) + 0.01 * rng.standard_normal(40), dict(factor=0.5, patience=2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_lr_sequence_equals_torch_formula(name):
    metrics, kw = CASES[name]
    np.testing.assert_allclose(jaxlr_lrs(metrics, **kw), torch_lrs(metrics, **kw), rtol=1e-5)


def test_cases_actually_cut():
    """The hand-made sequences exercise cuts (and not only in one case)."""
    cut = [n for n, (m, kw) in CASES.items() if torch_lrs(m, **kw)[-1] < 1.0]
    assert len(cut) >= 7, cut
    m, kw = CASES["eps_skip"]
    assert torch_lrs(m, **kw)[-1] == 0.5  # the eps rule skipped later cuts


@pytest.mark.parametrize("name", ["flat", "noisy", "cooldown", "mode_max", "abs", "min_lr"])
def test_lr_sequence_equals_real_torch(name):
    torch = pytest.importorskip("torch")
    metrics, kw = CASES[name]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    ref = []
    for m in metrics:
        sched.step(float(m))
        ref.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(jaxlr_lrs(metrics, **kw), ref, rtol=1e-5)


def test_negative_metrics_are_cut_where_torch_is_not():
    # A flat negative loss (e.g. a negative log-likelihood that stopped improving).
    metrics = -10.0 * np.ones(30)
    # torch: a < best * (1 - 1e-4) = -9.999 holds for a = -10: "improves" forever, never cuts.
    assert torch_lrs(metrics, patience=2)[-1] == 1.0
    ours = jaxlr_lrs(metrics, patience=2)
    assert ours[2] == 1.0 and ours[3] == pytest.approx(0.1), ours[:5]
    # and a real improvement of a negative metric is recognised: no cut
    assert jaxlr_lrs(-np.linspace(1, 30, 30), patience=2)[-1] == 1.0


def test_accumulate_decides_on_means():
    k = 5
    metrics = np.r_[np.linspace(3, 1, 50), np.ones(100)] + 0.05 * rng.standard_normal(150)
    ours = jaxlr_lrs(metrics, patience=1, accumulate=k)
    means = metrics.reshape(-1, k).mean(axis=1)
    ref = torch_lrs(means, patience=1)
    np.testing.assert_allclose(ours[k - 1::k], ref, rtol=1e-5)
    # between decisions the LR holds
    np.testing.assert_allclose(ours[k::k], ours[k - 1:-1:k], rtol=0)


def test_base_schedule_warmup_then_plateau():
    base = jaxlr.warmup(jaxlr.constant(0.5), 10)
    metrics = np.ones(30)
    lrs = jaxlr_lrs(metrics, base=base, patience=15)
    expected_base = np.asarray(base(jnp.arange(30)))
    np.testing.assert_allclose(lrs[:16], expected_base[:16], rtol=1e-6)  # warmup, no cut yet
    # flat metric from step 0: the 17th value (index 16) is the (patience+1)-th bad one -> cut
    np.testing.assert_allclose(lrs[16:], 0.1 * expected_base[16:], rtol=1e-6)


def test_jit_vmap_members_keep_their_own_state_and_hyperparameters():
    metrics = np.r_[np.linspace(2, 1, 10), np.ones(30)] + 0.02 * rng.standard_normal(40)
    factors = jnp.array([0.1, 0.5, 0.3])
    patiences = jnp.array([0, 3, 6])
    thresholds = jnp.array([1e-4, 1e-2, 0.1])

    @jax.jit
    @jax.vmap
    def run(f, p, t):
        opt = jaxlr.sgd(jaxlr.reduce_on_plateau(1.0, factor=f, patience=p, threshold=t))

        def body(state, m):
            _, state = opt.update(jnp.zeros(1), state, value=m)
            return state, jaxlr.current_lr(state)

        return jax.lax.scan(body, opt.init(jnp.zeros(1)), jnp.asarray(metrics, jnp.float32))[1]

    out = np.asarray(run(factors, patiences, thresholds))
    for i in range(3):
        kw = dict(factor=float(factors[i]), patience=int(patiences[i]),
                  threshold=float(thresholds[i]))
        np.testing.assert_allclose(out[i], torch_lrs(metrics, **kw), rtol=1e-5)
    assert len({tuple(r) for r in out}) == 3  # the members really differ


def test_missing_value_is_a_clear_error():
    opt = jaxlr.adam(jaxlr.reduce_on_plateau(1e-3))
    state = opt.init(jnp.zeros(2))
    with pytest.raises(ValueError, match="value=loss"):
        opt.update(jnp.ones(2), state)


def test_value_must_be_scalar():
    opt = jaxlr.sgd(jaxlr.reduce_on_plateau(1e-3))
    state = opt.init(jnp.zeros(2))
    with pytest.raises(ValueError, match="value must be a scalar"):
        opt.update(jnp.ones(2), state, value=jnp.ones(3))


@pytest.mark.parametrize("kw, match", [
    (dict(factor=1.0), "factor must be < 1, got factor=1"),
    (dict(factor=0.0), "factor must be > 0"),
    (dict(patience=-1), "patience must be >= 0, got patience=-1"),
    (dict(patience=1.5), "patience must be a whole number"),
    (dict(threshold=-0.1), "threshold must be >= 0"),
    (dict(cooldown=-2), "cooldown must be >= 0, got cooldown=-2"),
    (dict(min_lr=-1e-3), "min_lr must be >= 0"),
    (dict(eps=-1.0), "eps must be >= 0"),
    (dict(accumulate=0), "accumulate must be >= 1, got accumulate=0"),
    (dict(mode="avg"), "mode must be 'min' or 'max', got mode='avg'"),
    (dict(threshold_mode="pct"), "threshold_mode must be 'rel' or 'abs'"),
    (dict(factor=np.array([0.1, 0.5])), "vmap"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        jaxlr.reduce_on_plateau(1e-3, **kw)


@pytest.mark.parametrize("make, match", [
    (lambda: jaxlr.reduce_on_plateau(-0.1), r"base must be >= 0, got base=-0.1; .*gradient ascent"),
    (lambda: jaxlr.reduce_on_plateau(1e-3, min_lr=-1e-3),
     r"min_lr must be >= 0, got min_lr=-0.001; .*gradient ascent"),
    (lambda: jaxlr.reduce_on_plateau(jaxlr.constant(-0.1)), r"value must be >= 0, got value=-0.1"),
])
def test_negative_learning_rate_is_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()
