"""The vectorized sweep: member == solo run, one compile, quarantine, devices, chunks, models."""

import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx

import jaxlr
from jaxlr._sweep import compiled as _compile
from jaxlr._sweep import member as _member
from jaxlr._sweep import plan as _plan

# tiny regression data: 96 examples, 4 features
# float32 throughout (explicit dtypes): under JAX_ENABLE_X64=1 the same experiment runs
X = jax.random.normal(jax.random.key(0), (96, 4), jnp.float32)
W_TRUE = jnp.array([1.0, -2.0, 0.5, 0.0], jnp.float32)
Y = X @ W_TRUE + 0.1 * jax.random.normal(jax.random.key(1), (96,), jnp.float32)
DATA = (X, Y)


def init_linear(key):
    return {"w": 0.1 * jax.random.normal(key, (4,), jnp.float32), "b": jnp.zeros((), jnp.float32)}


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def sgd_opt(hp):
    return jaxlr.sgd(hp["lr"], momentum=0.5)


def run(grid, steps=30, batch_size=16, **kw):
    kw.setdefault("progress", False)
    return jaxlr.sweep(init_linear, mse, DATA, kw.pop("optimizer", sgd_opt), grid, steps=steps,
                       batch_size=batch_size, **kw)


# --- 1. member == solo run == hand-written optax loop ---------------------------------------
def test_member_equals_solo_sweep():
    g = jaxlr.grid(lr=[0.01, 0.03, 0.1, 0.2], seed=3)
    full = run(g, chunk_size=10)
    assert len(g) == 12 and full.loss.shape == (12, 30)
    for i in (0, 5, 11):
        solo = run(g.select(i), chunk_size=10)
        np.testing.assert_allclose(full.loss[i], solo.loss[0], rtol=1e-5)
        chex.assert_trees_all_close(full.params(i), solo.params(0), rtol=1e-5)
    # seeds matter: same LR, different seeds -> different init and batches
    assert not np.allclose(full.loss[0], full.loss[1])


def test_member_equals_hand_written_optax_loop():
    """Full batch: the seed's shuffle only permutes the examples, the loss is the same."""
    g = jaxlr.grid(lr=[0.05, 0.2], seed=[4])
    res = run(g, steps=25, batch_size=96, optimizer=lambda hp: optax.adam(hp["lr"]))
    for i, lr in enumerate([0.05, 0.2]):
        params = init_linear(jax.random.key(4))  # documented: member starts at init(key(seed))
        opt = optax.adam(lr)
        state = opt.init(params)
        losses = []
        for _ in range(25):
            loss, grads = jax.value_and_grad(mse)(params, DATA)
            updates, state = opt.update(grads, state, params)
            params = optax.apply_updates(params, updates)
            losses.append(loss)
        np.testing.assert_allclose(res.loss[i], np.array(losses), rtol=1e-5)
        chex.assert_trees_all_close(res.params(i), params, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res.lr[i], np.nan)  # plain optax keeps no jaxlr LR state


# --- 2. one compile for the whole grid -------------------------------------------------------
def test_one_trace_for_a_grid_of_lr_warmup_and_decay_rate():
    calls = {"loss": 0, "opt": 0}

    def loss_fn(params, batch):
        calls["loss"] += 1
        return mse(params, batch)

    def optimizer(hp):
        calls["opt"] += 1
        sched = jaxlr.exponential_decay(hp["lr"], 5, hp["decay_rate"])
        return jaxlr.adam(jaxlr.warmup(sched, hp["warmup_steps"]))

    counts = []
    for g in (jaxlr.grid(lr=[0.01], warmup_steps=[0], decay_rate=[0.9]),
              jaxlr.grid(lr=[0.01, 0.1], warmup_steps=[0, 3, 10], decay_rate=[0.5, 0.9])):
        calls.update(loss=0, opt=0)
        res = jaxlr.sweep(init_linear, loss_fn, DATA, optimizer, g, steps=25, batch_size=16,
                          chunk_size=10, progress=False)  # 3 chunks, the last one padded
        counts.append(dict(calls))
        assert np.isfinite(res.loss).all()
    # loss_fn: one abstract check + ONE trace of the training chunk, whatever M or #chunks
    assert counts[0] == counts[1]
    assert counts[1]["loss"] == 2
    # members really differ in each swept hyperparameter
    assert len({tuple(r) for r in np.round(res.lr, 7)}) == 12


