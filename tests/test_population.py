"""Population-based training inside the sweep: the exploit/explore rule against its written-out
definition, the lineage replayed by a hand-written optax loop, revival, no recompilation,
resume, records."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlr
from jaxlr._sweep import checkpoint as _checkpoint
from jaxlr._sweep.population import exploit_explore

N = 96
X = jax.random.normal(jax.random.key(0), (N, 4), jnp.float32)  # float32 under x64 too
Y = (jnp.tanh(X @ jnp.array([1.0, -2.0, 0.5, 0.0], jnp.float32))
     + 0.1 * jax.random.normal(jax.random.key(1), (N,), jnp.float32))
DATA = (X, Y)
LRS = np.logspace(-3.5, -0.5, 8).astype(np.float32)
STEPS, INTERVAL = 60, 15  # rounds at 15, 30, 45


def init_mlp(key):
    k1, k2 = jax.random.split(key)
    return {"w1": 0.5 * jax.random.normal(k1, (4, 8), jnp.float32),
            "b1": jnp.zeros(8, jnp.float32),
            "w2": 0.5 * jax.random.normal(k2, (8,), jnp.float32),
            "b2": jnp.zeros((), jnp.float32)}


def loss_fn(p, batch):
    x, y = batch
    pred = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return jnp.mean((pred - y) ** 2)


def optimizer(hp):
    return jaxlr.adam(hp["lr"])


PBT = jaxlr.population_based(INTERVAL, fraction=0.25, resample=0.25, seed=1)


def run(policy=PBT, grid=None, batch_size=16, **kw):
    kw.setdefault("progress", False)
    return jaxlr.sweep(init_mlp, loss_fn, DATA, kw.pop("optimizer", optimizer),
                       jaxlr.grid(lr=LRS) if grid is None else grid, steps=STEPS,
                       batch_size=batch_size, policy=policy, **kw)


@pytest.fixture(scope="module")
def full_batch():
    """One seed, every batch the whole data set: a lineage is one run with its LR trajectory
    (up to the summation order of a permuted batch)."""
    return run(batch_size=N)


class Rule:
    def __init__(self, fraction=0.25, perturb=(0.8, 1.25), resample=0.0):
        self.fraction, self.perturb, self.resample = fraction, perturb, resample


# --- the rule, written out -----------------------------------------------------------------
@pytest.mark.parametrize("n,fraction", [(8, 0.25), (3, 0.5), (10, 0.25), (2, 0.25), (1, 0.25),
                                        (7, 0.5)])
def test_quantile_size_is_ray_tunes_rule(n, fraction):
    # Ray Tune PopulationBasedTraining._quantiles: ceil(n * fraction), at most floor(n / 2)
    q = math.ceil(n * fraction)
    q = math.floor(n / 2) if q > n / 2 else q
    scores = np.arange(n, dtype=float)  # member 0 is the best
    parents, _ = exploit_explore(scores, {}, {}, Rule(fraction), np.random.default_rng(0))
    copied = np.flatnonzero(parents != np.arange(n))
    np.testing.assert_array_equal(copied, np.arange(n - q, n))  # the bottom q, no one else
    assert set(parents[copied].tolist()) <= set(range(q))  # from the top q


def test_diverged_members_are_always_copied_and_never_donate():
    # q = 2, three diverged members: they rank last, so the bottom two are diverged ones, and
    # the third is copied too; the finite member ranked 6th of 8 (score 6) is not
    scores = np.array([0.0, 1.0, np.inf, 3.0, 4.0, np.inf, 6.0, np.inf])
    parents, _ = exploit_explore(scores, {}, {}, Rule(), np.random.default_rng(0))
    np.testing.assert_array_equal(np.flatnonzero(parents != np.arange(8)), [2, 5, 7])
    assert set(parents[[2, 5, 7]].tolist()) <= {0, 1}  # donors: the top two
    # every member diverged: nobody to copy from, nothing changes
    parents, _ = exploit_explore(np.full(4, np.inf), {}, {}, Rule(), np.random.default_rng(0))
    np.testing.assert_array_equal(parents, np.arange(4))
    # ties: the lower index ranks first
    parents, _ = exploit_explore(np.zeros(4), {}, {}, Rule(0.25), np.random.default_rng(0))
    np.testing.assert_array_equal(parents, [0, 1, 2, 0])


def test_explore_perturbs_clips_resamples_and_keeps_integers():
    scores = np.arange(4, dtype=float)  # q = 1: member 3 copies member 0
    grid_lr = np.array([0.1, 0.2, 0.4, 0.8], np.float32)
    grid_k = np.array([1, 2, 4, 8], np.int32)
    values = {"lr": grid_lr.copy(), "k": np.array([4, 2, 1, 8], np.int32)}
    choices = {"lr": grid_lr, "k": grid_k}

    def explore(perturb, resample, seed=0):
        return exploit_explore(scores, values, choices, Rule(0.25, perturb, resample),
                               np.random.default_rng(seed))[1]

    new = explore((2.0,), 0.0)  # the parent's values times 2
    np.testing.assert_allclose(new["lr"], [0.1, 0.2, 0.4, 0.2])
    np.testing.assert_array_equal(new["k"], [4, 2, 1, 8])  # 4 * 2 = 8, an integer
    assert new["k"].dtype == np.int32 and new["lr"].dtype == np.float32
    new = explore((0.8,), 0.0)  # 4 * 0.8 = 3.2 -> 3 (rounded); 0.1 * 0.8 -> clipped to 0.1
    assert new["k"][3] == 3 and new["lr"][3] == np.float32(0.1)
    new = explore((100.0,), 0.0)  # clipped to the grid's largest value
    assert new["lr"][3] == np.float32(0.8) and new["k"][3] == 8
    # resample=1: the value is one of the grid's, and over seeds every one comes up
    drawn = {float(explore((2.0,), 1.0, seed)["lr"][3]) for seed in range(40)}
    assert drawn == set(grid_lr.tolist())


# --- the sweep ------------------------------------------------------------------------------
def test_a_lineage_is_a_run_with_the_lr_trajectory_it_followed(full_batch):
    """The best slot's lineage, replayed by a hand-written optax loop with the schedule it
    followed (``result.schedule``): every exploit copied params AND Adam's moments, every
    explore changed the LR the next updates used."""
    res = full_batch
    best = res.best(by="loss").index
    segments = res.lineage(best)
    assert len(segments) >= 2 and segments[0].slot != best  # this seeded run copied into it
    lr = res.schedule(best)
    params = init_mlp(jax.random.key(0))  # every slot has seed 0
    opt = optax.adam(learning_rate=lr)  # the reference: optax's Adam, the schedule as its LR
    state = opt.init(params)
    losses = []
    for _ in range(STEPS):
        loss, g = jax.value_and_grad(loss_fn)(params, DATA)
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
        losses.append(float(loss))
    along = np.concatenate([res.loss[s.slot, s.start:s.end] for s in segments])
    # rtol: the sweep sums each full batch in a permuted order (float32 rounding, ~1e-7 per
    # step, grown over 60 Adam steps); measured max relative difference ~2e-6
    np.testing.assert_allclose(along, losses, rtol=2e-5)
    chex.assert_trees_all_close(res.params(best), params, rtol=2e-4, atol=1e-6)
    # the explored LR of each segment is the one its updates used (a constant-LR optimizer)
    for s in segments:
        np.testing.assert_array_equal(res.lr[s.slot, s.start:s.end], np.float32(s.hparams["lr"]))


def test_the_schedule_replays_the_lineage_in_a_sweep_on_minibatches():
    """With mini-batches and one seed every slot sees the same batches: retraining one member
    with the lineage's schedule reproduces the PBT member (float tolerance)."""
    res = run()
    best = res.best(by="loss").index
    retrain = jaxlr.sweep(init_mlp, loss_fn, DATA, lambda hp: jaxlr.adam(res.schedule(best)),
                          jaxlr.grid(_run=[0]), steps=STEPS, batch_size=16, progress=False)
    along = np.concatenate([res.loss[s.slot, s.start:s.end] for s in res.lineage(best)])
    # float tolerance of an 8-member vs a 1-member program (other XLA kernels): measured
    # 2e-7 absolute on params of size ~1
    np.testing.assert_allclose(retrain.loss[0], along, rtol=1e-5)
    chex.assert_trees_all_close(retrain.params(0), res.params(best), rtol=1e-5, atol=1e-6)


