"""The LR range test (Smith 2017) on sklearn's digits, for Adam and for SGD with momentum.

``jaxlr.find_lr`` trains an NNX MLP once while the learning rate grows exponentially from
1e-6 to 10 over 100 steps, for 3 seeds at once (one compiled program), stops a seed when its
loss blows up, and reads three suggestions off the smoothed loss-vs-LR curve: ``valley``
(fastai's default), ``steepest`` (the steepest descent) and ``minimum`` (the minimum / 10);
``suggestion`` is the steepest point x 10**0.4, the rule calibrated against dense sweeps on
real tasks (``benchmarks/finder_truth.py``). The test is optimizer-specific: with momentum SGD the
suggestion comes out several times above Adam's (a full sweep, ``03_nnx_lr_sweep.py`` vs
``04_linen_lr_sweep.py``, shows the same ordering).

The figures (smoothed loss vs LR, the seed band, the divergence stops and the suggestions)
are written to ``--out`` (default ``runs/``). The same test from the command line:
``jaxlr find`` (``--optimizer momentum`` for SGD).

Run: ``python examples/06_lr_finder.py [--out DIR]`` (about 20 s on 2 CPU cores). With
``JAXLR_EXAMPLE_SMOKE=1`` it runs 30 steps into a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

import jaxlr

SMOKE = os.environ.get("JAXLR_EXAMPLE_SMOKE") == "1"
STEPS = 30 if SMOKE else 100


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 128, rngs=rngs)
        self.out = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def loss_fn(model: MLP, batch):
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


OPTIMIZERS = {
    "adam": lambda lr: jaxlr.adam(lr),
    "sgd_momentum": lambda lr: jaxlr.sgd(lr, momentum=0.9),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(tempfile.mkdtemp()) if SMOKE else Path("runs"))
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)

    for name, make in OPTIMIZERS.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            res = jaxlr.find_lr(lambda key: MLP(nnx.Rngs(key)), loss_fn, (x, y), make,
                                min_lr=1e-6, max_lr=10.0, steps=STEPS, seeds=3,
                                batch_size=128)
        stops = ", ".join(f"{res.lrs[d]:.2g}" if d >= 0 else "never" for d in res.diverged_at)
        print(f"{name}: suggestion {res.suggestion:.3g}  "
              + "  ".join(f"{k} {v:.3g}" for k, v in res.suggestions.items())
              + f"  (stopped at lr: {stops})")
        for w in caught:
            print(f"  note: {w.message}")
        path = out / ("finder.png" if name == "adam" else f"finder_{name}.png")
        res.plot(path=path)
        print(f"  figure: {path}")


if __name__ == "__main__":
    main()
