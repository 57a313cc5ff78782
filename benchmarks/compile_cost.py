"""What a repeated sweep call costs now that no program traced from a user's function is kept
across calls (issue 14: a cached program served stale values).

Digits MLP 64-128-128-10 (pure-JAX params), Adam, batch 128, 300 steps, M = 16 learning
rates, ``progress=False``. In ONE process, the same ``jaxlr.sweep`` call is made ``--calls``
times (the same function objects each time). Per call: wall seconds, and the seconds that
``jax.monitoring`` reports for tracing, lowering and XLA compilation. Then the CLI's default
run (``jaxlr sweep``, 16 LRs x 3 seeds) is timed end to end in a subprocess.

Run: ``python benchmarks/compile_cost.py [--calls 3]``; with ``PYTHONPATH=<an older checkout>``
it measures that checkout's jaxlr (the figures in benchmarks/README.md compare the two).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import monitoring

import jaxlr

EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "compile",
}
seen: collections.Counter = collections.Counter()


def _listen(event: str, duration: float, **kwargs) -> None:
    if event in EVENTS:
        seen[EVENTS[event]] += duration


def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y, jnp.int32)


def init(key):
    sizes = [64, 128, 128, 10]
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def loss_fn(params, batch):
    x, y = batch
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    logits = x @ params[-1]["w"] + params[-1]["b"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))


def optimizer(hp):
    return jaxlr.adam(hp["lr"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--no-cli", action="store_true")
    args = ap.parse_args()
    monitoring.register_event_duration_secs_listener(_listen)
    data = digits()
    grid = jaxlr.grid(lr=np.logspace(-4, -1, 16))
    cpu = platform.processor() or platform.machine()
    print(f"# jaxlr from {os.path.dirname(jaxlr.__file__)}; {cpu}, {os.cpu_count()} cores; "
          f"jax {jax.__version__}; {datetime.date.today()}")
    print("| call | wall s | trace s | lower s | XLA compile s |")
    print("|---|---|---|---|---|")
    for i in range(args.calls):
        seen.clear()
        t = time.perf_counter()
        res = jaxlr.sweep(init, loss_fn, data, optimizer, grid, steps=300, batch_size=128,
                          progress=False)
        np.asarray(res.loss)
        wall = time.perf_counter() - t
        print(f"| {i + 1} | {wall:.2f} | {seen['trace']:.2f} | {seen['lower']:.2f} | "
              f"{seen['compile']:.2f} |")
    if not args.no_cli:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "jaxlr._cli", "sweep", "--no-progress",
                            "--out", os.path.join(d, "run")], check=True,
                           capture_output=True)
            print(f"\nCLI default run (`jaxlr sweep`, a fresh process): "
                  f"{time.perf_counter() - t:.1f} s wall")


if __name__ == "__main__":
    main()
