"""A sweep that will not fit in memory says so before step 0, with the largest M that fits
(issue 14 §4). The reference for "how much a member needs" is written out from the model: Adam
keeps the parameters and two moments per member, 3 x 4 bytes per float32 parameter at least."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlr
from jaxlr._sweep import memory

WIDTH = 256  # 4 x 256 + 256 x 256: ~66k parameters, 0.25 MiB per copy
P = 4 * WIDTH + WIDTH * WIDTH
X = jax.random.normal(jax.random.key(0), (32, 4))
Y = jnp.sin(X[:, 0])


def init(key):
    k1, k2 = jax.random.split(key)
    return {"w": 0.3 * jax.random.normal(k1, (4, WIDTH)),
            "u": jax.random.normal(k2, (WIDTH, WIDTH)) / WIDTH}


def loss_fn(p, batch):
    x, y = batch
    return jnp.mean((jnp.tanh(x @ p["w"]) @ p["u"]).sum(1) - y) ** 2


def run(m, **kw):
    return jaxlr.sweep(init, loss_fn, (X, Y), lambda hp: jaxlr.adam(hp["lr"]),
                       jaxlr.grid(lr=np.linspace(1e-3, 1e-2, m)), steps=4, batch_size=8,
                       progress=False, **kw)


def estimate(monkeypatch, m) -> int:
    """XLA's per-device bytes for an m-member sweep (what the sweep compares)."""
    got = []
    original = memory.check_fits

    def spy(need, free, rows, n_devices, shared):
        got.append(need)
        return original(need, free, rows, n_devices, shared)

    monkeypatch.setattr(memory, "check_fits", spy)
    run(m)
    return got[-1]


def test_the_estimate_grows_by_at_least_adams_state_per_member(monkeypatch):
    small, large = estimate(monkeypatch, 2), estimate(monkeypatch, 10)
    per_member = (large - small) / 8
    assert per_member >= 3 * 4 * P  # params + mu + nu, float32
    assert per_member <= 12 * 4 * P  # and not wildly more (grads, updates, temporaries)


def test_a_sweep_that_does_not_fit_is_refused_before_step_0(monkeypatch):
    calls = {"loss": 0}

    def counting(p, batch):
        calls["loss"] += 1
        return loss_fn(p, batch)

    free = 4 * 2**20  # 4 MiB
    monkeypatch.setattr(memory, "free_bytes", lambda devices: free)
    with pytest.raises(MemoryError) as err:
        jaxlr.sweep(init, counting, (X, Y), lambda hp: jaxlr.adam(hp["lr"]),
                    jaxlr.grid(lr=np.linspace(1e-3, 1e-2, 16)), steps=4, batch_size=8,
                    progress=False)
    text = str(err.value)
    assert "16 members" in text and "0.00 GiB free" in text
    fits = int(re.search(r"at most ~(\d+) members fit", text).group(1))
    # each member needs more than its Adam state, 12 bytes per parameter: no more fit than that
    assert 1 <= fits <= free // (3 * 4 * P)
    assert calls["loss"] == 2  # traced (the abstract check, the program), never run


def test_check_fits_arithmetic():
    """The largest M: (free - shared) / per-member bytes, per-member = (need - shared) / rows
    per device, times the devices."""
    memory.check_fits(100, 100, 8, 1, 0)  # fits exactly: nothing said
    memory.check_fits(None, 10, 8, 1, 0)  # no estimate: nothing said
    with pytest.raises(MemoryError, match=r"at most ~4 members fit"):
        # 8 rows on 2 devices: 4 per device, (1010 - 10) / 4 = 250 per member;
        # (510 - 10) / 250 = 2 per device, 4 in all
        memory.check_fits(1010, 510, 8, 2, 10)


def test_free_bytes_of_the_host_is_the_available_memory():
    free = memory.free_bytes(jax.local_devices()[:1])
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) * 1024 for line in f
                         if line.startswith("MemAvailable:"))
    assert free is not None and abs(free - available) < 0.25 * available


def test_the_check_compiles_nothing_more(compiles):
    """The program compiled for the estimate is the one the call runs (one XLA compile of the
    training program)."""
    jaxlr.clear_caches()  # an earlier test may have compiled the same programs
    run(3, chunk_size=2, eval_data=(X, Y), eval_every=2)
    assert compiles["jit(run_chunk)"] == 1
    assert compiles["jit(mapped)"] == 2  # the init and the eval programs
    # an iterable of batches: the stacked chunk is placed as the check lowered it
    compiles.clear()
    batches = iter([(X[i:i + 8], Y[i:i + 8]) for i in range(0, 32, 8)] * 2)
    jaxlr.sweep(init, loss_fn, batches, lambda hp: jaxlr.adam(hp["lr"]),
                jaxlr.grid(lr=[1e-3, 1e-2, 1e-1]), steps=8, batch_size=8, chunk_size=2,
                progress=False)
    assert compiles["jit(run_chunk)"] == 1
