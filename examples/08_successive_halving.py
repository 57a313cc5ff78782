"""Successive halving inside one sweep: 27 learning rates x 3 seeds, the losers stopped early.

``prune=jaxlr.successive_halving(min_steps=50, reduction_factor=3, by="eval")`` ranks the 27
settings (mean eval loss over their 3 seeds) at the rungs 50 and 150, keeps the best third at
each, and compacts the survivors into a smaller vmapped batch: 81 members train 50 steps, 27
train to 150 and only 9 run all 450. The survivors' curves and models are exactly those of the
unpruned sweep; the pruned ones keep their curves up to their rung (``pruned_at``).

Run: ``python examples/08_successive_halving.py`` (about half a minute on 2 CPU cores). With
``JAXLR_EXAMPLE_SMOKE=1`` it runs a tiny version.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

import jaxlr

SMOKE = os.environ.get("JAXLR_EXAMPLE_SMOKE") == "1"
STEPS, MIN_STEPS, NUM_LRS = (60, 20, 9) if SMOKE else (450, 50, 27)


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


def main():
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(x))
    train, test = perm[:1400], perm[1400:]

    grid = jaxlr.grid(lr=np.logspace(-4, 0.5, NUM_LRS), seed=3)
    prune = jaxlr.successive_halving(min_steps=MIN_STEPS, reduction_factor=3, by="eval")
    print(f"{len(grid)} members; rungs at steps {prune.rungs(STEPS)} of {STEPS}")
    t0 = time.perf_counter()
    result = jaxlr.sweep(lambda key: MLP(nnx.Rngs(key)), loss_fn, (x[train], y[train]),
                         lambda hp: jaxlr.adam(hp["lr"]), grid, steps=STEPS, batch_size=128,
                         eval_data=(x[test], y[test]), eval_every=MIN_STEPS, prune=prune)
    seconds = time.perf_counter() - t0
    ran = int(np.where(result.pruned_at >= 0, result.pruned_at, STEPS).sum())
    print(f"{seconds:.1f} s; {ran} member-steps trained of {len(grid) * STEPS} unpruned "
          f"({ran / (len(grid) * STEPS):.0%})")
    for rung in prune.rungs(STEPS):
        print(f"  pruned at step {rung}: {int((result.pruned_at == rung).sum())} members")
    print(result.table())
    best = result.best(by="eval", over="seed")
    print(f"best LR (mean eval loss over seeds): {best.hparams['lr']:.3g} "
          f"-> {best.value:.4f} ± {best.std:.4f}")


if __name__ == "__main__":
    main()
