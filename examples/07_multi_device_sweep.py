"""A sweep sharded over several devices: the member axis split across them, same results.

``jaxlr.sweep`` puts the M members on a 1-D device mesh (axis ``"member"``): each device
trains M / n_devices members of the one compiled program, and the data are replicated. On a
CPU, XLA shows one device unless told otherwise, so this script sets
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (N = ``--devices``, default 4) BEFORE
importing JAX -- the flag is read once, when JAX starts its backend (the ``jaxlr`` command does
the same, with one device per core). On GPUs/TPUs the real devices are used as they are.

It then trains the same 16 members (8 LRs x 2 seeds of Adam on an NNX MLP on sklearn's digits)
twice: sharded over all N devices, and on 1 device. It prints how the trained parameters are
laid out (which members live on which device) and checks that both runs agree to float
tolerance: a member's result does not depend on where it ran. (The speed-up needs as many
free cores as devices; on a busy 2-core machine the two timings are close.)

Run: ``python examples/07_multi_device_sweep.py [--devices 4]`` (about 30 s on 2 CPU cores).
With ``JAXLR_EXAMPLE_SMOKE=1`` it runs a tiny version.
"""

from __future__ import annotations

import argparse
import os
import sys

FLAG = "--xla_force_host_platform_device_count"


def _devices_from_argv() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4, help="host devices to create")
    return parser.parse_args(sys.argv[1:]).devices


N = _devices_from_argv()
if FLAG not in os.environ.get("XLA_FLAGS", ""):  # must happen before jax is imported
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FLAG}={N}".strip()

import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import jaxlr  # noqa: E402

SMOKE = os.environ.get("JAXLR_EXAMPLE_SMOKE") == "1"
STEPS = 20 if SMOKE else 300


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 128, rngs=rngs)
        self.out = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def loss_fn(model: MLP, batch):
    x, y = batch
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}


def main() -> None:
    devices = jax.devices("cpu")
    print(f"XLA_FLAGS={os.environ['XLA_FLAGS']!r}: {len(devices)} CPU devices "
          f"({os.cpu_count()} cores)")
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(x))
    train, test = (x[perm[:1400]], y[perm[:1400]]), (x[perm[1400:]], y[perm[1400:]])
    grid = jaxlr.grid(lr=np.logspace(-4, -1.5, 8), seed=2)

    def run(devs):
        start = time.perf_counter()
        res = jaxlr.sweep(lambda key: MLP(nnx.Rngs(key)), loss_fn, train,
                          lambda hp: jaxlr.adam(hp["lr"]), grid, steps=STEPS, batch_size=128,
                          eval_data=test, devices=devs, progress=False)
        return res, time.perf_counter() - start

    sharded, t_n = run(devices)
    single, t_1 = run(devices[:1])

    # the trained parameters as the sweep left them: stacked on the member axis [M, ...]
    # and sharded over it (params(i) assembles one member into a model)
    params, _ = sharded.stacked()
    kernel = jax.tree.leaves(params)[0]
    print(f"a stacked parameter: shape {kernel.shape}, {kernel.sharding}")
    for shard in kernel.addressable_shards:
        rows = shard.index[0]
        print(f"  {shard.device}: members {rows.start}..{rows.stop - 1}")

    diff_loss = np.nanmax(np.abs(sharded.loss - single.loss))
    diff_eval = np.max(np.abs(sharded.eval - single.eval))
    print(f"{len(devices)} devices: {t_n:.1f} s, 1 device: {t_1:.1f} s (both including "
          "compilation)")
    print(f"max |difference| over all {len(grid)} members: training loss {diff_loss:.1e}, "
          f"final eval loss {diff_eval:.1e}")
    np.testing.assert_allclose(sharded.eval, single.eval, rtol=1e-4, atol=1e-5)
    assert (sharded.diverged == single.diverged).all()
    best_n, best_1 = sharded.best(over="seed"), single.best(over="seed")
    assert best_n.hparams == best_1.hparams
    print(f"same results, same best LR {best_n.hparams['lr']:.3g} (eval loss "
          f"{best_n.value:.4f} ± {best_n.std:.4f})")


if __name__ == "__main__":
    main()