def test_every_call_traces_its_functions_again():
    """A repeated sweep of the same functions traces them again (so it sees what they read now:
    tests/test_program_cache.py), once for the abstract check and once for the chunk, and gives
    the same result; an nnx.Module instance likewise."""
    calls = {"loss": 0}

    def loss_fn(params, batch):
        calls["loss"] += 1
        return mse(params, batch)

    results = []
    for _ in range(2):
        calls["loss"] = 0
        results.append(jaxlr.sweep(init_linear, loss_fn, DATA, sgd_opt,
                                   jaxlr.grid(lr=[0.01, 0.1], seed=2), steps=20, batch_size=16,
                                   progress=False))
        assert calls["loss"] == 2
    np.testing.assert_array_equal(results[0].loss, results[1].loss)

    net = NNXNet(nnx.Rngs(0))
    for _ in range(2):
        calls["loss"] = 0
        jaxlr.sweep(net, lambda model, batch: (calls.__setitem__("loss", calls["loss"] + 1),
                                               nnx_loss(model, batch))[1], DATA,
                    lambda hp: jaxlr.sgd(hp["lr"]), jaxlr.grid(lr=[1e-2]), steps=3,
                    batch_size=96, progress=False)
        assert calls["loss"] == 2


# --- 3. divergence quarantine ----------------------------------------------------------------
def test_diverging_member_is_frozen_and_others_are_bit_identical():
    bad = run(jaxlr.grid(lr=[0.01, 0.1, 50.0, 0.05]), steps=40)
    good = run(jaxlr.grid(lr=[0.01, 0.1, 0.02, 0.05]), steps=40)
    assert bad.diverged.tolist() == [False, False, True, False]
    t = int(bad.diverged_at[2])
    assert 0 <= t < 40 and good.diverged_at.tolist() == [-1, -1, -1, -1]
    assert np.isnan(bad.loss[2, t + 1:]).all()
    for i in (0, 1, 3):  # bit-identical, not just close
        np.testing.assert_array_equal(bad.loss[i], good.loss[i])
        chex.assert_trees_all_equal(bad.params(i), good.params(i))
    frozen = bad.params(2)  # the last good state, finite
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(frozen))
    # and the same members without it (M=3) agree to float tolerance
    without = run(jaxlr.grid(lr=[0.01, 0.1, 0.05]), steps=40)
    np.testing.assert_allclose(bad.loss[[0, 1, 3]], without.loss, rtol=1e-6)
    assert bad.best(by="loss").hparams["lr"] != 50.0


def test_nan_loss_is_quarantined():
    def loss_fn(params, batch):  # NaN once w[0] is pushed above 0.5 (large LRs get there)
        return mse(params, batch) + jnp.sqrt(0.5 - params["w"][0]) * 0.0

    res = jaxlr.sweep(init_linear, loss_fn, DATA, sgd_opt, jaxlr.grid(lr=[0.001, 0.3]),
                      steps=30, batch_size=16, progress=False)
    assert res.diverged.tolist() == [False, True]
    assert np.isfinite(res.loss[0]).all()


