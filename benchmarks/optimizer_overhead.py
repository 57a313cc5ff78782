"""Update time of jaxlr's optimizers against optax's, in the same run.

For each pair (jaxlr.adam vs optax.adam, SGD with momentum, RMSProp, Adam with a cosine
schedule) both implementations get an identical set-up: the same ~10M-parameter float32 pytree,
the same gradients, one ``jax.jit``-ed step ``(params, grads, state) -> (params, state)`` doing
``tx.update`` + ``optax.apply_updates`` with params and state donated. After a warm-up (compile +
a few steps) the two are timed in alternating blocks of ``--iters`` updates (the order flips every
repetition, so drift and thermal effects hit both alike); each block ends with
``block_until_ready``. The table reports the median block time per update and the median of the
paired per-repetition ratios jaxlr/optax (goal: <= 1.05), plus two noise-free checks: the ratio
of the bytes the two compiled updates read and write (XLA's cost analysis) and the largest
difference between their parameters. A control row times optax against itself: how far from 1
its ratio lands is the noise of the machine at that moment.

Run: ``python benchmarks/optimizer_overhead.py`` (one to two minutes on 2 CPU cores) or
``--quick`` for a smoke test (a ~100k-parameter tree, few repetitions). Record figures in
``benchmarks/README.md`` with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlr

GOAL = 1.05


def make_tree(n_params: int, seed: int = 0) -> dict:
    """A dict of float32 matrices and biases (an MLP-like tree) holding about ``n_params``."""
    # widths chosen so that 2*d*4d + d*1.5d + biases ~= n_params
    d = max(8, int(round((n_params / 9.5) ** 0.5)))
    shapes = {
        "dense1": {"w": (d, 4 * d), "b": (4 * d,)},
        "dense2": {"w": (4 * d, d), "b": (d,)},
        "head": {"w": (d, 3 * d // 2), "b": (3 * d // 2,)},
    }
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(rng.standard_normal(s, dtype=np.float32) * 0.01),
        shapes,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def pairs() -> list[tuple[str, optax.GradientTransformation, optax.GradientTransformation]]:
    """(name, jaxlr transform, optax transform) with the same hyperparameters."""
    return [
        ("adam", jaxlr.adam(1e-3), optax.adam(1e-3)),
        ("sgd(momentum=0.9)", jaxlr.sgd(1e-2, momentum=0.9), optax.sgd(1e-2, momentum=0.9)),
        ("rmsprop", jaxlr.rmsprop(1e-3), optax.rmsprop(1e-3)),
        (
            "adam + cosine_decay",
            jaxlr.adam(jaxlr.cosine_decay(1e-3, 10_000)),
            optax.adam(optax.cosine_decay_schedule(1e-3, 10_000)),
        ),
    ]


CONTROL = "control: optax vs optax"


def control() -> tuple[str, optax.GradientTransformation, optax.GradientTransformation]:
    """optax.adam against itself (an A/A test): how far the ratio strays by noise alone."""
    return (CONTROL, optax.adam(1e-3), optax.adam(1e-3))


def make_step(tx: optax.GradientTransformation):
    """One jitted training update; params and optimizer state are donated."""

    def step(params, grads, state):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 2))


def hlo_bytes(tx, params, grads) -> float:
    """Bytes the compiled update reads and writes, by XLA's cost analysis (noise-free)."""
    step = make_step(tx)
    cost = step.lower(params, grads, tx.init(params)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("bytes accessed", float("nan"))) if cost else float("nan")


def copy_tree(tree):
    return jax.tree.map(jnp.copy, tree)


def run_block(step, carry, grads, iters: int):
    """``iters`` updates; returns the new carry and the seconds per update."""
    params, state = carry
    jax.block_until_ready((params, state))
    t0 = time.perf_counter()
    for _ in range(iters):
        params, state = step(params, grads, state)
    jax.block_until_ready((params, state))
    return (params, state), (time.perf_counter() - t0) / iters