def test_a_diverged_member_is_revived_by_the_copy_and_history_says_so():
    res = run(grid=jaxlr.grid(lr=[1e-3, 3e-3, 1e-2, 40.0]),
              optimizer=lambda hp: jaxlr.sgd(hp["lr"]))
    h = res.history
    assert res.diverged_at[3] == -1 and not res.diverged[3]  # revived at step 15
    assert not h["history_alive"][0, 3] and h["history_parents"][0, 3] != 3
    assert h["history_hp_lr"][0, 3] <= 1e-2  # a donor's LR, explored, within the grid range
    assert np.isfinite(res.loss[3, INTERVAL:]).all() and np.isnan(res.loss[3, 5:INTERVAL]).any()


def test_rounds_compile_no_program_of_their_own(compiles):
    """From cold caches, PBT compiles the same programs as the same sweep without a policy
    (its rounds' row copy is the first thing of the next chunk, inside the chunk program: no
    program of its own); a repeated call compiles nothing."""
    jax.clear_caches()  # JAX's own caches too: earlier tests compiled these programs
    jaxlr.clear_caches()
    run(policy=None, chunk_size=INTERVAL)
    plain = dict(compiles)
    assert plain["jit(run_chunk)"] == 1
    compiles.clear()
    jax.clear_caches()
    jaxlr.clear_caches()
    res = run()
    assert list(res.history["history_steps"]) == [15, 30, 45] and res.copied()
    assert dict(compiles) == plain
    compiles.clear()
    run()
    assert dict(compiles) == {}