def test_nan_gradient_with_finite_loss_freezes_at_that_step():
    """d/dw sqrt(max(0.5 - w0, 0)) is NaN once w0 > 0.5 while the loss term (x 0) stays 0: the
    member is frozen at the first step whose params have w0 > 0.5, keeping those (finite)
    params; that step's loss is recorded, finite."""
    def loss_fn(params, batch):
        return mse(params, batch) + 0.0 * jnp.sqrt(jnp.maximum(0.5 - params["w"][0], 0.0))

    g = jaxlr.grid(lr=[0.001, 0.3])
    res = jaxlr.sweep(init_linear, loss_fn, DATA, sgd_opt, g, steps=30, batch_size=16,
                      progress=False, chunk_size=10)
    plain = jaxlr.sweep(init_linear, mse, DATA, sgd_opt, g, steps=30, batch_size=16,
                        progress=False, chunk_size=10)
    assert res.diverged.tolist() == [False, True] and np.isfinite(res.loss[0]).all()
    t = int(res.diverged_at[1])
    # by hand: the same run without the extra term, stopped before t and at t
    before, at = (jaxlr.sweep(init_linear, mse, DATA, sgd_opt, g.select(1), steps=s,
                              batch_size=16, progress=False).params(0) for s in (t, t + 1))
    assert float(before["w"][0]) > 0.5  # step t's params: the first with w0 > 0.5 ...
    early = jaxlr.sweep(init_linear, mse, DATA, sgd_opt, g.select(1), steps=t - 1,
                        batch_size=16, progress=False).params(0)
    assert float(early["w"][0]) <= 0.5  # ... (step t-1's were not)
    chex.assert_trees_all_close(res.params(1), before, rtol=1e-6)  # frozen there, not after
    assert not np.allclose(np.asarray(at["w"]), np.asarray(before["w"]))
    np.testing.assert_allclose(res.loss[1, : t + 1], plain.loss[1, : t + 1], rtol=1e-6)
    assert np.isnan(res.loss[1, t + 1:]).all()


@pytest.mark.parametrize("via_dot", [True, False])
def test_tree_finite_flags_any_nonfinite_value_in_any_leaf(via_dot):
    """Both forms of the gradient check (a dot with ones on CPU, a reduction elsewhere), eager,
    jitted and vmapped: NaN, +inf or -inf anywhere in any float leaf is caught; int leaves are
    ignored; finite values whose sum overflows float32 (15 x 3e38) are not flagged."""
    tree = {"w": jnp.full((3, 5), 3e38, jnp.float32), "b": jnp.arange(4.0, dtype=jnp.bfloat16),
            "n": jnp.arange(3),
            # leaves of OWN_DOT values or more: on CPU each gets a dot of its own
            "big": jnp.full((_member.OWN_DOT + 7,), -3e38, jnp.float32),
            "mat": jnp.full((40, 33), 3e38, jnp.float32),
            "even": jnp.full((2048,), -3e38, jnp.float32)}
    check = jax.jit(lambda t: _member.tree_finite(t, via_dot))
    assert bool(_member.tree_finite(tree, via_dot)) and bool(check(tree))
    for leaf, where in (("w", (2, 4)), ("w", (0, 0)), ("b", (1,)), ("big", (0,)),
                        ("big", (_member.OWN_DOT + 6,)), ("mat", (0, 0)), ("mat", (39, 32)),
                        ("mat", (17, 5)), ("even", (0,)), ("even", (2047,)), ("even", (1000,))):
        for bad in (jnp.nan, jnp.inf, -jnp.inf):
            t = {**tree, leaf: tree[leaf].at[where].set(bad)}
            assert not bool(_member.tree_finite(t, via_dot)) and not bool(check(t)), (leaf, bad)
    batch = jax.tree.map(lambda x: jnp.stack([x, x, x]), tree)
    batch["w"] = batch["w"].at[1, 0, 3].set(jnp.nan)
    flags = jax.vmap(lambda t: _member.tree_finite(t, via_dot))(batch)
    assert flags.tolist() == [True, False, True]
    # one member (a vmapped axis of 1): XLA rewrites the dots into reductions
    for leaf, where in (("mat", (39, 32)), ("even", (1000,)), ("big", (3,))):
        one = jax.tree.map(lambda x: x[None], {**tree, leaf: tree[leaf].at[where].set(jnp.inf)})
        checked = jax.jit(jax.vmap(lambda t: _member.tree_finite(t, via_dot)))
        assert checked(one).tolist() == [False], leaf
        assert checked(jax.tree.map(lambda x: x[None], tree)).tolist() == [True]
    assert bool(_member.tree_finite({"n": jnp.arange(3)}, via_dot))  # no float leaf


