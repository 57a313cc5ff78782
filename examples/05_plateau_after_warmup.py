"""Warm up, then reduce the LR on plateau: a sweep over the controller's patience and factor.

``jaxlr.reduce_on_plateau(jaxlr.warmup(jaxlr.constant(lr), 50), ...)`` is ONE learning-rate
controller: a 50-step linear warm-up, then PyTorch's ReduceLROnPlateau on the training loss
(``jaxlr.sweep`` passes each step's batch loss to the optimizer as ``value=``; ``accumulate=25``
averages 25 of them into one decision, so batch noise does not look like a plateau). torch
cannot chain a warm-up before ReduceLROnPlateau (SequentialLR rejects it); here it is one object.

The controller's ``patience`` and ``factor`` are traced like any hyperparameter, so the grid
below -- 5 patiences x 2 factors x 2 seeds, the largest patience longer than the run has
decisions (the never-cut baseline) -- is one compiled program. The table shows, per setting,
how many cuts were made, when the first came, the final LR and the final eval loss and
accuracy; the figure (loss curves, final eval vs patience, the LR of every member) is saved.

Run: ``python examples/05_plateau_after_warmup.py [--out runs/05_plateau.png]`` (about 30 s on
2 CPU cores). With ``JAXLR_EXAMPLE_SMOKE=1`` it runs a tiny version into a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

import jaxlr

SMOKE = os.environ.get("JAXLR_EXAMPLE_SMOKE") == "1"
STEPS = 60 if SMOKE else 600
WARMUP = 10 if SMOKE else 50
LR = 1e-1  # Adam at a high fixed LR: fast at first, then it rattles on a plateau; cuts cure it
ACCUMULATE = 5 if SMOKE else 25  # batch losses averaged into one plateau decision
NEVER = STEPS // ACCUMULATE  # a patience longer than the run has decisions: the no-cut baseline


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
    ctrl = jaxlr.reduce_on_plateau(jaxlr.warmup(jaxlr.constant(LR), WARMUP),
                                   factor=hp["factor"], patience=hp["patience"],
                                   accumulate=ACCUMULATE)
    return jaxlr.adam(ctrl)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = (Path(tempfile.mkdtemp()) if SMOKE else Path("runs")) / "05_plateau.png"
    parser.add_argument("--out", type=Path, default=default, help="the figure to write")
    out = parser.parse_args().out
    out.parent.mkdir(parents=True, exist_ok=True)

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(x))
    train, test = perm[:1400], perm[1400:]

    grid = jaxlr.grid(patience=[0, 2, 4, 8, NEVER], factor=[0.2, 0.5], seed=2)
    print(grid)
    result = jaxlr.sweep(lambda key: MLP(nnx.Rngs(key)), loss_fn, (x[train], y[train]),
                         optimizer, grid, steps=STEPS, batch_size=128,
                         eval_data=(x[test], y[test]), eval_every=STEPS // 6,
                         progress=not SMOKE)

    lr = result.lr
    cuts = (np.diff(lr[:, WARMUP:], axis=1) < 0).sum(axis=1)
    first = [int(np.argmax(np.diff(r[WARMUP:]) < 0)) + WARMUP + 1 if c else -1
             for r, c in zip(lr, cuts)]
    print(f"\n{'patience':>8} {'factor':>6} {'cuts':>5} {'1st cut':>7} {'final LR':>9} "
          f"{'eval loss':>16} {'accuracy':>15}")
    for idx in result.by_setting().values():
        i = idx[0]
        ev, acc = result.eval[idx, -1], result.eval_aux["accuracy"][idx, -1]
        name = "never" if result.hparams["patience"][i] == NEVER else result.hparams[
            "patience"][i]
        print(f"{name!s:>8} {result.hparams['factor'][i]:6.2g} {cuts[idx].mean():5.1f} "
              f"{min((first[j] for j in idx if first[j] >= 0), default=-1):7d} "
              f"{np.median(lr[idx, -1]):9.2e} "
              f"{ev.mean():9.4f} ± {ev.std():.4f} {acc.mean():8.4f} ± {acc.std():.4f}")
    best = result.best(by="eval", over="seed")
    base = result.metric("eval")[result.hparams["patience"] == NEVER].mean()
    print(f"\nbest: patience={best.hparams['patience']}, factor={best.hparams['factor']:.2g} "
          f"-> eval loss {best.value:.4f} ± {best.std:.4f} (never cutting: {base:.4f})")
    result.plot(path=out)
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
