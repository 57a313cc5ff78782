"""Checkpoints: a sweep killed with SIGKILL resumes to the uninterrupted result."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

SETUP = textwrap.dedent("""
    import jax, jax.numpy as jnp, jaxlr
    from flax import nnx

    x = jax.random.normal(jax.random.key(0), (128, 4)); y = x @ jnp.array([1., -2., .5, 0.])

    class Net(nnx.Module):  # Dropout: RNG keys are part of the checkpointed state
        def __init__(self, rngs):
            self.l1 = nnx.Linear(4, 16, rngs=rngs); self.drop = nnx.Dropout(0.1, rngs=rngs)
            self.l2 = nnx.Linear(16, 1, rngs=rngs)
        def __call__(self, x):
            return self.l2(self.drop(nnx.relu(self.l1(x))))[:, 0]

    def loss_fn(model, batch):
        err = model(batch[0]) - batch[1]
        return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}

    def run(checkpoint=None, steps=200):
        return jaxlr.sweep(lambda k: Net(nnx.Rngs(k)), loss_fn, (x, y),
                           lambda hp: jaxlr.adam(hp["lr"]),
                           jaxlr.grid(lr=[1e-3, 1e-2, 3.0], seed=2),
                           steps=steps, batch_size=16, chunk_size=10, eval_data=(x, y),
                           eval_every=50, checkpoint=checkpoint, progress=False)
""")
namespace: dict = {}
exec(SETUP, namespace)
run = namespace["run"]


def assert_same(a, b):
    for key in ("loss", "lr", "eval", "diverged", "diverged_at", "eval_steps"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    np.testing.assert_array_equal(a.eval_aux["mae"], b.eval_aux["mae"])


@pytest.fixture(scope="module")
def uninterrupted():
    return run()


def test_resume_after_sigkill_equals_uninterrupted(tmp_path, uninterrupted):
    ckpt = tmp_path / "ckpt"
    script = SETUP + f"\nrun(checkpoint={str(ckpt)!r})\nprint('finished')\n"
    # the child has this process' device count (an earlier test in this worker may have set
    # XLA_FLAGS for its own children; a checkpoint of another device count is refused)
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={jax.local_device_count()}"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    rng = np.random.default_rng(14)  # seeded: the kill points are the same in every run
    target = int(rng.integers(2, 12))  # kill after a pseudo-random number of chunks (of 20)
    while time.time() < deadline and proc.poll() is None:
        done = [int(p.name.split("-")[1]) for p in ckpt.glob("ckpt-*")] if ckpt.exists() else []
        if done and max(done) >= target:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the sweep finished before it could be killed: " + (
        proc.stderr.read().decode()[-2000:])
    time.sleep(float(rng.uniform(0, 0.05)))  # a random point, maybe mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert sorted(ckpt.glob("ckpt-*")), "no checkpoint was written"
    resumed = run(checkpoint=str(ckpt))
    assert_same(resumed, uninterrupted)


def test_corrupt_newest_checkpoint_falls_back_with_a_warning(tmp_path, uninterrupted):
    ckpt = tmp_path / "ckpt"
    run(checkpoint=str(ckpt))  # complete: the last two chunks are kept
    kept = sorted(ckpt.glob("ckpt-*"))
    assert [p.name for p in kept] == ["ckpt-000018", "ckpt-000019"]
    # half-write the newest: it is skipped with a warning, the one before is resumed from
    newest = kept[-1] / "arrays.npz"
    newest.write_bytes(newest.read_bytes()[:100])  # a half-written file
    with pytest.warns(UserWarning, match="corrupt or half-written checkpoint"):
        resumed = run(checkpoint=str(ckpt))
    assert_same(resumed, uninterrupted)


def test_checkpoint_of_another_sweep_is_an_error(tmp_path):
    ckpt = tmp_path / "ckpt"
    run(checkpoint=str(ckpt), steps=20)
    with pytest.raises(ValueError, match="holds a sweep of another program: the sweep's settings"):
        run(checkpoint=str(ckpt), steps=30)


def test_checkpoint_files_are_written_atomically(tmp_path):
    ckpt = tmp_path / "ckpt"
    run(checkpoint=str(ckpt), steps=30)
    assert not list(Path(ckpt).glob(".tmp-ckpt-*"))
    for p in ckpt.glob("ckpt-*"):
        assert {f.name for f in p.iterdir()} == {"arrays.npz", "manifest.json"}