def test_resume_after_a_kill_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    whole = run(chunk_size=INTERVAL)
    real_save = _checkpoint.save
    d = tmp_path / "ckpt"

    def save(directory, chunk, *args):
        if chunk == 2:  # after two rounds: explored hparams and a history to restore
            raise KeyboardInterrupt
        real_save(directory, chunk, *args)

    monkeypatch.setattr(_checkpoint, "save", save)
    with pytest.raises(KeyboardInterrupt):
        run(chunk_size=INTERVAL, checkpoint=d)
    monkeypatch.setattr(_checkpoint, "save", real_save)
    resumed = run(chunk_size=INTERVAL, checkpoint=d)
    np.testing.assert_array_equal(resumed.loss, whole.loss)
    for k, v in whole.history.items():
        np.testing.assert_array_equal(resumed.history[k], v)
    chex.assert_trees_all_equal(resumed.params(3), whole.params(3))


def test_ranking_by_eval_and_the_records(tmp_path):
    res = run(policy=jaxlr.population_based(INTERVAL, by="eval", seed=1), eval_data=DATA,
              eval_every=INTERVAL)
    assert list(res.history["history_steps"]) == [15, 30, 45]
    # by eval: the donors at step 15 are the two best eval losses at step 15
    donors = set(res.history["history_parents"][0][res.history["history_parents"][0]
                                                   != np.arange(8)].tolist())
    assert donors <= set(np.argsort(res.eval[:, 0])[:2].tolist())
    table = res.table().splitlines()
    assert table[0].split()[:3] == ["slot", "lr", "start"]
    best = res.best()
    assert best.hparams["lr"] == pytest.approx(float(res.final_hparams()["lr"][best.index]))
    with pytest.raises(ValueError, match="over='seed'"):
        res.best(over="seed")
    res.save(tmp_path)
    back = jaxlr.load(tmp_path)
    assert back.lineage(best.index) == res.lineage(best.index)
    assert back.table() == res.table()