def test_nan_update_from_finite_gradients_freezes_one_step_later():
    """The documented trade-off of checking gradients, not updates: an optimizer that makes a
    non-finite update from finite gradients (here a NaN scale from step 3) is caught by the
    next step's loss; the member is frozen there with the non-finite params."""
    def optimizer(hp):
        nan_from_3 = optax.scale_by_schedule(lambda c: jnp.where(c >= 3, jnp.nan, 1.0))
        return optax.chain(optax.sgd(hp["lr"]), nan_from_3)

    res = run(jaxlr.grid(lr=[0.01, 0.05]), steps=10, optimizer=optimizer)
    assert res.diverged.all() and res.diverged_at.tolist() == [4, 4]
    assert np.isfinite(res.loss[:, :4]).all() and np.isnan(res.loss[:, 4:]).all()
    assert not np.isfinite(np.asarray(res.params(0)["w"])).any()


def test_every_member_diverging_returns_without_raising():
    res = run(jaxlr.grid(lr=[50.0, 100.0]), steps=20)
    assert res.diverged.all()
    with pytest.raises(ValueError, match="every member diverged"):
        res.best(by="loss")
    table = res.table().splitlines()  # header and rule, one row per setting, the verdict
    assert [row.split()[-2:] for row in table[2:4]] == [["1/1", "diverged"]] * 2
    assert table[4:] == ["no recommendation: every member diverged; lower the learning rates"]


# --- 4. devices ------------------------------------------------------------------------------
def test_sharded_over_four_host_devices_equals_one_device(tmp_path):
    script = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np, jaxlr
        assert jax.device_count() == 4, jax.devices()
        x = jax.random.normal(jax.random.key(0), (64, 3)); y = x @ jnp.array([1., -2., .5])
        args = (lambda k: 0.1 * jax.random.normal(k, (3,)),
                lambda w, b: jnp.mean((b[0] @ w - b[1]) ** 2), (x, y),
                lambda hp: jaxlr.adam(hp["lr"]), jaxlr.grid(lr=[1e-3, 1e-2, 0.1], seed=2))
        kw = dict(steps=20, batch_size=8, progress=False, chunk_size=7)
        four = jaxlr.sweep(*args, **kw)                       # M=6 padded to 8 over 4 devices
        one = jaxlr.sweep(*args, devices=jax.devices()[:1], **kw)
        leaf = jax.tree.leaves(four._state)[0]  # as the sweep left it: 8 rows, 2 per device
        assert len(leaf.sharding.device_set) == 4 and leaf.shape[0] == 8, leaf.sharding
        # the public stacked state drops the 2 padding rows
        params, _ = four.stacked()
        assert params.shape == (6, 3)
        np.testing.assert_allclose(params[5], one.params(5), rtol=1e-6)
        assert four.loss.shape == (6, 20) and len(four.diverged) == 6
        np.testing.assert_allclose(four.loss, one.loss, rtol=1e-6)
        np.testing.assert_allclose(four.params(5), one.params(5), rtol=1e-6)
        # successive halving: 3 settings x 2 seeds -> 1 setting, 2 rows padded to 4 devices
        prune = jaxlr.successive_halving(7, 3)
        four_p = jaxlr.sweep(*args, prune=prune, **kw)
        one_p = jaxlr.sweep(*args, devices=jax.devices()[:1], prune=prune, **kw)
        assert (four_p.pruned_at >= 0).sum() == 4, four_p.pruned_at
        np.testing.assert_array_equal(four_p.pruned_at, one_p.pruned_at)
        np.testing.assert_allclose(four_p.loss, one_p.loss, rtol=1e-6)
        np.testing.assert_allclose(four_p.loss[four_p.pruned_at < 0],
                                   four.loss[four_p.pruned_at < 0], rtol=1e-6)
        # population-based training: copies between devices (a collective), same decisions
        pbt = jaxlr.population_based(7, fraction=0.5)
        four_b = jaxlr.sweep(*args, policy=pbt, **kw)
        one_b = jaxlr.sweep(*args, devices=jax.devices()[:1], policy=pbt, **kw)
        assert four_b.copied()
        for k, v in one_b.history.items():
            np.testing.assert_array_equal(four_b.history[k], v)
        np.testing.assert_allclose(four_b.loss, one_b.loss, rtol=1e-6)
        np.testing.assert_allclose(four_b.params(5), one_b.params(5), rtol=1e-6)
        # categorical axes: one program, a block of rows per category padded to the devices
        # (5 adam rows -> 8, 2 sgd rows -> 4: padding in the middle of the rows)
        g = jaxlr.Grid.zip(opt=["adam"] * 5 + ["sgd"] * 2,
                           lr=[1e-3, 3e-3, 1e-2, 3e-2, 0.1, 1e-2, 0.1])
        cat = (args[0], args[1], args[2],
               lambda hp: {"adam": jaxlr.adam, "sgd": jaxlr.sgd}[hp["opt"]](hp["lr"]), g)
        four_c = jaxlr.sweep(*cat, **kw)
        one_c = jaxlr.sweep(*cat, devices=jax.devices()[:1], **kw)
        np.testing.assert_allclose(four_c.loss, one_c.loss, rtol=1e-6)
        np.testing.assert_allclose(four_c.params(6), one_c.params(6), rtol=1e-6)
        # halving across categories (7 settings -> 2 at step 7), compacted within each; PBT
        # copies within a category: the same decisions and curves on 4 devices as on 1
        for policy in (jaxlr.successive_halving(7, 3), jaxlr.population_based(7, fraction=0.5)):
            four_p = jaxlr.sweep(*cat, policy=policy, **kw)
            one_p = jaxlr.sweep(*cat, devices=jax.devices()[:1], policy=policy, **kw)
            np.testing.assert_array_equal(four_p.pruned_at, one_p.pruned_at)
            for k, v in one_p.history.items():
                np.testing.assert_array_equal(four_p.history[k], v)
            np.testing.assert_allclose(four_p.loss, one_p.loss, rtol=1e-6)
            np.testing.assert_allclose(four_p.params(0), one_p.params(0), rtol=1e-6)
            assert ((four_p.pruned_at == 7).sum() == 5 if policy.stops_members
                    else four_p.copied())
        print("OK")
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


