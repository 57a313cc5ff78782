"""The per-step cost of ``jaxlr.sweep`` against two hand-written experts, from the DIFFERENCE of
two run lengths (so every fixed per-call cost cancels: tracing, lowering, data transfer, init,
dispatch, fetching the curves).

Workload: digits MLP 64-128-128-10 (sklearn ``load_digits``, X / 16, pure-JAX params, relu),
softmax cross-entropy, ``optax.adam``, batch 128, one seed, M learning rates (logspace 1e-4 to
1e-1). Variants, each run at two step counts S1 < S2:
  jaxlr    ``jaxlr.sweep(..., progress=False)``: the whole run is one program (its executable
           is compiled by an untimed first call; later calls trace and lower again, as every
           sweep call does, and reuse it);
  table    hand-written ``jit(vmap(train_one))``, ``train_one`` = init + ``lax.scan`` over a
           precomputed per-member index table [M, steps, 128] passed in (as the ``expert`` of
           ``benchmarks/sweep.py``);
  randint  the same, but each step samples its batch with ``jax.random.randint`` from a
           per-member key folded with the step (no table).
The experts are compiled with ``jit(...).lower(...).compile()`` before timing and their losses
[M, steps] are fetched, as the sweep's curves are. One repetition calls every (variant, S) once,
the order reversed every other repetition. µs per member-step = (time at S2 - time at S1) /
(M x (S2 - S1)) per repetition; the tables give the median over repetitions and its quartiles,
and the jaxlr/expert ratio as the median of the per-repetition ratios (each repetition's calls
ran back to back, so a change of load hits both). "foreign cores": CPU time other processes used
during the timed calls / wall time (Linux ``/proc/stat``), the noise from the machine.

Run: ``python benchmarks/step_cost.py`` (M in {1, 16, 32}, S = 100 and 400, 5 repetitions, 20
at M=1: ~4 minutes on 2 idle CPU cores, longer on a loaded machine), ``--big`` adds M = 128
(~5 minutes more), ``--quick`` is a smoke test (~1 minute, numbers meaningless);
``--members``, ``--steps``, ``--reps`` override. ``--one-core`` runs everything on one CPU core
with one XLA thread (``taskset`` and ``--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1``): on the 2-core VM this halves the spread of the paired ratios
(run 6), since neither program's thread pool then meets the other core's interruptions.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlr

SIZES = (64, 128, 128, 10)
BATCH = 128
VARIANTS = ("jaxlr", "table", "randint")
ONE_CORE = "JAXLR_STEP_COST_ONE_CORE"  # set in the re-executed process of --one-core


def load_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int32)


def init(key: jax.Array) -> list:
    """He-normal weights from ONE ``random.normal`` call, zero biases."""
    shapes = list(zip(SIZES[:-1], SIZES[1:], strict=True))
    z = jax.random.normal(key, (sum(a * b for a, b in shapes),), jnp.float32)
    params, offset = [], 0
    for a, b in shapes:
        w = z[offset:offset + a * b].reshape(a, b) * np.float32(np.sqrt(2.0 / a))
        params.append({"w": w, "b": jnp.zeros((b,), jnp.float32)})
        offset += a * b
    return params


def loss_fn(params: list, batch: tuple) -> jax.Array:
    x, y = batch
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    logits = x @ params[-1]["w"] + params[-1]["b"]
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def lrs(m: int) -> np.ndarray:
    return np.logspace(-4.0, -1.0, m).astype(np.float32)


def index_table(m: int, steps: int, n: int) -> np.ndarray:
    """[m, steps, BATCH] int32: member i's batches, an epoch = the first n // BATCH full batches
    of a permutation drawn from (i, epoch)."""
    per_epoch = n // BATCH
    epochs = -(-steps // per_epoch)
    out = np.empty((m, epochs * per_epoch * BATCH), np.int32)
    for i in range(m):
        rng = np.random.default_rng(i)
        out[i] = np.concatenate([rng.permutation(n)[:per_epoch * BATCH] for _ in range(epochs)])
    return out.reshape(m, -1, BATCH)[:, :steps]


def _step(tx, x, y):
    def step(carry, idx):
        params, opt_state = carry
        batch = (jnp.take(x, idx, axis=0), jnp.take(y, idx, axis=0))
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return step


def expert(kind: str, data: tuple, m: int, steps: int) -> Callable[[], None]:
    """A compiled expert (``kind``: "table" or "randint") and its arguments, as a call."""
    n = len(data[0])
    x, y = (jnp.asarray(a) for a in data)

    def with_table(seed, lr, idx, x, y):
        params, tx = init(jax.random.key(seed)), optax.adam(lr)
        (params, _), losses = jax.lax.scan(_step(tx, x, y), (params, tx.init(params)), idx)
        return params, losses

    def with_randint(seed, lr, member, x, y):
        params, tx = init(jax.random.key(seed)), optax.adam(lr)
        key = jax.random.fold_in(jax.random.key(1), member)
        step = _step(tx, x, y)

        def sampled(carry, t):
            return step(carry, jax.random.randint(jax.random.fold_in(key, t), (BATCH,), 0, n))

        (params, _), losses = jax.lax.scan(sampled, (params, tx.init(params)),
                                           jnp.arange(steps, dtype=jnp.int32))
        return params, losses

    if kind == "table":
        fn, third = with_table, jnp.asarray(index_table(m, steps, n))
    else:
        fn, third = with_randint, jnp.arange(m, dtype=jnp.int32)
    args = (jnp.zeros(m, jnp.int32), jnp.asarray(lrs(m)), third, x, y)
    compiled = jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, None, None))).lower(*args).compile()

    def call():
        params, losses = compiled(*args)
        np.asarray(losses)
        jax.block_until_ready(params)

    return call


def sweep_call(data: tuple, m: int, steps: int) -> Callable[[], None]:
    def call():
        res = jaxlr.sweep(init, loss_fn, data, lambda hp: optax.adam(hp["lr"]),
                          jaxlr.grid(lr=lrs(m)), steps=steps, batch_size=BATCH, progress=False)
        np.asarray(res.loss)

    return call


# --------------------------------------------------------------------------- measurement


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _busy() -> float | None:
    """Seconds of CPU time the whole machine spent busy (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
    except OSError:
        return None
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def timed(call: Callable[[], None]) -> tuple[float, float | None]:
    """(wall seconds, cores other processes kept busy meanwhile, or None)."""
    busy0, cpu0, t0 = _busy(), _cpu(), time.perf_counter()
    call()
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    busy1 = _busy()
    other = None if busy0 is None or busy1 is None else max(busy1 - busy0 - cpu, 0.0) / wall
    return wall, other


def quartiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 4:
        return min(xs), max(xs)
    q1, _, q3 = statistics.quantiles(xs, n=4)
    return q1, q3


def measure(data: tuple, m: int, steps: tuple[int, int], reps: int) -> dict:
    calls = {}
    for s in steps:
        calls["table", s] = expert("table", data, m, s)
        calls["randint", s] = expert("randint", data, m, s)
        calls["jaxlr", s] = sweep_call(data, m, s)
    for call in calls.values():  # compiles jaxlr's programs; warms every variant up
        call()
    keys = list(calls)
    times: dict = {k: [] for k in keys}
    other = []
    for rep in range(reps):
        for k in keys if rep % 2 == 0 else keys[::-1]:
            wall, busy = timed(calls[k])
            times[k].append(wall)
            if busy is not None:
                other.append(busy)
    s1, s2 = steps
    per = {v: [(b - a) / (m * (s2 - s1)) * 1e6 for a, b in
               zip(times[v, s1], times[v, s2], strict=True)] for v in VARIANTS}
    return {"per": per, "other": other, "times": times}


def report(results: dict, steps: tuple[int, int]) -> None:
    s1, s2 = steps
    print(f"## µs per member-step from the difference of {s2}- and {s1}-step runs")
    print()
    print("| M | repetitions | jaxlr | table | randint | jaxlr/table | its quartiles "
          "| jaxlr/randint | its quartiles | randint/table | foreign cores (median, max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m, r in results.items():
        per = r["per"]
        cells = [str(m), str(len(per["jaxlr"]))]
        for v in VARIANTS:
            q1, q3 = quartiles(per[v])
            cells.append(f"{statistics.median(per[v]):.1f} ({q1:.0f}–{q3:.0f})")
        for a, b in (("jaxlr", "table"), ("jaxlr", "randint"), ("randint", "table")):
            ratio = [x / y for x, y in zip(per[a], per[b], strict=True)]
            cells.append(f"{statistics.median(ratio):.3f}")
            if a == "jaxlr":  # the quartiles of the jaxlr/expert ratios
                q1, q3 = quartiles(ratio)
                cells.append(f"{q1:.3f}–{q3:.3f}")
        other = r["other"]
        cells.append(f"{statistics.median(other):.2f}, {max(other):.2f}" if other else "—")
        print("| " + " | ".join(cells) + " |")
    print()
    print("Per variant: the median µs per member-step over repetitions (its quartiles in "
          "brackets). Ratios: the median over repetitions of the ratio of the two variants' "
          "differences, measured in the same repetition. Foreign cores: CPU time of other "
          "processes during the timed calls / wall time (0 on a quiet machine; up to the "
          "number of cores).")
    print()
    print(f"Whole-call µs per member-step at {s2} steps (median; fixed per-call costs "
          "included):")
    print()
    print("| M | " + " | ".join(VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    for m, r in results.items():
        print(f"| {m} | " + " | ".join(
            f"{statistics.median(r['times'][v, s2]) / (m * s2) * 1e6:.1f}" for v in VARIANTS)
            + " |")
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", default="1,16,32", help="comma-separated M (default 1,16,32)")
    ap.add_argument("--big", action="store_true", help="add M = 128")
    ap.add_argument("--steps", default="100,400", help="the two step counts (default 100,400)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions at M >= 16 (default 5; "
                    "a smaller M gets up to 4 times as many)")
    ap.add_argument("--quick", action="store_true", help="smoke test: M in {1, 4}, 10 and 30 "
                    "steps, 2 repetitions (numbers meaningless)")
    ap.add_argument("--one-core", action="store_true", help="run on one CPU core with one "
                    "XLA thread (re-executes this script so the settings apply from the start)")
    args = ap.parse_args(argv)
    if args.one_core and os.environ.get(ONE_CORE) != "1":
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env = {**os.environ, ONE_CORE: "1",
               "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()}
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # inherited through exec
        os.execve(sys.executable, [sys.executable, __file__, *(argv or sys.argv[1:])], env)
    members = [int(m) for m in args.members.split(",")] + ([128] if args.big else [])
    steps = tuple(int(s) for s in args.steps.split(","))
    reps = args.reps
    if args.quick:
        members, steps, reps = [1, 4], (10, 30), 2
    if len(steps) != 2 or not 0 < steps[0] < steps[1]:
        ap.error("--steps needs two step counts S1 < S2")
    started = time.perf_counter()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print("# jaxlr.sweep per-step cost" + (" (--quick: numbers meaningless)" if args.quick
                                            else ""))
    print()
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- machine: {platform.platform()}; os.cpu_count()={os.cpu_count()}; load average "
          f"at start {load}")
    if os.environ.get(ONE_CORE) == "1":
        print(f"- one core: CPU {sorted(os.sched_getaffinity(0))}, XLA_FLAGS="
              f"{os.environ.get('XLA_FLAGS')!r}")
    print(f"- jax {jax.__version__} (backend {jax.default_backend()}), optax {optax.__version__}, "
          f"jaxlr {jaxlr.__version__}")
    print(f"- MLP 64-128-128-10 on digits, adam, batch {BATCH}; steps {steps[0]} and {steps[1]}",
          flush=True)
    print()
    data = load_data()
    results = {}
    for m in members:
        # a small M's calls are short and its differences small beside jaxlr's per-call host
        # work (tracing, lowering: ~0.1-0.3 s, which varies): more repetitions
        results[m] = measure(data, m, steps, reps * max(1, min(4, 16 // m)))
        per = results[m]["per"]
        print(f"  measured M={m}: " + ", ".join(
            f"{v} {statistics.median(per[v]):.1f}" for v in VARIANTS)
            + f" µs/member-step ({time.perf_counter() - started:.0f} s)", flush=True)
    print()
    report(results, steps)
    print(f"total time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