@pytest.mark.parametrize("call,match", [
    (lambda: jaxlr.population_based(0), "interval must be > 0"),
    (lambda: jaxlr.population_based(10, fraction=0.6), "fraction must be <= 0.5"),
    (lambda: jaxlr.population_based(10, resample=1.5), "resample must be <= 1"),
    (lambda: jaxlr.population_based(10, perturb=(0.8, -1.0)), "perturb must be"),
    (lambda: jaxlr.population_based(10, axes=["seed"]), "axes must not hold 'seed'"),
    (lambda: jaxlr.population_based(10, mode="up"), "mode must be 'min' or 'max'"),
    (lambda: run(policy=jaxlr.population_based(10), chunk_size=15),
     "chunk_size must divide policy's interval"),
    (lambda: run(policy=jaxlr.population_based(15, by="eval")), "pass eval_data="),
    (lambda: run(policy="pbt"), "policy must be jaxlr.successive_halving"),
    (lambda: run(prune=jaxlr.successive_halving(15)), "give prune= or policy=, not both"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_rounds():
    assert jaxlr.population_based(25, burn_in=40).rounds(120) == [50, 75, 100]
    assert jaxlr.population_based(25).rounds(100) == [25, 50, 75]


def test_exploit_is_an_exact_copy_and_leaves_the_others_untouched():
    """SGD whose LR is 0 from the round on (x - 0 * g == x exactly): the final params are those
    right after the exploit step. A copied slot holds its source's params bit for bit; every
    other slot holds what the same program without the policy left, bit for bit."""
    frozen = lambda hp: jaxlr.sgd(lambda t: hp["lr"] * (t < INTERVAL), momentum=0.9)
    kw = dict(grid=jaxlr.grid(lr=LRS), optimizer=frozen, chunk_size=INTERVAL)
    res = run(policy=jaxlr.population_based(INTERVAL, seed=1), **kw)
    plain = run(policy=None, **kw)
    parents = res.history["history_parents"]
    assert (parents != np.arange(len(LRS))).sum(axis=1).tolist() == [2, 2, 2]  # q = 2 a round
    for i in range(len(LRS)):  # three rounds of copies of frozen states: the lineage's origin
        origin = res.lineage(i)[0].slot
        chex.assert_trees_all_equal(res.params(i), plain.params(origin))
    assert {res.lineage(i)[0].slot for i in range(len(LRS))} != set(range(len(LRS)))


def test_on_noisy_least_squares_pbt_discovers_a_decay_that_beats_every_constant_lr():
    """Minibatch SGD on least squares with label noise and a fixed budget: a constant LR trades
    speed for its noise floor (the stationary excess loss grows with the LR), so a decaying
    schedule beats the best constant one (shown here with cosine decay). PBT started from the
    same 16 constant LRs beats every one of them and its best lineage's LR decays. (The policy
    seed, 3, was not among those tried while writing the test.)"""
    n, d = 1024, 16
    x = jax.random.normal(jax.random.key(0), (n, d), jnp.float32)
    y = (x @ jax.random.normal(jax.random.key(1), (d,), jnp.float32)
         + jax.random.normal(jax.random.key(2), (n,), jnp.float32))
    data = (x, y)
    loss = lambda p, b: 0.5 * jnp.mean((b[0] @ p - b[1]) ** 2)
    g = jaxlr.grid(lr=np.logspace(-2.5, -0.5, 16))
    kw = dict(steps=400, batch_size=4, progress=False, eval_data=data, eval_every=25)
    init = lambda k: jnp.zeros(d, jnp.float32)
    constant = jaxlr.sweep(init, loss, data, lambda hp: jaxlr.sgd(hp["lr"]), g, **kw)
    cosine = jaxlr.sweep(init, loss, data,
                         lambda hp: jaxlr.sgd(jaxlr.cosine_decay(hp["lr"], 400)), g, **kw)
    best_constant = np.nanmin(constant.eval[:, -1])
    assert np.nanmin(cosine.eval[:, -1]) < best_constant  # the problem rewards a decay
    pbt = jaxlr.sweep(init, loss, data, lambda hp: jaxlr.sgd(hp["lr"]), g,
                      policy=jaxlr.population_based(25, by="eval", seed=3), **kw)
    best = pbt.best()
    assert best.value < best_constant
    lr = np.asarray(pbt.schedule(best.index)(jnp.arange(400)))
    assert lr[300:].mean() < lr[:100].mean() and lr[-1] < lr[0]


def test_the_schedule_composes_the_base_schedule_with_the_explored_scale():
    """A grid axis that scales a cosine schedule: the lineage's schedule is the LR each update
    used (cosine shape x the explored scale of each segment), not a piecewise constant."""
    cosine = lambda hp: jaxlr.adam(jaxlr.cosine_decay(hp["lr"], STEPS))
    res = run(optimizer=cosine)
    best = res.best(by="loss").index
    segments = res.lineage(best)
    assert len(segments) >= 2
    got = np.asarray(res.schedule(best)(np.arange(STEPS)))
    t = np.arange(STEPS)
    want = np.concatenate([s.hparams["lr"] * 0.5 * (1 + np.cos(np.pi * t[s.start:s.end] / STEPS))
                           for s in segments])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)  # float32 cos near 0
    retrain = jaxlr.sweep(init_mlp, loss_fn, DATA, lambda hp: jaxlr.adam(res.schedule(best)),
                          jaxlr.grid(_run=[0]), steps=STEPS, batch_size=16, progress=False)
    along = np.concatenate([res.loss[s.slot, s.start:s.end] for s in segments])
    np.testing.assert_allclose(retrain.loss[0], along, rtol=1e-5)