# --- 5. chunks and progress ------------------------------------------------------------------
def test_chunking_is_invisible_and_progress_reports_best_loss(capsys):
    g = jaxlr.grid(lr=[0.01, 0.1], seed=2)
    a = run(g, steps=23, chunk_size=23)
    b = run(g, steps=23, chunk_size=5, progress=True)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-6)
    np.testing.assert_allclose(a.lr, b.lr)
    err = capsys.readouterr().err
    assert "jaxlr sweep (4 members)" in err and "best_loss" in err


def _compiled(compiles, kind):
    """How many times the ``kind`` program ("whole" or "chunk") was compiled by XLA."""
    return compiles[f"jit(run_{kind})"]


def test_a_run_of_one_chunk_is_one_program_equal_to_the_chunked_run(compiles):
    """progress=False and nothing between chunks: init + training is ONE program that keeps the
    optimizer state inside; bit-identical to the same run in chunks (a diverging member too)."""
    jaxlr.clear_caches()  # count compiles from a clean start
    g = jaxlr.grid(lr=[0.01, 0.1, 30.0], seed=2)
    opt = lambda hp: jaxlr.adam(jaxlr.warmup_cosine_decay(0.0, hp["lr"], 5, 23))  # noqa: E731
    one = run(g, steps=23, optimizer=opt, eval_data=DATA)
    assert (_compiled(compiles, "whole"), _compiled(compiles, "chunk")) == (1, 0)
    chunked = run(g, steps=23, optimizer=opt, eval_data=DATA, chunk_size=5, progress=True)
    assert _compiled(compiles, "chunk") == 1
    assert one.diverged.tolist() == [False] * 4 + [True] * 2  # members: lr-major
    for name in ("loss", "lr", "eval", "diverged_at", "eval_steps"):
        np.testing.assert_array_equal(getattr(one, name), getattr(chunked, name), err_msg=name)
    chex.assert_trees_all_equal(one.stacked(), chunked.stacked())
    # explicitly one chunk (chunk_size >= steps) with progress: one program too
    again = run(g, steps=23, optimizer=opt, chunk_size=23, progress=True)
    np.testing.assert_array_equal(again.loss, one.loss)
    assert _compiled(compiles, "chunk") == 1


