"""Sweep the learning rate of a Flax linen model: 12 LRs x 3 seeds of SGD + momentum, one program.

``jaxlr.sweep`` takes linen variables as they come from ``module.init``: ``init(key)`` returns
``{"params": ...}`` and ``loss_fn(variables, batch)`` calls ``module.apply``. Only
``variables["params"]`` is optimized. Every member uses Nesterov SGD (momentum 0.9) with a
20-step warm-up and a cosine decay; its peak LR arrives traced in ``hp["lr"]``, so the 36
members compile once and train together. The best member's trained variables are ordinary
linen variables: ``module.apply(best.params, x)``.

Compare with ``03_nnx_lr_sweep.py`` (the same sweep with an NNX module and Adam): SGD needs an
LR about 10x larger than Adam on this problem, and it falls off a cliff just above its best.

Run: ``python examples/04_linen_lr_sweep.py`` (about 20 s on 2 CPU cores). On a CPU, set
``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` to shard the members over the
cores. With ``JAXLR_EXAMPLE_SMOKE=1`` it runs a tiny version.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import jaxlr

SMOKE = os.environ.get("JAXLR_EXAMPLE_SMOKE") == "1"
STEPS = 30 if SMOKE else 400
NUM_LRS = 4 if SMOKE else 12
WARMUP = 20


class MLP(nn.Module):
    hidden: int = 128

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
        return nn.Dense(10, name="out")(h)


MODEL = MLP()


def loss_fn(variables, batch):
    x, y = batch
    logits = MODEL.apply(variables, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}


def optimizer(hp):
    schedule = jaxlr.warmup(jaxlr.cosine_decay(hp["lr"], STEPS - WARMUP), WARMUP)
    return jaxlr.sgd(schedule, momentum=0.9, nesterov=True)


def main() -> None:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(x))
    train, test = perm[:1400], perm[1400:]

    grid = jaxlr.grid(lr=np.logspace(-3, 1, NUM_LRS), seed=3)
    print(grid)
    result = jaxlr.sweep(lambda key: MODEL.init(key, x[:1]), loss_fn, (x[train], y[train]),
                         optimizer, grid, steps=STEPS, batch_size=128,
                         eval_data=(x[test], y[test]), progress=not SMOKE)
    print(result.table())
    best = result.best(by="eval", over="seed")
    print(f"best peak LR (mean eval loss over seeds): {best.hparams['lr']:.3g} -> "
          f"{best.value:.4f} ± {best.std:.4f}")
    variables = best.params  # {"params": ...}, as module.init returns
    logits = MODEL.apply(variables, x[test])
    acc = float(jnp.mean(jnp.argmax(logits, -1) == y[test]))
    shapes = jax.tree.map(jnp.shape, variables)
    print(f"that member's linen variables: {shapes}; test accuracy {acc:.3f}")
    print(f"diverged: {int(result.diverged.sum())}/{len(result)} members (quarantined, the "
          "others unaffected)")


if __name__ == "__main__":
    main()
