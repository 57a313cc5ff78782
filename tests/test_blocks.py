"""Sweeps larger than memory: members in blocks with one compiled program, merged; blocked ==
unblocked member by member; 'auto' completes a sweep the memory check refuses whole; resume."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlr
from jaxlr._sweep import checkpoint as _checkpoint
from jaxlr._sweep import memory

X = jax.random.normal(jax.random.key(0), (96, 4))
Y = jnp.tanh(X @ jnp.array([1.0, -2.0, 0.5, 0.0]))
DATA = (X, Y)
GRID = jaxlr.grid(lr=[1e-3, 1e-2, 0.1], seed=2)  # M = 6


def init(key):
    k1, k2 = jax.random.split(key)
    return {"w1": 0.5 * jax.random.normal(k1, (4, 8)), "w2": 0.5 * jax.random.normal(k2, (8,))}


def loss_fn(p, batch):
    x, y = batch
    err = jnp.tanh(x @ p["w1"]) @ p["w2"] - y
    return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}


def run(**kw):
    kw.setdefault("progress", False)
    return jaxlr.sweep(init, loss_fn, DATA, lambda hp: jaxlr.adam(hp["lr"]),
                       kw.pop("grid", GRID), steps=30, batch_size=16, eval_data=DATA,
                       eval_every=10, **kw)


@pytest.fixture(scope="module")
def whole():
    return run()


def same(a, b):
    # float tolerance: a batch of B members and one of 6 compile to different kernels
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)
    np.testing.assert_allclose(a.eval, b.eval, rtol=1e-5)
    np.testing.assert_allclose(a.eval_aux["mae"], b.eval_aux["mae"], rtol=1e-5)
    np.testing.assert_array_equal(a.diverged_at, b.diverged_at)
    for i in range(len(b)):
        chex.assert_trees_all_close(a.params(i), b.params(i), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("block", [2, 4, 6])
def test_blocked_equals_unblocked_member_by_member(whole, block, compiles):
    jaxlr.clear_caches()
    res = run(member_block=block)
    same(res, whole)
    assert res.best().index == whole.best().index
    assert res.table() == whole.table() or block != 6  # one block of 6 is the same sweep
    # blocks of one shape: the chunk compiles once (4 + a padded 4; 2 + 2 + 2)
    assert compiles["jit(run_chunk)"] == 1


def test_auto_completes_a_sweep_the_memory_check_refuses_whole(whole, monkeypatch):
    real = memory.free_bytes(jax.local_devices())
    sizes = []
    original = memory.check_fits

    def spy(need, free, rows, n_devices, shared):
        sizes.append(rows)
        return original(need, free, rows, n_devices, shared)

    monkeypatch.setattr(memory, "check_fits", spy)
    # room for about 3 members: measure the need of a 2-member sweep and allow 1.6x that
    run(grid=GRID.select([0, 1]))
    need_two = None

    def capture(need, free, rows, n_devices, shared):
        nonlocal need_two
        need_two = need
        return original(need, free, rows, n_devices, shared)

    monkeypatch.setattr(memory, "check_fits", capture)
    run(grid=GRID.select([0, 1]))
    monkeypatch.setattr(memory, "check_fits", spy)
    monkeypatch.setattr(memory, "free_bytes", lambda devices: int(1.6 * need_two))
    with pytest.raises(MemoryError, match="member_block='auto'"):
        run()
    sizes.clear()
    res = run(member_block="auto")
    assert sizes[0] == 6 + (-6 % len(jax.local_devices()))  # tried whole first, refused
    assert max(sizes[1:]) < sizes[0]  # then blocks that fit
    same(res, whole)
    assert real is None or real > need_two  # the real machine had the room


def test_a_killed_blocked_sweep_resumes_to_the_same_result(whole, tmp_path, monkeypatch):
    real_save = _checkpoint.save
    calls = {"n": 0}

    def save(directory, chunk, *args):
        calls["n"] += 1
        if "block-0001" in str(directory) and chunk == 1:
            raise KeyboardInterrupt
        real_save(directory, chunk, *args)

    monkeypatch.setattr(_checkpoint, "save", save)
    with pytest.raises(KeyboardInterrupt):
        run(member_block=4, checkpoint=tmp_path)
    monkeypatch.setattr(_checkpoint, "save", real_save)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block-0000", "block-0001"]
    resumed = run(member_block=4, checkpoint=tmp_path)
    uninterrupted = run(member_block=4)
    np.testing.assert_array_equal(resumed.loss, uninterrupted.loss)
    np.testing.assert_array_equal(resumed.eval, uninterrupted.eval)
    same(resumed, whole)


@pytest.mark.parametrize("kw,match", [
    (dict(member_block=0), "member_block must be a positive number"),
    (dict(member_block="half"), "member_block must be a positive number"),
    (dict(member_block=2, prune=jaxlr.successive_halving(10, 3)), "cannot see them all"),
])
def test_bad_member_block(kw, match):
    with pytest.raises(ValueError, match=match):
        run(**kw)


def test_member_block_needs_data_in_memory():
    batches = ((X[i:i + 16], Y[i:i + 16]) for i in range(0, 96, 16))
    with pytest.raises(ValueError, match="needs data in memory"):
        jaxlr.sweep(init, loss_fn, batches, lambda hp: jaxlr.adam(hp["lr"]), GRID, steps=3,
                    batch_size=16, progress=False, member_block=2)