def test_the_whole_run_default_gives_way_to_chunks_when_its_indices_are_large(monkeypatch,
                                                                              compiles):
    jaxlr.clear_caches()  # count compiles from a clean start
    g = jaxlr.grid(lr=[0.01, 0.1], seed=3)
    one = run(g, steps=250)
    assert (_compiled(compiles, "whole"), _compiled(compiles, "chunk")) == (1, 0)
    # 3 seeds x 250 steps x 16 examples = 12,000 indices > 10,000: default chunks (2 x 125)
    monkeypatch.setattr(_plan, "WHOLE_RUN_INDICES", 10_000)
    chunked = run(g, steps=250)
    assert _compiled(compiles, "chunk") == 1
    np.testing.assert_array_equal(one.loss, chunked.loss)
    chex.assert_trees_all_equal(one.stacked(), chunked.stacked())


def test_one_member_runs_the_unbatched_function():
    """_member_map: vmap over the member axis, but a batch of one calls f itself (its program
    has no batch-of-one dots, which XLA:CPU runs slower) and adds the axis back; the values are
    vmap's."""
    def f(w, y):
        return {"p": w @ w.T * y, "q": jnp.sum(w)}

    y = jnp.float32(2.0)
    for m in (1, 4):
        w = jnp.arange(m * 6.0).reshape(m, 2, 3)
        mapped = _compile.member_map(f, in_axes=(0, None))
        out = jax.jit(mapped)(w, y)
        chex.assert_trees_all_close(out, jax.vmap(f, in_axes=(0, None))(w, y))
        assert out["p"].shape == (m, 2, 2) and out["q"].shape == (m,)
        (dot,) = [e for e in jax.make_jaxpr(mapped)(w, y).eqns if e.primitive.name == "dot_general"]
        (_, (batch_dims, _)) = dot.params["dimension_numbers"]
        assert tuple(batch_dims) == (() if m == 1 else (0,))


def test_iterable_of_batches():
    batches = [(X[i:i + 16], Y[i:i + 16]) for i in range(0, 96, 16)] * 3  # 18 batches
    g = jaxlr.grid(lr=[0.01, 0.1])
    res = jaxlr.sweep(init_linear, mse, iter(batches), sgd_opt, g, steps=18, batch_size=16,
                      chunk_size=4, progress=False)
    # by hand: the same batches in order, member 1
    params = init_linear(jax.random.key(0))
    opt = jaxlr.sgd(0.1, momentum=0.5)
    state = opt.init(params)
    for batch in batches:
        updates, state = opt.update(jax.grad(mse)(params, batch), state, params)
        params = optax.apply_updates(params, updates)
    chex.assert_trees_all_close(res.params(1), params, rtol=1e-5)
    with pytest.raises(ValueError, match="ran out of batches"):
        jaxlr.sweep(init_linear, mse, iter(batches[:5]), sgd_opt, g, steps=18, batch_size=16,
                    progress=False)


def test_eval_and_aux_metrics_and_best_over_seeds():
    def loss_fn(params, batch):
        x, y = batch
        err = x @ params["w"] + params["b"] - y
        return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}

    g = jaxlr.grid(lr=[0.003, 0.03, 0.1], seed=2)
    res = jaxlr.sweep(init_linear, loss_fn, DATA, sgd_opt, g, steps=40, batch_size=16,
                      eval_data=DATA, eval_every=20, progress=False)
    assert res.eval.shape == (6, 2) and res.eval_steps.tolist() == [20, 40]
    assert res.eval_aux["mae"].shape == (6, 2)
    # eval loss equals the loss of the member's params on the eval data, computed by hand
    # (on a GPU the vmapped and the plain float32 matmul may round differently: TF32 passes)
    rtol = 1e-5 if jax.default_backend() == "cpu" else 2e-3
    np.testing.assert_allclose(res.eval[3, -1], loss_fn(res.params(3), DATA)[0], rtol=rtol)
    best = res.best(by="eval", over="seed")
    means = res.eval[:, -1].reshape(3, 2).mean(axis=1)
    assert best.hparams == {"lr": [0.003, 0.03, 0.1][int(np.argmin(means))]}
    best_seeds = res.eval[:, -1].reshape(3, 2)[int(np.argmin(means))]
    assert best.value == pytest.approx(means.min(), rel=1e-6)
    assert best.std == pytest.approx(np.std(best_seeds), rel=1e-6)  # ddof 0, over the 2 seeds
    mae = res.eval_aux["mae"][:, -1]
    assert res.best(by="mae").value == pytest.approx(mae.reshape(3, 2).mean(1).min(), rel=1e-6)
    assert res.best(by="mae", over="member").value == pytest.approx(mae.min(), rel=1e-6)
    table = res.table().splitlines()
    assert table[0].split()[:4] == ["lr", "eval", "loss", "mae"]
    assert table[5].startswith("recommended: lr=")  # header, rule, 3 settings, then it


