"""A task file for ``jaxlr sweep --task``: a small NNX CNN on scikit-learn's digits (8x8).

Run it from the command line (every other option works as with the built-in models)::

    jaxlr sweep --task examples/tasks/digits_cnn.py:make_task --task-option channels=16 \\
        --optimizer adam --lr 1e-4:1e-1:8 --seeds 2 --steps 300 --pbt 50

``make_task(**options)`` returns a :class:`jaxlr.Task`; the run directory records this file's
path, the options and the file's SHA-256, so ``jaxlr resume DIR`` and ``jaxlr.load(DIR)``
rebuild the same task (and refuse it if this file changed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

import jaxlr


class CNN(nnx.Module):
    """conv 3x3 (channels) -> relu -> conv 3x3 (channels) -> relu -> mean pool -> linear 10."""

    def __init__(self, channels: int, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, channels, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
        self.out = nnx.Linear(channels, 10, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.conv1(x))
        h = jax.nn.relu(self.conv2(h))
        return self.out(h.mean(axis=(1, 2)))


def loss_fn(model: CNN, batch):
    x, y = batch
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, {"accuracy": jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))}


def make_task(channels: int = 8, held_out: int = 397) -> jaxlr.Task:
    """The digits CNN task: ``channels`` per conv layer, the last ``held_out`` examples (of
    a fixed permutation) held out for evaluation."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]  # [n, 8, 8, 1]
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:-held_out], order[-held_out:]
    return jaxlr.Task(init=lambda key: CNN(channels, nnx.Rngs(key)), loss_fn=loss_fn,
                      data=(x[train], y[train]), eval_data=(x[test], y[test]))
