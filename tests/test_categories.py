"""Categorical grid axes: optimizer(hp) receives the category as a Python string; every member
equals its solo run; results in grid order; records, diagnosis and PBT within a category."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlr

X = jax.random.normal(jax.random.key(0), (64, 3), jnp.float32)  # float32 under x64 too
Y = X @ jnp.array([1.0, -2.0, 0.5], jnp.float32)
DATA = (X, Y)
OPTIMIZERS = {"adam": jaxlr.adam, "sgd": jaxlr.sgd, "prodigy": jaxlr.prodigy}
GRID = jaxlr.grid(optimizer=["adam", "sgd", "prodigy"], lr=[0.01, 0.1], seed=2)  # M = 12


def loss_fn(w, b):
    return jnp.mean((b[0] @ w - b[1]) ** 2)


def opt(hp):
    assert isinstance(hp["optimizer"], str)  # a Python value, so this dict lookup works
    return OPTIMIZERS[hp["optimizer"]](hp["lr"])


def init(key):
    return 0.1 * jax.random.normal(key, (3,), jnp.float32)


def run(grid=GRID, optimizer=opt, **kw):
    kw.setdefault("progress", False)
    return jaxlr.sweep(init, loss_fn, DATA, optimizer, grid, steps=30, batch_size=16,
                       eval_data=DATA, eval_every=10, **kw)


@pytest.fixture(scope="module")
def swept():
    return run()


def test_every_member_equals_its_solo_run(swept):
    assert swept.hparams["optimizer"].tolist() == GRID.columns["optimizer"].tolist()
    for i in (0, 5, 6, 11):  # adam, sgd and prodigy members, both seeds
        hp = GRID[i]
        solo = jaxlr.sweep(init, loss_fn, DATA,
                           lambda h, name=hp["optimizer"]: OPTIMIZERS[name](h["lr"]),
                           jaxlr.grid(lr=[hp["lr"]], seed=[hp["seed"]]), steps=30,
                           batch_size=16, progress=False, eval_data=DATA, eval_every=10)
        np.testing.assert_allclose(swept.loss[i], solo.loss[0], rtol=1e-5)
        np.testing.assert_allclose(swept.eval[i], solo.eval[0], rtol=1e-5)
        chex.assert_trees_all_close(swept.params(i), solo.params(0), rtol=1e-5, atol=1e-7)


def test_the_recorded_lr_of_each_category_is_its_own(swept):
    adam, prodigy = 1, 11  # member 1: adam lr 0.01 seed 1; member 11: prodigy lr 0.1 seed 1
    np.testing.assert_allclose(swept.lr[adam], 0.01)
    # prodigy records d*lr: d starts at 1e-6 and grows (slowly at this LR, ~9% in 30 steps)
    np.testing.assert_allclose(swept.lr[prodigy][0], 1e-6 * 0.1, rtol=1e-5)
    assert swept.lr[prodigy][-1] > 1.05 * swept.lr[prodigy][0]


def test_against_a_hand_written_optax_loop_on_full_batches():
    """Interleaved categories (rows: the adam block, then the sgd block, so member 1 is not in
    row 1), one program of one chunk: each member's curve and final params are optax's."""
    g = jaxlr.Grid.zip(optimizer=["adam", "sgd", "adam"], lr=[0.05, 0.05, 0.02])
    res = jaxlr.sweep(lambda k: jnp.zeros(3, jnp.float32), loss_fn, DATA, opt, g, steps=10,
                      batch_size=64, progress=False)
    for i, tx in enumerate([optax.adam(0.05), optax.sgd(0.05), optax.adam(0.02)]):
        w, state, losses = jnp.zeros(3, jnp.float32), tx.init(jnp.zeros(3, jnp.float32)), []
        for _ in range(10):
            loss, grad = jax.value_and_grad(loss_fn)(w, DATA)
            updates, state = tx.update(grad, state, w)
            w, losses = optax.apply_updates(w, updates), losses + [float(loss)]
        np.testing.assert_allclose(res.loss[i], losses, rtol=2e-5)
        np.testing.assert_allclose(res.params(i), w, rtol=2e-5)


def test_table_best_diagnosis_and_records_handle_categories(swept, tmp_path):
    table = swept.table().splitlines()
    end = next(i for i, line in enumerate(table) if line.startswith("recommended: "))
    assert table[0].split()[:2] == ["optimizer", "lr"] and end == 2 + 6  # a row per setting
    best = swept.best()
    assert best.hparams["optimizer"] in OPTIMIZERS
    (starred,) = [line.split() for line in table[2:end] if line.startswith("*")]
    assert starred[1:3] == [best.hparams["optimizer"], f"{best.hparams['lr']:.4g}"]
    labels = swept.diagnose()
    assert len(labels) == 12
    swept.save(tmp_path)
    back = jaxlr.load(tmp_path)
    assert back.hparams["optimizer"].tolist() == GRID.columns["optimizer"].tolist()
    assert back.table() == swept.table()


def test_one_trace_per_category():
    calls = {}

    def counting(hp):
        calls[hp["optimizer"]] = calls.get(hp["optimizer"], 0) + 1
        return opt(hp)

    run(optimizer=counting)
    # per category: the abstract check, init, the step-0 LR check, the chunk
    assert calls == {"adam": 4, "sgd": 4, "prodigy": 4}


def test_population_based_training_stays_within_a_category():
    res = run(grid=jaxlr.grid(optimizer=["adam", "sgd"], lr=[1e-3, 1e-2, 0.1, 0.3]),
              policy=jaxlr.population_based(10, fraction=0.5, by="eval"))
    assert res.copied()
    for i in range(8):
        for seg in res.lineage(i):
            assert res.hparams["optimizer"][seg.slot] == res.hparams["optimizer"][i]


def test_one_compiled_program_for_every_category(compiles):
    """The categories are blocks of ONE scanned chunk program (compiled once), not a program
    per category."""
    jaxlr.clear_caches()
    run()
    assert compiles["jit(run_chunk)"] == 1


def test_halving_ranks_across_categories_and_compacts_within_them(swept):
    """Successive halving by hand on the unpruned sweep (a setting's score: the mean eval over
    its seeds at the rung, diverged last; keep the best floor(6 / 3) = 2 of the 6 settings,
    whatever their category): at least one category loses every member (its block of rows
    becomes empty); the survivors equal the unpruned sweep."""
    pruned = run(prune=jaxlr.successive_halving(10, 3, by="eval"))
    settings = GRID.settings()
    at10 = swept.eval[:, list(swept.eval_steps).index(10)].astype(np.float64)
    means = {s: at10[settings == s].mean() for s in np.unique(settings)}
    keep = sorted(means, key=lambda s: (means[s], s))[:2]
    want = np.where(np.isin(settings, keep), -1, 10)
    np.testing.assert_array_equal(pruned.pruned_at, want)
    survivors = set(GRID.columns["optimizer"][want < 0].tolist())
    assert len(survivors) < 3  # a category pruned entirely
    for i in np.flatnonzero(want < 0):
        np.testing.assert_allclose(pruned.loss[i], swept.loss[i], rtol=1e-5)
        chex.assert_trees_all_close(pruned.params(i), swept.params(i), rtol=1e-5, atol=1e-7)
    for i in np.flatnonzero(want >= 0):
        np.testing.assert_allclose(pruned.loss[i, :10], swept.loss[i, :10], rtol=1e-5)
        assert np.isnan(pruned.loss[i, 10:]).all()


@pytest.mark.parametrize("policy", [jaxlr.successive_halving(10, 3, by="eval"),
                                    jaxlr.population_based(10, fraction=0.5, by="eval")])
def test_resume_with_categories_after_a_kill_equals_the_uninterrupted_run(policy, tmp_path,
                                                                          monkeypatch):
    """Killed after the rung or round at step 10 (halving: the blocks compacted, one emptied;
    PBT: rows copied within categories), resumed: the same result, bit for bit."""
    from jaxlr._sweep import checkpoint as _checkpoint

    whole = run(policy=policy)
    real_save = _checkpoint.save

    def save(directory, chunk, *args):
        if chunk == 2:
            raise KeyboardInterrupt
        real_save(directory, chunk, *args)

    monkeypatch.setattr(_checkpoint, "save", save)
    with pytest.raises(KeyboardInterrupt):
        run(policy=policy, checkpoint=tmp_path)
    monkeypatch.setattr(_checkpoint, "save", real_save)
    resumed = run(policy=policy, checkpoint=tmp_path)
    np.testing.assert_array_equal(resumed.pruned_at, whole.pruned_at)
    for k, v in whole.history.items():
        np.testing.assert_array_equal(resumed.history[k], v)
    np.testing.assert_array_equal(resumed.loss, whole.loss)
    np.testing.assert_array_equal(resumed.eval, whole.eval)
    for i in range(len(GRID)):
        chex.assert_trees_all_equal(resumed.params(i), whole.params(i))


def test_compare_reports_each_category_against_a_hand_computed_summary():
    """Hand-made curves: adam's best is lr 0.1 (mean 1.0 over seeds), its lr 0.01 within 10%
    (1.05) is in the basin, lr 1 (2.0) is not; prodigy (one setting) is 20% worse and its
    effective LR settled at 2e-3 (mean of the last 10% of its recorded LR)."""
    grid = jaxlr.grid(optimizer=["adam", "prodigy"], lr=[0.01, 0.1, 1.0], seed=2)
    final = {("adam", 0.01): 1.05, ("adam", 0.1): 1.0, ("adam", 1.0): 2.0,
             ("prodigy", 0.01): 1.2, ("prodigy", 0.1): 1.2, ("prodigy", 1.0): 1.2}
    m, steps = len(grid), 20
    loss = np.zeros((m, steps))
    lr = np.zeros((m, steps))
    for i in range(m):
        hp = grid[i]
        loss[i] = final[(hp["optimizer"], hp["lr"])]
        lr[i] = hp["lr"] if hp["optimizer"] == "adam" else np.linspace(1e-6, 2e-3, steps)
    lr[6:, -2:] = 2e-3  # the last 10% (2 steps) of prodigy's effective LR
    res = jaxlr.SweepResult(grid=grid, loss=loss, lr=lr, eval=None, eval_aux={},
                            eval_steps=None, diverged=np.zeros(m, bool),
                            diverged_at=np.full(m, -1))
    adam, prodigy = res.compare(by="loss")
    assert (adam.category, adam.setting, adam.value, adam.gap) == ("adam", {"lr": 0.1}, 1.0, 0)
    assert adam.basin == pytest.approx((0.01, 0.1)) and adam.lr == pytest.approx(0.1)
    assert prodigy.gap == pytest.approx(0.2) and prodigy.lr == pytest.approx(2e-3)
    text = res.compare(by="loss", text=True).splitlines()
    assert text[0].startswith("adam: loss 1 (the best); LR at the end 0.1; basin within 10%")
    assert text[1].startswith("prodigy: loss 1.2 (+20.0% vs adam); LR at the end 0.002")
