"""One sweep over two JAX processes (jax.distributed on loopback, 2 host devices each)."""

import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np

import jaxlr

SETUP = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, jaxlr
    x = jax.random.normal(jax.random.key(0), (64, 3)); y = x @ jnp.array([1., -2., .5])
    def loss(w, b):
        err = b[0] @ w - b[1]
        return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}
    ARGS = (lambda k: 0.1 * jax.random.normal(k, (3,)), loss, (x, y),
            lambda hp: jaxlr.adam(hp["lr"]), jaxlr.grid(lr=[1e-3, 1e-2, 0.1], seed=2))
    KW = dict(steps=21, batch_size=8, progress=False, chunk_size=7, eval_data=(x, y),
              eval_every=7)
    PRUNE = jaxlr.successive_halving(7, 3)
    PBT = jaxlr.population_based(7, fraction=0.5, by="eval")
""")

WORKER = textwrap.dedent("""
    import sys, jax
    addr, pid, out, ckpt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    jax.distributed.initialize(coordinator_address=addr, num_processes=2, process_id=pid)
""") + SETUP + textwrap.dedent("""
    assert jax.device_count() == 4 and jax.local_device_count() == 2, jax.devices()
    res = jaxlr.sweep(*ARGS, devices="all", **KW)          # M=6 padded to 8 over 4 devices
    leaf = jax.tree.leaves(res.stacked())[0]
    assert leaf.is_fully_addressable and leaf.shape[0] == 6  # gathered, padding rows dropped
    pruned = jaxlr.sweep(*ARGS, devices="all", prune=PRUNE, **KW)
    pbt = jaxlr.sweep(*ARGS, devices="all", policy=PBT, **KW)  # copies across processes
    first = jaxlr.sweep(*ARGS, devices="all", checkpoint=ckpt, prune=PRUNE, **KW)
    again = jaxlr.sweep(*ARGS, devices="all", checkpoint=ckpt, prune=PRUNE, **KW)  # restored
    np.savez(out, loss=res.loss, eval=res.eval, mae=res.eval_aux["mae"], params5=res.params(5),
             pruned_loss=pruned.loss, pruned_at=pruned.pruned_at, first=first.loss,
             again=again.loss, again_params=again.params(0), first_params=first.params(0),
             pbt_loss=pbt.loss, pbt_parents=pbt.history["history_parents"],
             pbt_params=pbt.params(4))
    jax.distributed.shutdown()
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    addr = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, addr, str(i),
                               str(tmp_path / f"p{i}.npz"), str(tmp_path / "ckpt")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    deadline = time.monotonic() + 300
    try:  # a process that dies makes the other hang until a heartbeat timeout: stop both
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    errors = [p.communicate()[1][-3000:] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors

    ns: dict = {}
    exec(SETUP, ns)  # the same sweep in this process, on one device
    one = jaxlr.sweep(*ns["ARGS"], **ns["KW"])
    one_pruned = jaxlr.sweep(*ns["ARGS"], prune=ns["PRUNE"], **ns["KW"])
    assert (one_pruned.pruned_at >= 0).sum() == 4
    one_pbt = jaxlr.sweep(*ns["ARGS"], policy=ns["PBT"], **ns["KW"])
    assert one_pbt.copied()
    for i in range(2):  # results are gathered on every process
        with np.load(tmp_path / f"p{i}.npz") as z:
            np.testing.assert_allclose(z["loss"], one.loss, rtol=1e-6)
            np.testing.assert_allclose(z["eval"], one.eval, rtol=1e-6)
            np.testing.assert_allclose(z["mae"], one.eval_aux["mae"], rtol=1e-6)
            np.testing.assert_allclose(z["params5"], one.params(5), rtol=1e-6)
            np.testing.assert_array_equal(z["pruned_at"], one_pruned.pruned_at)
            np.testing.assert_allclose(z["pruned_loss"], one_pruned.loss, rtol=1e-6)
            np.testing.assert_array_equal(z["pbt_parents"], one_pbt.history["history_parents"])
            np.testing.assert_allclose(z["pbt_loss"], one_pbt.loss, rtol=1e-6)
            np.testing.assert_allclose(z["pbt_params"], one_pbt.params(4), rtol=1e-6)
            np.testing.assert_array_equal(z["again"], z["first"])
            np.testing.assert_array_equal(z["again_params"], z["first_params"])
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["ckpt-000001",
                                                                      "ckpt-000002"]