# --- 6. bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda: jaxlr.grid(), "grid is empty"),
    (lambda: jaxlr.grid(lr=[]), "'lr' is empty"),
    (lambda: jaxlr.grid(lr=np.ones((2, 2))), "'lr' must be a 1-D list"),
    (lambda: jaxlr.grid(seed=0), "seed must be a positive count"),
    (lambda: jaxlr.Grid.zip(lr=[1, 2], momentum=[0.9]), "equal length"),
    (lambda: run(jaxlr.grid(lr=[0.1]), steps=0), "steps must be > 0, got steps=0"),
    (lambda: run(jaxlr.grid(lr=[0.1]), batch_size=97), "batch_size must be <= the number"),
    (lambda: jaxlr.sweep(init_linear, mse, (X, Y[:50]), sgd_opt, jaxlr.grid(lr=[0.1]), steps=5,
                         batch_size=8), "different lengths"),
    (lambda: jaxlr.sweep(init_linear, lambda p, b: b[0] @ p["w"], DATA, sgd_opt,
                         jaxlr.grid(lr=[0.1]), steps=5, batch_size=8), "must return a scalar"),
    (lambda: run(jaxlr.grid(lr=[0.1]), optimizer=lambda hp: hp["lr"]),
     "optimizer\\(hp\\) must return an optax transform"),
    (lambda: run(jaxlr.grid(lr=[0.1]), eval_every=7, chunk_size=5), "multiple of chunk_size"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_grid_api():
    g = jaxlr.grid(lr=jnp.logspace(-4, 0, 16), seed=3, warmup_steps=[0, 100])
    # logspace in float32 gives 1e-4 to within an ulp, which ulp depends on the backend
    assert len(g) == 96 and g[0] == {"lr": pytest.approx(1e-4, rel=1e-6), "seed": 0,
                                     "warmup_steps": 0}
    assert g[1]["warmup_steps"] == 100 and g[2]["seed"] == 1  # last axis fastest
    assert "M=96" in repr(g) and "16 values" in repr(g)
    z = jaxlr.Grid.zip(lr=[1e-3, 1e-2], warmup_steps=[10, 100]) * jaxlr.grid(seed=2)
    assert len(z) == 4 and [m["warmup_steps"] for m in z] == [10, 10, 100, 100]
    assert list(jaxlr.grid(seed=[3, 7]))[1] == {"seed": 7}


# --- 7. NNX (BatchNorm, Dropout), linen, instances -------------------------------------------
class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(4, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.l2 = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(nnx.relu(self.bn(self.l1(x)))))[:, 0]


def nnx_loss(model, batch):
    return jnp.mean((model(batch[0]) - batch[1]) ** 2)


def test_nnx_with_batchnorm_and_dropout():
    g = jaxlr.grid(lr=[1e-3, 1e-2], seed=2)
    res = jaxlr.sweep(lambda key: NNXNet(nnx.Rngs(key)), nnx_loss, DATA,
                      lambda hp: jaxlr.adam(hp["lr"]), g, steps=40, batch_size=16,
                      eval_data=DATA, progress=False)
    assert not res.diverged.any() and res.loss[:, -5:].mean() < res.loss[:, :5].mean()
    best = res.best(by="eval", over="member")  # one member: its params give its value
    model = best.params
    assert isinstance(model, NNXNet)
    # BatchNorm statistics were updated per member during training
    assert not np.allclose(np.asarray(model.bn.mean[...]), 0.0)
    # usable as an ordinary model; in eval mode it reproduces the recorded eval loss
    model.eval()
    np.testing.assert_allclose(nnx_loss(model, DATA), best.value, rtol=1e-5)
    # dropout streams differ per member: same LR, different seeds -> different losses
    assert not np.allclose(res.loss[0], res.loss[1])
    # member == solo also with NNX state
    solo = jaxlr.sweep(lambda key: NNXNet(nnx.Rngs(key)), nnx_loss, DATA,
                       lambda hp: jaxlr.adam(hp["lr"]), g.select(3), steps=40, batch_size=16,
                       progress=False)
    np.testing.assert_allclose(res.loss[3], solo.loss[0], rtol=1e-5)
    # the stacked state: member i's slice is what params(i) assembles (params and BatchNorm
    # statistics alike); by_setting groups the two seeds of each LR, in grid order
    params, rest = res.stacked()
    for i in range(len(g)):
        _, p_i, r_i = nnx.split(res.params(i), nnx.Param, ...)
        chex.assert_trees_all_equal(jax.tree.map(lambda a: a[i], (params, rest)), (p_i, r_i))
    assert jax.tree.leaves(rest) and jax.tree.leaves(params)[0].shape[0] == len(g)
    groups = res.by_setting()
    assert list(groups) == [(float(np.float32(1e-3)),), (float(np.float32(1e-2)),)]
    for (lr,), idx in groups.items():
        assert (res.hparams["lr"][idx] == np.float32(lr)).all()
        assert sorted(res.hparams["seed"][idx].tolist()) == [0, 1]


def test_stacked_params_of_a_pytree_model():
    g = jaxlr.grid(lr=[0.01, 0.05, 0.1])
    res = run(g)
    params, rest = res.stacked()
    assert rest == () and params["w"].shape == (3, 4) and params["b"].shape == (3,)
    for i in range(len(g)):
        chex.assert_trees_all_equal(jax.tree.map(lambda a: a[i], params), res.params(i))
    assert {k: v.tolist() for k, v in res.by_setting().items()} == {
        (lr,): [i] for i, lr in enumerate(np.float32([0.01, 0.05, 0.1]).tolist())}


def test_nnx_module_instance_every_seed_starts_from_it():
    net = NNXNet(nnx.Rngs(0))
    res = jaxlr.sweep(net, nnx_loss, DATA, lambda hp: jaxlr.sgd(hp["lr"]),
                      jaxlr.grid(lr=[1e-2], seed=2), steps=5, batch_size=96, progress=False)
    # same starting params, full batch: step-0 losses differ only through dropout streams
    assert res.loss[0, 0] != res.loss[1, 0]
    assert isinstance(res.params(0), NNXNet)


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(1)(linen.tanh(linen.Dense(8)(x)))[:, 0]


def test_linen_variables():
    module = LinenMLP()

    def loss_fn(variables, batch):
        return jnp.mean((module.apply(variables, batch[0]) - batch[1]) ** 2)

    res = jaxlr.sweep(lambda key: module.init(key, X[:1]), loss_fn, DATA,
                      lambda hp: jaxlr.adam(hp["lr"]), jaxlr.grid(lr=[1e-3, 1e-2]), steps=30,
                      batch_size=16, progress=False)
    variables = res.best(by="loss").params
    assert set(variables) == {"params"}
    assert float(loss_fn(variables, DATA)) < res.loss[:, 0].min()


def test_repr_of_best_is_one_line_whatever_the_model():
    x = jnp.linspace(-1.0, 1.0, 32)[:, None]
    res = jaxlr.sweep(lambda k: nnx.Linear(1, 1, rngs=nnx.Rngs(k)),
                      lambda m, b: jnp.mean((m(b[0])[:, 0] - 2.0 * b[0][:, 0]) ** 2), (x,),
                      lambda hp: jaxlr.sgd(hp["lr"]), jaxlr.grid(lr=[0.01, 0.5]), steps=20,
                      batch_size=8, progress=False)
    best = res.best(by="loss")
    assert repr(best) == (f"Best(index=1, hparams={{'lr': 0.5}}, value={best.value:.6g}, "
                          "std=0, params=<Linear: 2 arrays, 2 values>)")
