"""Find a learning rate with the LR range test, sweep around it, and diagnose every run.

1. ``jaxlr.find_lr`` ramps the LR of an NNX MLP on sklearn's digits from 1e-6 to 10 (3 seeds,
   one compiled program) and suggests an LR.
2. ``jaxlr.sweep`` trains 7 LRs from 10x below to 10x above the suggestion x 2 seeds.
3. ``SweepResult.diagnose()`` labels every run (diverged / oscillating / too_slow /
   schedule_too_aggressive / healthy) with its evidence and the fix; both figures are saved.

Run: ``python examples/find_and_sweep.py [--out DIR]`` (about a minute on 2 CPU cores; figures
go to ``runs/`` by default). With ``JAXLR_EXAMPLE_SMOKE=1`` it runs a tiny version.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

import jaxlr

SMOKE = os.environ.get("JAXLR_EXAMPLE_SMOKE") == "1"


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 128, rngs=rngs)
        self.out = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def loss_fn(model: MLP, batch):
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=tempfile.mkdtemp() if SMOKE else "runs")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(x))
    train, test = (x[perm[:1400]], y[perm[:1400]]), (x[perm[1400:]], y[perm[1400:]])
    init = lambda key: MLP(nnx.Rngs(key))

    finder = jaxlr.find_lr(init, loss_fn, train, lambda lr: jaxlr.adam(lr), min_lr=1e-6,
                           max_lr=10.0, steps=30 if SMOKE else 100, seeds=3, batch_size=64)
    print("LR range test suggestions:",
          {k: f"{v:.3g}" for k, v in finder.suggestions.items()},
          f"-> suggestion {finder.suggestion:.3g}")
    finder.plot(path=out / "finder.png")

    center = finder.suggestion if np.isfinite(finder.suggestion) else 1e-3
    grid = jaxlr.grid(lr=center * np.logspace(-1, 1, 7), seed=2)
    result = jaxlr.sweep(init, loss_fn, train, lambda hp: jaxlr.adam(hp["lr"]), grid,
                         steps=20 if SMOKE else 300, batch_size=64, eval_data=test,
                         progress=not SMOKE)
    print(result.table())
    print("\ndiagnosis of every run:")
    for member, d in zip(grid, result.diagnose()):
        print(f"  lr={member['lr']:.3g} seed={member['seed']}: {d}")
    best = result.best(by="eval", over="seed")
    print(f"\nbest LR: {best.hparams['lr']:.3g} (eval loss {best.value:.4f} ± {best.std:.4f})")
    result.plot(path=out / "sweep.png")
    print(f"figures: {out / 'finder.png'}, {out / 'sweep.png'}")


if __name__ == "__main__":
    main()
