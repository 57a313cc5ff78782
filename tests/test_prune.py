"""Successive halving inside the sweep: survivors == unpruned run, ranking, compaction, resume."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxlr
from jaxlr._sweep import SuccessiveHalving
from jaxlr._sweep import checkpoint as _checkpoint

X = jax.random.normal(jax.random.key(0), (96, 4))
Y = jnp.tanh(X @ jnp.array([1.0, -2.0, 0.5, 0.0])) + 0.1 * jax.random.normal(jax.random.key(1),
                                                                             (96,))
DATA = (X, Y)
LRS = np.logspace(-3, 0.3, 9)  # the top LRs diverge with momentum 0.9
STEPS, MIN_STEPS, ETA = 90, 10, 3  # rungs 10, 30: 9 settings -> 3 -> 1


def init_mlp(key):
    k1, k2 = jax.random.split(key)
    return {"w1": 0.5 * jax.random.normal(k1, (4, 8)), "b1": jnp.zeros(8),
            "w2": 0.5 * jax.random.normal(k2, (8,)), "b2": jnp.zeros(())}


def loss_fn(p, batch):
    x, y = batch
    pred = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    mse = jnp.mean((pred - y) ** 2)
    return mse, {"r2": 1.0 - mse / jnp.var(y)}


def optimizer(hp):
    return jaxlr.sgd(hp["lr"], momentum=0.9)


GRID = jaxlr.grid(lr=LRS, seed=2)  # 18 members, 9 settings


def run(grid=GRID, prune=None, steps=STEPS, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("eval_every", MIN_STEPS)
    return jaxlr.sweep(init_mlp, loss_fn, DATA, kw.pop("optimizer", optimizer), grid,
                       steps=steps, batch_size=16, eval_data=DATA, prune=prune, **kw)


BY_EVAL = jaxlr.successive_halving(MIN_STEPS, ETA, by="eval")


@pytest.fixture(scope="module")
def unpruned():
    return run()


@pytest.fixture(scope="module")
def pruned():  # chunks of 10 steps (the default here), ranked by eval
    return run(prune=BY_EVAL)


def expected_pruned_at(full, by, mode):
    """Successive halving by hand on the unpruned sweep's curves (Jamieson & Talwalkar 2016,
    Alg. 1, with a setting's score = the mean over its seeds): at each rung r = 10, 30, rank the
    remaining settings, keep the best floor(n / eta) (at least 1), diverged members last."""
    settings = GRID.settings()
    pruned_at = np.full(len(GRID), -1)
    alive = np.unique(settings)
    for r in (10, 30):
        if by == "loss":  # smoothed: the mean of the last max(1, r // 10) training losses
            value = full.loss[:, r - max(1, r // 10):r].mean(axis=1)
        else:
            col = list(full.eval_steps).index(r)
            value = (full.eval if by == "eval" else full.eval_aux[by])[:, col]
        value = value.astype(np.float64) * (1 if mode == "min" else -1)
        diverged = (full.diverged_at >= 0) & (full.diverged_at < r)
        value = np.where(diverged | ~np.isfinite(value), np.inf, value)
        means = [value[settings == s].mean() for s in alive]
        order = sorted(range(len(alive)), key=lambda j: (means[j], alive[j]))
        keep = alive[sorted(order[: max(1, len(alive) // ETA)])]
        for s in np.setdiff1d(alive, keep):
            pruned_at[settings == s] = r
        alive = keep
    return pruned_at


@pytest.mark.parametrize("by,mode", [("loss", "min"), ("eval", "min"), ("r2", "max")])
def test_survivors_equal_the_unpruned_sweep(unpruned, pruned, by, mode):
    res = (pruned if by == "eval" else
           run(prune=jaxlr.successive_halving(MIN_STEPS, ETA, by=by, mode=mode)))
    assert unpruned.diverged.any()  # the grid has diverging LRs: they go first
    want = expected_pruned_at(unpruned, by, mode)
    np.testing.assert_array_equal(res.pruned_at, want)
    assert (want == 10).sum() == 12 and (want == 30).sum() == 4 and (want == -1).sum() == 2
    for i in range(len(GRID)):
        p = STEPS if want[i] < 0 else want[i]
        np.testing.assert_allclose(res.loss[i, :p], unpruned.loss[i, :p], rtol=1e-5)
        np.testing.assert_allclose(res.lr[i, :p], unpruned.lr[i, :p], rtol=1e-6)
        assert np.isnan(res.loss[i, p:]).all() and np.isnan(res.lr[i, p:]).all()
        ev = res.eval_steps <= p
        np.testing.assert_allclose(res.eval[i, ev], unpruned.eval[i, ev], rtol=1e-5)
        assert np.isnan(res.eval[i, ~ev]).all()
        assert res.diverged[i] == (0 <= unpruned.diverged_at[i] < p)
        if want[i] < 0:  # a survivor's final state is the unpruned one
            chex.assert_trees_all_close(res.params(i), unpruned.params(i), rtol=1e-5)
    best = res.best(by="eval")
    assert res.pruned_at[best.index] == -1
    assert best.index == int(np.flatnonzero(want == -1)[np.argmin(unpruned.eval[want == -1, -1])])


def test_a_pruned_member_keeps_its_state_at_the_rung(pruned):
    res = pruned
    i = int(np.flatnonzero(res.pruned_at == 30)[0])
    solo = run(GRID.select(i), steps=30)  # member == solo run, stopped at the rung
    # atol: float32 rounding of a vmapped vs a solo run near 0 (params are ~0.1 in size)
    chex.assert_trees_all_close(res.params(i), solo.params(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res.loss[i, :30], solo.loss[0], rtol=1e-5)


def test_compaction_reclaims_compute_and_recompiles_once_per_size(built):
    """The chunk is traced once per batch size: 18 rows, then 6, then 2 (the optimizer is also
    built once each by the abstract check, the init program and the step-0 LR check); without
    pruning it is built four times in all."""
    calls = {"n": 0}

    def counting(hp):
        calls["n"] += 1
        return optimizer(hp)

    run(optimizer=counting)
    assert calls["n"] == 4
    calls["n"] = 0
    res = run(optimizer=counting, prune=BY_EVAL)
    assert calls["n"] == 4 + 2
    # the two smaller sizes were compiled ahead, in a background thread, and used
    fns = built[-1]
    assert sorted(fns.ahead) == [2, 6] and all(f.done() for f in fns.ahead.values())
    assert BY_EVAL.batch_sizes(GRID, STEPS, 4) == [8, 4]  # padded to 4 devices
    # the recorded member-steps are what ran: 18 x 10 + 6 x 20 + 2 x 60
    assert np.isfinite(res.loss).sum() <= 18 * 10 + 6 * 20 + 2 * 60


def test_ranking_by_seed_mean_ties_and_divergence():
    sh = jaxlr.successive_halving(10, 2)
    members = np.arange(8)
    settings = np.repeat(np.arange(4), 2)
    # setting 0 has the best single seed (0.1) but the worst mean; setting 3 diverged on one
    # seed and is out whatever its other seed; settings 1 and 2 tie: grid order decides
    scores = np.array([0.1, 9.0, 1.0, 2.0, 2.0, 1.0, 0.0, np.inf])
    np.testing.assert_array_equal(sh.survivors(members, scores, settings), [2, 3, 4, 5])
    # keep at least one setting, even when every member diverged
    np.testing.assert_array_equal(
        jaxlr.successive_halving(10, 3).survivors(members[:2], np.full(2, np.inf),
                                                  settings[:2]), [0, 1])
    # ties between distinct settings with identical curves: the first in grid order stays
    g = jaxlr.Grid.zip(lr=[0.05, 0.05, 0.05], _tag=[0, 1, 2])  # _: a label, read by nobody
    res = run(g, steps=20, prune=jaxlr.successive_halving(10, 3))
    np.testing.assert_array_equal(res.pruned_at, [-1, 10, 10])


def test_rung_schedule_and_default_chunk():
    sh = jaxlr.successive_halving(min_steps=100, reduction_factor=3)
    assert isinstance(sh, SuccessiveHalving)
    assert sh.rungs(1000) == [100, 300, 900] and sh.rungs(900) == [100, 300]
    assert sh.rungs(100) == []
    # no rung before the end: nothing is pruned, the result is the unpruned one
    res = run(jaxlr.grid(lr=[0.01, 0.1]), steps=10, prune=jaxlr.successive_halving(10, 3))
    assert (res.pruned_at == -1).all()


def test_resume_after_a_kill_equals_the_uninterrupted_run(pruned, tmp_path, monkeypatch):
    prune, whole = BY_EVAL, pruned
    real_save = _checkpoint.save
    for stop in (2, 4):  # killed before the 30-step rung, and after it (rows compacted)
        d = tmp_path / f"stop{stop}"

        def save(directory, chunk, *args, stop=stop):
            if chunk == stop:
                raise KeyboardInterrupt
            real_save(directory, chunk, *args)

        monkeypatch.setattr(_checkpoint, "save", save)
        with pytest.raises(KeyboardInterrupt):
            run(prune=prune, chunk_size=10, checkpoint=d)
        monkeypatch.setattr(_checkpoint, "save", real_save)
        resumed = run(prune=prune, chunk_size=10, checkpoint=d)
        np.testing.assert_array_equal(resumed.pruned_at, whole.pruned_at)
        np.testing.assert_array_equal(resumed.loss, whole.loss)
        np.testing.assert_array_equal(resumed.eval, whole.eval)
        for i in (0, int(np.flatnonzero(whole.pruned_at == -1)[0])):
            chex.assert_trees_all_equal(resumed.params(i), whole.params(i))


def test_result_records_table_and_diagnosis(pruned, tmp_path):
    res = pruned
    table = res.table()
    assert "pruned at" in table.splitlines()[0]
    summary = res.save(tmp_path)
    assert summary["pruned"] == 16
    back = jaxlr.load(tmp_path)
    np.testing.assert_array_equal(back.pruned_at, res.pruned_at)
    assert "pruned_at" in res.to_dict()
    labels = res.diagnose()
    for i, d in enumerate(labels):
        if res.pruned_at[i] == 10:  # fewer steps than a trend needs
            assert d.label == "pruned" and "too short to judge" in d.reason
        elif res.pruned_at[i] == 30:
            assert d.reason.startswith("pruned at step 30") and d.evidence["pruned_at"] == 30
        else:
            assert "pruned" not in d.reason


def test_pruned_settings_are_tabulated_and_drawn_at_their_rung_never_as_diverged(pruned,
                                                                               unpruned):
    """A pruned member's value is its evaluation at its rung; the unpruned sweep ran the same
    member identically up to there, so its eval at that step is the reference. The table and
    the plot show that value (hollow squares, gid "pruned"); the red diverged markers are
    for the settings with a diverged seed only."""
    import matplotlib

    matplotlib.use("Agg")
    from jaxlr._plot import plot_sweep
    from jaxlr._records import summarize

    res, settings = pruned, GRID.settings()
    stopped = [s for s in np.unique(settings) if (res.pruned_at[settings == s] >= 0).all()
               and not res.diverged[settings == s].any()]
    assert len(stopped) >= 4
    expected = {}
    for s in stopped:
        idx = np.flatnonzero(settings == s)
        col = list(unpruned.eval_steps).index(int(res.pruned_at[idx[0]]))
        expected[float(LRS[s])] = float(np.mean(unpruned.eval[idx, col]))
    first = settings == stopped[0]
    rung = list(unpruned.eval_steps).index(int(res.pruned_at[first][0]))
    np.testing.assert_allclose(res.at_stop("eval")[first], unpruned.eval[first, rung],
                               rtol=1e-5)
    rows = {row["hparams"]["lr"]: row for row in summarize(res)["rows"]}
    for lr, value in expected.items():
        (row,) = [r for k, r in rows.items() if k == pytest.approx(lr, rel=1e-6)]
        assert row["metrics"]["eval loss"]["mean"] == pytest.approx(value, rel=1e-5)
    ax = panels_of(plot_sweep(res))[1]
    drawn = {float(x): float(y) for line in by_gid(ax, "pruned")
             for x, y in zip(line.get_xdata(), line.get_ydata())}
    assert sorted(drawn) == pytest.approx(sorted(expected), rel=1e-6)
    for lr, value in expected.items():
        assert drawn[min(drawn, key=lambda x: abs(x - lr))] == pytest.approx(value, rel=1e-5)
    diverged_settings = {s for s in settings[res.diverged]}
    marks = sum(len(line.get_xdata()) for line in by_gid(ax, "diverged"))
    assert marks == len(diverged_settings)


def panels_of(fig):
    return [a for a in fig.axes if a.get_label() != "<colorbar>"]


def by_gid(ax, gid):
    return [line for line in ax.lines if line.get_gid() == gid]


@pytest.mark.parametrize("call,match", [
    (lambda: jaxlr.successive_halving(min_steps=0), "min_steps must be > 0"),
    (lambda: jaxlr.successive_halving(reduction_factor=1), "reduction_factor must be an integer"),
    (lambda: jaxlr.successive_halving(reduction_factor=2.5), "reduction_factor must be an int"),
    (lambda: jaxlr.successive_halving(reduction_factor=True), "reduction_factor must be an int"),
    (lambda: jaxlr.successive_halving(mode="up"), "mode must be 'min' or 'max'"),
    (lambda: run(prune="halving"), "prune must be jaxlr.successive_halving"),
    (lambda: run(prune=jaxlr.successive_halving(10), eval_every=9, chunk_size=3),
     "chunk_size must divide prune's min_steps"),
    (lambda: jaxlr.sweep(init_mlp, loss_fn, DATA, optimizer, GRID, steps=30, batch_size=16,
                         prune=jaxlr.successive_halving(10, by="eval"), progress=False),
     "pass eval_data= and an eval_every that divides min_steps"),
    (lambda: run(prune=jaxlr.successive_halving(10, by="eval"), eval_every=4, chunk_size=2),
     "eval_every that divides min_steps"),
    (lambda: run(prune=jaxlr.successive_halving(10, by="accuracy")),
     r"aux metrics \['r2'\], got by='accuracy'"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


class DropNet(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(4, 8, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.l2 = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(nnx.relu(self.l1(x))))[:, 0]


def test_nnx_model_with_rng_state():
    def nnx_loss(model, batch):
        return jnp.mean((model(batch[0]) - batch[1]) ** 2)

    g = jaxlr.grid(lr=[1e-3, 1e-2, 3e-2], seed=2)
    kw = dict(steps=30, batch_size=16, progress=False)
    args = (lambda key: DropNet(nnx.Rngs(key)), nnx_loss, DATA, lambda hp: jaxlr.adam(hp["lr"]),
            g)
    full = jaxlr.sweep(*args, **kw)
    res = jaxlr.sweep(*args, prune=jaxlr.successive_halving(10, 3), **kw)
    assert (res.pruned_at == -1).sum() == 2
    i = int(np.flatnonzero(res.pruned_at == -1)[0])
    np.testing.assert_allclose(res.loss[i], full.loss[i], rtol=1e-5)
    assert isinstance(res.params(i), DropNet) and isinstance(res.params(0), DropNet)
    chex.assert_trees_all_close(nnx.state(res.params(i), nnx.Param),
                                nnx.state(full.params(i), nnx.Param), rtol=1e-5)