def bench_pair(jaxlr_tx, optax_tx, params, grads, *, reps: int, iters: int, warmup: int):
    """Median µs/update of each, the median paired ratio, the ratio of XLA's bytes accessed, and
    the max |params difference| after the warm-up."""
    impls = {"jaxlr": jaxlr_tx, "optax": optax_tx}
    bytes_ratio = hlo_bytes(jaxlr_tx, params, grads) / hlo_bytes(optax_tx, params, grads)
    steps = {k: make_step(tx) for k, tx in impls.items()}
    carries = {}
    for k, tx in impls.items():
        p = copy_tree(params)
        carries[k] = (p, tx.init(p))
        for _ in range(warmup):  # compiles on the first call
            carries[k] = steps[k](carries[k][0], grads, carries[k][1])
        jax.block_until_ready(carries[k])
    # same start, same gradients, same number of steps: the two must agree
    leaves = [jax.tree.leaves(carries[k][0]) for k in impls]
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(*leaves, strict=True))
    times = {k: [] for k in impls}
    for r in range(reps):
        order = ("jaxlr", "optax") if r % 2 == 0 else ("optax", "jaxlr")
        for k in order:
            carries[k], t = run_block(steps[k], carries[k], grads, iters)
            times[k].append(t)
    ratio = statistics.median(a / b for a, b in zip(times["jaxlr"], times["optax"], strict=True))
    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    return med["jaxlr"], med["optax"], ratio, bytes_ratio, diff


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small tree, few reps (smoke test)")
    ap.add_argument("--params", type=int, default=None, help="approximate parameter count")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per optimizer")
    ap.add_argument("--iters", type=int, default=None, help="updates per timed block")
    ap.add_argument("--x64", action="store_true",
                    help="turn on jax_enable_x64 (the tree stays float32)")
    args = ap.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    n_params = args.params or (100_000 if args.quick else 10_000_000)
    reps = args.reps or (3 if args.quick else 41)
    iters = args.iters or (3 if args.quick else 10)
    warmup = 2 if args.quick else 5

    params = make_tree(n_params)
    grads = make_tree(n_params, seed=1)
    n = sum(x.size for x in jax.tree.leaves(params))
    shapes = jax.tree.map(lambda x: x.shape, params)

    print("jaxlr optimizer overhead benchmark")
    print(f"date:     {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"machine:  {platform.platform()}; CPU {cpu_name()}; os.cpu_count()={os.cpu_count()}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"load avg: {load} (other processes on the machine make the ratios noisy)")
    print(f"jax:      {jax.__version__} (backend {jax.default_backend()}, devices {jax.devices()}, "
          f"x64 {'on' if jax.config.jax_enable_x64 else 'off'})")
    print(f"versions: optax {optax.__version__}, jaxlr {jaxlr.__version__}, "
          f"python {platform.python_version()}")
    print(f"tree:     {n:,} float32 parameters in {len(jax.tree.leaves(params))} leaves {shapes}")
    print(f"timing:   {reps} repetitions x {iters} updates per implementation, alternating "
          f"order, after {warmup} warm-up updates; jit, params+state donated")
    print()
    header = f"{'optimizer':<26}{'jaxlr µs/update':>17}{'optax µs/update':>17}{'ratio':>8}"
    header += f"{'HLO bytes':>11}{'max|Δparams|':>14}"
    print(header)
    print("-" * len(header))
    over = []
    for name, jtx, otx in [*pairs(), control()]:
        j, o, ratio, bytes_ratio, diff = bench_pair(
            jtx, otx, params, grads, reps=reps, iters=iters, warmup=warmup
        )
        judged = name != CONTROL and not args.quick
        flag = "  > goal" if judged and ratio > GOAL else ""
        row = f"{name:<26}{j:>17.1f}{o:>17.1f}{ratio:>8.3f}{bytes_ratio:>11.4f}{diff:>14.2e}"
        print(row + flag, flush=True)
        if flag:
            over.append(name)
    print()
    print(f"ratio = median over repetitions of (jaxlr block time / optax block time), each pair "
          f"timed back to back; goal <= {GOAL}.")
    print(f"'{CONTROL}' times optax.adam in both columns: its distance from 1 is the noise floor.")
    print("HLO bytes = jaxlr/optax ratio of the bytes the compiled update reads and writes "
          "(XLA cost analysis; deterministic, and what bounds a memory-bound update).")
    print("max|Δparams| = largest difference between the two implementations' parameters after "
          "the warm-up updates (same start, same gradients).")
    if args.quick:
        print("--quick is a smoke test: its timings are too short to judge the goal.")
    if over:
        print(f"over the goal: {', '.join(over)} (compare with the control row)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
