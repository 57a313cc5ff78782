"""Sweep 16 learning rates x 3 seeds of an NNX MLP on sklearn's digits, as ONE compiled program.

The 48 members (16 log-spaced LRs x 3 seeds) train in parallel: ``jaxlr.sweep`` vmaps one
member's training step over the member axis, scans it over steps and shards the members over
all local devices. Each member warms up for 50 steps and then follows a cosine decay; the
member's hyperparameters arrive traced in ``hp``, so the whole grid compiles once.

Run: ``python examples/03_nnx_lr_sweep.py`` (under a minute on 2 CPU cores). On a CPU, set
``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` before starting Python to shard
the members over the cores. With ``JAXLR_EXAMPLE_SMOKE=1`` it runs a tiny version.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

import jaxlr

SMOKE = os.environ.get("JAXLR_EXAMPLE_SMOKE") == "1"
STEPS = 20 if SMOKE else 500
WARMUP = 5 if SMOKE else 50
NUM_LRS = 4 if SMOKE else 16


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


def optimizer(hp):
    schedule = jaxlr.warmup(jaxlr.cosine_decay(hp["lr"], STEPS - WARMUP), WARMUP)
    return jaxlr.adam(schedule)


def main():
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(x))
    train, test = perm[:1400], perm[1400:]

    grid = jaxlr.grid(lr=np.logspace(-4, 0.5, NUM_LRS), seed=3)
    print(grid)
    result = jaxlr.sweep(lambda key: MLP(nnx.Rngs(key)), loss_fn, (x[train], y[train]),
                         optimizer, grid, steps=STEPS, batch_size=128,
                         eval_data=(x[test], y[test]))
    print(result.table())
    best = result.best(by="eval", over="seed")
    print(f"best LR (mean eval loss over seeds): {best.hparams['lr']:.3g} "
          f"-> {best.value:.4f} ± {best.std:.4f}")
    model = best.params  # an ordinary MLP
    model.eval()
    acc = float(jnp.mean(jnp.argmax(model(x[test]), -1) == y[test]))
    print(f"test accuracy of that member: {acc:.3f}; diverged members: "
          f"{int(result.diverged.sum())}/{len(result)}")


if __name__ == "__main__":
    main()
