"""Compose jaxlr with optax and Flax NNX: three ways to train a small MLP on sklearn's digits.

jaxlr's optimizers are plain optax transforms, so they drop into ``optax.chain`` and
``flax.nnx.Optimizer`` like any other. This script trains the same tiny MLP (64 -> 128 -> 10)
on the 8x8 digits of ``sklearn.datasets.load_digits`` three times and prints, as it trains, the
loss and the learning rate the last update used (``jaxlr.current_lr``):

1. ``optax.chain(optax.clip_by_global_norm(1.0), jaxlr.adamw(jaxlr.warmup_cosine_decay(...)))``:
   gradient clipping in front of AdamW driven by a warmup + cosine schedule.
2. ``optax.chain(optax.add_decayed_weights(5e-4), jaxlr.sgd(0.05, momentum=0.9))``: SGD with
   momentum and L2 weight decay, which is what ``torch.optim.SGD(weight_decay=5e-4)`` does.
   (Chained the other way round, after ``sgd``, the decay is added to an update that is already
   ``-lr * g``: it is not scaled by the LR and needs a negative sign to shrink the weights.)
3. ``jaxlr.adam(jaxlr.reduce_on_plateau(jaxlr.warmup(...)))``: warm up, then cut the LR when the
   training loss stops improving -- one controller, advanced by ``update(..., value=loss)``.
   torch's SequentialLR cannot put a ReduceLROnPlateau after a warmup; here it is one object.

Every step passes ``value=loss`` to the optimizer; transforms that do not need it ignore it.

Run: ``python examples/01_compose_optimizers.py`` (a few seconds on a CPU). With
``JAXLR_EXAMPLE_SMOKE=1`` it runs only a few steps (used by the test suite).
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
STEPS = 12 if SMOKE else 600
LOG_EVERY = 4 if SMOKE else 100
BATCH = 128


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 128, rngs=rngs)
        self.out = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(jax.nn.relu(self.hidden(x)))


def loss_fn(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    # value= advances a reduce_on_plateau controller; the other optimizers ignore it
    optimizer.update(model, grads, value=loss)
    return loss


@nnx.jit
def accuracy(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(model(x), axis=-1) == y)


def load_data(seed: int = 0):
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm], y[perm]
    return (x[:1500], y[:1500]), (x[1500:], y[1500:])


def train(name: str, tx: optax.GradientTransformation, train_data, test_data) -> None:
    print(f"\n== {name}")
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x, y = train_data
    rng = np.random.default_rng(1)
    for step in range(1, STEPS + 1):
        idx = rng.choice(len(x), BATCH, replace=False)
        loss = train_step(model, optimizer, x[idx], y[idx])
        if step % LOG_EVERY == 0 or step == 1:
            lr = float(jaxlr.current_lr(optimizer.opt_state))
            print(f"step {step:4d}  loss {float(loss):.4f}  lr {lr:.2e}")
    acc = float(accuracy(model, *test_data))
    print(f"test accuracy {acc:.3f}")


def main() -> None:
    train_data, test_data = load_data()

    schedule = jaxlr.warmup_cosine_decay(
        init_value=0.0, peak_value=3e-3, warmup_steps=STEPS // 10, decay_steps=STEPS
    )
    train(
        "clip_by_global_norm + adamw(warmup_cosine_decay)",
        optax.chain(optax.clip_by_global_norm(1.0), jaxlr.adamw(schedule, weight_decay=1e-4)),
        train_data,
        test_data,
    )

    train(
        "add_decayed_weights + sgd(momentum=0.9)",
        optax.chain(optax.add_decayed_weights(5e-4), jaxlr.sgd(0.05, momentum=0.9)),
        train_data,
        test_data,
    )

    # the LR is warmup(step) * scale; every `accumulate` steps the mean of the last losses is
    # one plateau decision, and after `patience` + 1 decisions without improvement scale *= 0.5
    plateau = jaxlr.reduce_on_plateau(
        jaxlr.warmup(jaxlr.constant(3e-3), warmup_steps=STEPS // 10),
        factor=0.5,
        patience=1,
        threshold=0.02,
        accumulate=max(1, STEPS // 30),
    )
    train("adam(reduce_on_plateau(warmup))", jaxlr.adam(plateau), train_data, test_data)


if __name__ == "__main__":
    main()
