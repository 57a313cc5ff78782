"""Population-based training inside jaxlr.sweep against the grid sweep and successive halving.

Workloads (both: one seed, so every member slot sees the same batches; held-out loss =
``res.best(by="eval").value``, the lowest final eval loss among the members that did not
diverge):
  mlp     sklearn digits (X / 16), a fixed split: the first 1,400 examples train, the last 397
          are held out; MLP 64-128-128-10 (pure-JAX params, relu, He-normal init: the model of
          ``benchmarks/sweep.py``), softmax cross-entropy, Adam, batch 128, 1,500 steps;
  mlp-sgd the same data and MLP with plain SGD, batch 128, 500 steps (the CLI's default budget),
          interval 50. Added in run 5 because the Adam task has no headroom: on it no decaying
          schedule beats the best constant LR (below), so a schedule learner has nothing to find.
          Chosen by that measure alone, before PBT ran on it: at 500 steps cosine decay from
          the grid's LRs beats the best constant (0.2633 vs 0.2761);
  lstsq   noisy least squares: d = 32 Gaussian features scaled from 1 down to 10**-1.5
          (``logspace(0, -1.5)``: ill-conditioned), y = x . w* + N(0, 1) noise, 4,096 training
          and 4,096 held-out examples (numpy seed 0); loss 0.5 * mean squared error, params
          init at 0, plain SGD, batch 8, 2,400 steps (the small directions want a large LR
          early, the noise a small one late: a decaying LR beats the constant ones).
Variants, all evaluated on the held-out split every ``interval`` steps (100; mlp-sgd: 50;
halving: see below), chunk size = the evaluation period:
  grid     ``jaxlr.sweep`` of 16 LRs ``logspace`` (mlp: 1e-4..1, Adam; mlp-sgd: 1e-3..10, SGD;
           lstsq: 1e-3..10**0.5, SGD), constant LRs;
  pbt      the same 16 starting points with ``policy=jaxlr.population_based(interval,
           by="eval")``
           (defaults otherwise: fraction 0.25, perturb (0.8, 1.25), resample 0.25, seed 0);
  halving  48 LRs ``logspace`` over the same range with ``prune=jaxlr.successive_halving(
           min_steps, 3, by="eval")``; min_steps is chosen (a multiple of interval / 2) so that
           its member-steps are as close as possible to 16 x steps (mlp: 250, rungs 250 and
           750: 48 -> 16 -> 5 settings, 23,750 member-steps vs 24,000; lstsq: 400, rungs 400
           and 1,200: 38,000 vs 38,400); its eval_every is gcd(min_steps, steps).
  cosine, linear (the headroom; not goals) the grid's 16 LRs as the peaks of
           ``optax.cosine_decay_schedule(lr, steps)`` / ``optax.linear_schedule(lr, 0, steps)``:
           whether any decaying schedule beats the best constant LR on the task.
Member-steps: the training steps each member was scheduled to run, summed (a pruned member
runs to its rung); "finite losses": the finite entries of ``res.loss`` (lower when members
diverged: a diverged member is frozen, its losses are NaN, its row still computed).
How measured: each (task, variant) runs once in a fresh subprocess (``--run JSON``; JAX's
start-up and the data loading are not timed): wall time of the whole ``jaxlr.sweep`` call,
compilation included; compile s = tracing + lowering + XLA compile from ``jax.monitoring``
events; backend compiles = the number of "/jax/core/compile/backend_compile_duration" events
during the call (per program name in the notes).
Exploit/explore cost: in one further subprocess, the mlp sweep (16 LRs, 800 steps, chunk_size
100, eval_every 100, progress=False) with the PBT policy and with ``policy=None``, called
alternately (order flipped every pair) after one untimed call of each, 7 timed pairs;
the cost of a round, as a share of a chunk = ((T_pbt - T_plain) / rounds) / (T_plain /
chunks), median over pairs (also with each call's compile time subtracted); the host's share
(the policy's ``after_chunk``: ranking, drawing, new hyperparameters) is timed inside. The
direct measure, free of the whole calls' noise (``round_gaps``, ``copy_time``): at a round the
loop waits for the chunk's curves, decides and only then dispatches the next chunk (a plain
sweep dispatches first), so the time from the curves reaching the host to the next dispatch
bounds the device's idle time per round from above (it also holds the evaluation's fetch and
the next chunk's batch indices, which the device computes meanwhile); plus the on-device copy
(a gather of params and Adam's moments, 50 timings), as a share of a chunk.
Goals: PBT's best held-out loss below the grid's (each task); a round (exploit/explore: the
policy and the row gather) <= 2% of a chunk's time (printed INCONCLUSIVE when the per-pair
shares' interquartile range is wider than 2 points: the noise of a busy machine); PBT's backend
compiles = the plain sweep's (first calls, fresh processes; and in the repeated calls).

Run: ``python benchmarks/pbt.py`` (full: ~4 minutes on 2 shared CPU cores) or ``--quick`` (a
smoke test, ~30-60 s on 2 cores, more when they are busy: 60 steps, interval 10, one process
in which later variants reuse programs compiled before; the numbers mean nothing). Record the
printed output under ``benchmarks/results/`` with the machine and the date.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlr
from jaxlr import PopulationBased

SCRIPT = Path(__file__).resolve()
sys.path.insert(0, str(SCRIPT.parent))
import sweep as bench_sweep  # noqa: E402  (benchmarks/sweep.py: the MLP, load_data, helpers)

GOAL_ROUND = 0.02  # a PBT round's cost / a chunk's time
POPULATION = 16
HALVING_SETTINGS = 48
ETA = 3
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
VARIANTS = ("grid", "pbt", "halving")
# The headroom: the grid's LRs as peaks of two decaying schedules. PBT learns a schedule; where
# no decay beats the best constant LR it has nothing to find but the constant.
HEADROOM = {"cosine": lambda lr, n: optax.cosine_decay_schedule(lr, n),
            "linear": lambda lr, n: optax.linear_schedule(lr, 0.0, n)}


class Task(NamedTuple):
    name: str
    steps: int
    interval: int  # PBT interval = eval_every = chunk_size of grid and pbt
    batch_size: int
    lr_range: tuple[float, float]  # log10 bounds of the LR grids

    def lrs(self, m: int) -> np.ndarray:
        return np.logspace(*self.lr_range, m).astype(np.float32)


SETUPS = {
    "full": {"tasks": [Task("mlp", 1500, 100, 128, (-4.0, 0.0)),
                       Task("mlp-sgd", 500, 50, 128, (-3.0, 1.0)),
                       Task("lstsq", 2400, 100, 8, (-3.0, 0.5))],
             "overhead": {"steps": 800, "pairs": 7}},
    "quick": {"tasks": [Task("mlp", 60, 10, 128, (-4.0, 0.0)),
                        Task("mlp-sgd", 40, 10, 128, (-3.0, 1.0)),
                        Task("lstsq", 60, 10, 8, (-3.0, 0.5))],
              "overhead": {"steps": 30, "pairs": 1}},
}


# --------------------------------------------------------------------------- workloads

LSTSQ_D, LSTSQ_N, LSTSQ_NOISE = 32, 4096, 1.0


def lstsq_data() -> tuple[tuple, tuple, float]:
    """(train, held-out, the held-out loss of the true weights w*)."""
    rng = np.random.default_rng(0)
    scales = np.logspace(0.0, -1.5, LSTSQ_D)
    w = rng.normal(size=LSTSQ_D)

    def draw(n):
        x = rng.normal(size=(n, LSTSQ_D)) * scales
        noise = LSTSQ_NOISE * rng.normal(size=n)
        return (x.astype(np.float32), (x @ w + noise).astype(np.float32)), noise

    train, _ = draw(LSTSQ_N)
    held, noise = draw(LSTSQ_N)
    return train, held, float(0.5 * np.mean(noise ** 2))


def lstsq_init(key: jax.Array) -> jax.Array:
    del key
    return jnp.zeros(LSTSQ_D, jnp.float32)


def lstsq_loss(w: jax.Array, batch: tuple) -> jax.Array:
    x, y = batch
    return 0.5 * jnp.mean((x @ w - y) ** 2)


def adam_of_lr(hp: dict) -> optax.GradientTransformation:
    return optax.adam(hp["lr"])


def sgd_of_lr(hp: dict) -> optax.GradientTransformation:
    return optax.sgd(hp["lr"])


def workload(task: Task) -> dict:
    """init, loss_fn, optimizer, train and held-out data (and the noise floor, lstsq);
    ``base`` makes the optimizer from a learning rate or schedule (the headroom variants)."""
    if task.name.startswith("mlp"):
        x, y = bench_sweep.load_data()
        sgd = task.name == "mlp-sgd"
        return {"init": bench_sweep.make_init(bench_sweep.WORKLOADS["mlp"]),
                "loss_fn": bench_sweep.loss_fn, "optimizer": sgd_of_lr if sgd else adam_of_lr,
                "base": optax.sgd if sgd else optax.adam,
                "train": (x[:-397], y[:-397]), "held": (x[-397:], y[-397:]), "floor": None}
    train, held, floor = lstsq_data()
    return {"init": lstsq_init, "loss_fn": lstsq_loss, "optimizer": sgd_of_lr,
            "base": optax.sgd, "train": train, "held": held, "floor": floor}


# --------------------------------------------------------------------------- plans


def halving_cost(n: int, steps: int, min_steps: int, eta: int = ETA) -> tuple[list[int], int]:
    """(rungs, member-steps) of successive halving from n settings (one seed each)."""
    rungs, r = [], min_steps
    while r < steps:
        rungs.append(r)
        r *= eta
    total, prev, alive = 0, 0, n
    for r in rungs:
        total += alive * (r - prev)
        alive, prev = max(1, alive // eta), r
    return rungs, total + alive * (steps - prev)


def halving_min_steps(task: Task) -> int:
    """The multiple of interval / 2 whose halving budget is nearest 16 x steps (ties: the
    larger)."""
    unit, target = max(1, task.interval // 2), POPULATION * task.steps
    candidates = range(unit, task.steps, unit)
    return min(candidates, key=lambda r: (abs(halving_cost(HALVING_SETTINGS, task.steps, r)[1]
                                              - target), -r))


def pbt_policy(task: Task) -> PopulationBased:
    return jaxlr.population_based(task.interval, by="eval")


class TimedPBT(PopulationBased):
    """The same rule, with the host time of each ``after_chunk`` recorded (a class attribute)."""

    __slots__ = ()
    host_s: list[float] = []

    def after_chunk(self, end):
        t0 = time.perf_counter()
        try:
            return super().after_chunk(end)
        finally:
            if end.step in self.rounds(end.steps):
                TimedPBT.host_s.append(time.perf_counter() - t0)


# --------------------------------------------------------------------------- measurement


class Compiles:
    """Backend compiles (count, per program name) and compile seconds over a block."""

    events: list[tuple[str, str, float]] = []
    _registered = False

    def __init__(self):
        if not Compiles._registered:
            jax.monitoring.register_event_duration_secs_listener(Compiles._listen)
            Compiles._registered = True

    @staticmethod
    def _listen(event: str, duration: float, **kwargs: Any) -> None:
        if event in bench_sweep.COMPILE_EVENTS:
            Compiles.events.append((event, str(kwargs.get("fun_name", "")), duration))

    def __enter__(self):
        Compiles.events.clear()
        self.cpu0, self.t0 = bench_sweep._cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = bench_sweep._cpu_seconds() - self.cpu0
        self.compile_s = sum(d for _, _, d in Compiles.events)
        names = [f for e, f, _ in Compiles.events if e == BACKEND_COMPILE]
        self.backend = len(names)
        self.programs = dict(sorted(collections.Counter(names).items()))
        return False


def sweep_call(task: Task, w: dict, variant: str, *, steps: int | None = None,
               policy: Any = "default") -> Any:
    steps = steps or task.steps
    common = {"steps": steps, "batch_size": task.batch_size, "eval_data": w["held"],
              "progress": False}
    if variant == "halving":
        min_steps = halving_min_steps(task)
        every = math.gcd(min_steps, steps)
        return jaxlr.sweep(w["init"], w["loss_fn"], w["train"], w["optimizer"],
                           jaxlr.grid(lr=task.lrs(HALVING_SETTINGS)), eval_every=every,
                           prune=jaxlr.successive_halving(min_steps, ETA, by="eval"), **common)
    optimizer = w["optimizer"]
    if variant in HEADROOM:  # the grid's LRs as the peaks of a decay to 0 over the run
        decay = HEADROOM[variant]
        optimizer = lambda hp: w["base"](decay(hp["lr"], steps))  # noqa: E731
    if policy == "default":
        policy = pbt_policy(task) if variant == "pbt" else None
    return jaxlr.sweep(w["init"], w["loss_fn"], w["train"], optimizer,
                       jaxlr.grid(lr=task.lrs(POPULATION)), eval_every=task.interval,
                       chunk_size=task.interval, policy=policy, **common)


def run_variant(spec: dict) -> dict:
    """One (task, variant) in this process: the call's wall time, compiles and results."""
    task = next(t for t in SETUPS[spec["setup"]]["tasks"] if t.name == spec["task"])
    variant, w = spec["variant"], workload(task)
    jax.block_until_ready(jnp.zeros(1) + 1)  # JAX's backend start-up is not timed
    with Compiles() as c:
        res = sweep_call(task, w, variant)
    best = res.best(by="eval")
    pruned = np.asarray(res.pruned_at)
    ran = np.where(pruned >= 0, pruned, task.steps)
    at = [0, task.steps // 4, task.steps // 2, 3 * task.steps // 4, task.steps - 1]
    out = {"task": task.name, "variant": variant, "members": len(res), "best": best.value,
           "best_index": best.index, "best_lr": float(best.hparams["lr"]),
           "member_steps": int(ran.sum()), "finite_losses": int(np.isfinite(res.loss).sum()),
           "diverged": int(np.asarray(res.diverged).sum()), "wall": c.wall, "cpu": c.cpu,
           "compile_s": c.compile_s, "backend": c.backend, "programs": c.programs,
           "at": at, "min_steps": None, "rounds": 0, "copies": 0, "segments": 1}
    if variant == "pbt":
        schedule = res.schedule(best.index)
        out["lineage_lr"] = [float(schedule(t)) for t in at]
        segments = res.lineage(best.index)
        out["segments"] = len(segments)
        out["start_lr"] = float(segments[0].hparams["lr"])
        h = res.history
        parents = np.asarray(h["history_parents"])
        out["rounds"] = int(len(h["history_steps"]))
        out["copies"] = int(((parents >= 0) & (parents != np.arange(parents.shape[1]))).sum())
    if variant == "halving":
        out["min_steps"] = halving_min_steps(task)
    if w["floor"] is not None:
        out["floor"] = w["floor"]
    return out


def run_overhead(setup: str) -> dict:
    """PBT vs policy=None (same chunks, same evaluations), alternating, in this process."""
    task = SETUPS[setup]["tasks"][0]
    o = SETUPS[setup]["overhead"]
    steps, pairs = o["steps"], o["pairs"]
    w = workload(task)
    rule = TimedPBT(*pbt_policy(task))
    jax.block_until_ready(jnp.zeros(1) + 1)
    calls = {"pbt": [], "plain": []}

    def call(which: str, record: bool) -> None:
        TimedPBT.host_s.clear()
        with Compiles() as c:
            res = sweep_call(task, w, which, steps=steps, policy=rule if which == "pbt" else None)
            jax.block_until_ready(res.loss)
        if record:
            calls[which].append({"wall": c.wall, "cpu": c.cpu, "compile_s": c.compile_s,
                                 "backend": c.backend, "programs": c.programs,
                                 "host_s": list(TimedPBT.host_s),
                                 "rounds": 0 if res.history is None
                                 else int(len(res.history["history_steps"]))})

    call("plain", False)  # warm-up: compiles; not timed
    call("pbt", False)
    for p in range(pairs):
        for which in (("pbt", "plain") if p % 2 == 0 else ("plain", "pbt")):
            call(which, True)
    gaps = round_gaps(lambda: call("pbt", False), pairs)
    copy_ms = copy_time(task, w, steps)
    return {"steps": steps, "chunk": task.interval, "chunks": -(-steps // task.interval),
            "rounds": len(pbt_policy(task).rounds(steps)), "calls": calls, "gaps": gaps,
            "copy_ms": copy_ms}


def round_gaps(call: Callable[[], None], repeats: int) -> list[float]:
    """The direct measure of a round's cost on the loop's critical path: a plain sweep
    dispatches chunk c+1 before it looks at chunk c's curves, so the device never waits; at a
    PBT round the loop waits for chunk c, decides and dispatches chunk c+1 after. The time from
    chunk c's curves reaching the host (``Curves.add_curves``) to chunk c+1's dispatch
    (``Dispatch.__call__``) is the device's idle time per round (ms, every round of
    ``repeats`` calls). The copy itself runs on the device inside chunk c+1 (``copy_time``)."""
    from jaxlr._sweep import compiled as _compiled
    from jaxlr._sweep import curves as _curves

    marks: list[tuple[str, float]] = []
    add, dispatch = _curves.Curves.add_curves, _compiled.Dispatch.__call__

    def add_marked(self, *a, **k):
        out = add(self, *a, **k)
        marks.append(("curves", time.perf_counter()))
        return out

    def dispatch_marked(self, *a):
        marks.append(("dispatch", time.perf_counter()))
        return dispatch(self, *a)

    _curves.Curves.add_curves, _compiled.Dispatch.__call__ = add_marked, dispatch_marked
    try:
        gaps = []
        for _ in range(repeats):
            marks.clear()
            call()
            gaps += [1e3 * (t1 - t0) for (a, t0), (b, t1) in zip(marks, marks[1:])
                     if a == "curves" and b == "dispatch"]
        return gaps
    finally:
        _curves.Curves.add_curves, _compiled.Dispatch.__call__ = add, dispatch


def copy_time(task: Task, w: dict, steps: int) -> float:
    """ms (median of 50) of the on-device copy of a round on a carry shaped like the sweep's
    (params and Adam's two moments, [members, ...]): a jitted gather with a permutation."""
    res = sweep_call(task, w, "plain", steps=task.interval, policy=None)
    params, _ = res.stacked()
    carry = jax.tree.map(jnp.asarray, (params, params, params))
    gather = jax.jit(lambda tree, i: jax.tree.map(lambda x: x[i], tree))
    idx = jnp.asarray(np.random.default_rng(0).permutation(POPULATION), jnp.int32)
    jax.block_until_ready(gather(carry, idx))
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        jax.block_until_ready(gather(carry, idx))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def in_subprocess(flag: str, arg: str) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), flag, arg], capture_output=True,
                          text=True, timeout=1200)
    found = [ln.removeprefix("RESULT ") for ln in proc.stdout.splitlines()
             if ln.startswith("RESULT ")]
    if proc.returncode or not found:
        raise RuntimeError(f"{flag} {arg} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(found[-1])


# --------------------------------------------------------------------------- report

fmt, table = bench_sweep.fmt, bench_sweep.table


def _goal(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


def print_header(quick: bool, setup: dict) -> None:
    import sklearn

    print("# Population-based training benchmark" + (" (--quick: smoke test, numbers "
                                                      "meaningless)" if quick else ""))
    print()
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- machine: {platform.platform()}; CPU {bench_sweep.cpu_name()}; "
          f"os.cpu_count()={os.cpu_count()}")
    print(f"- load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
          "(other processes share the cores and add noise)")
    print(f"- jax {jax.__version__} (backend {jax.default_backend()}), optax {optax.__version__},"
          f" scikit-learn {sklearn.__version__}, jaxlr {jaxlr.__version__}, "
          f"python {platform.python_version()}")
    for t in setup["tasks"]:
        ms = halving_min_steps(t)
        rungs, cost = halving_cost(HALVING_SETTINGS, t.steps, ms)
        print(f"- {t.name}: steps={t.steps}, batch {t.batch_size}, LRs logspace(1e{t.lr_range[0]:g}"
              f", 1e{t.lr_range[1]:g}); grid/pbt: {POPULATION} members, interval = eval_every = "
              f"chunk_size = {t.interval}; halving: {HALVING_SETTINGS} settings, min_steps={ms}, "
              f"eta={ETA}, rungs {rungs}, eval_every={math.gcd(ms, t.steps)}: {cost:,} planned "
              f"member-steps vs {POPULATION * t.steps:,}")
    where = ("this process (later variants reuse earlier programs: compile counts not "
             "comparable)" if quick
             else "one fresh subprocess per (task, variant), one more for the round cost")
    print(f"- measurements: {where}", flush=True)
    print()


def lr_cell(r: dict) -> str:
    if r["variant"] == "pbt":
        path = " → ".join(f"{v:.3g}" for v in r["lineage_lr"])
        return f"{path} (from slot {r['start_lr']:.3g}; {r['segments']} segments)"
    return f"{r['best_lr']:.3g}"


def report_task(task: Task, results: dict, misses: list[str]) -> None:
    grid = results["grid"]
    target = POPULATION * task.steps
    rows = []
    for v in VARIANTS:
        r = results[v]
        rows.append([v, r["members"], f"{r['member_steps']:,} ({r['member_steps'] / target:.3f})",
                     f"{r['finite_losses']:,}", r["diverged"], f"{r['best']:.4f}",
                     f"{r['best'] / grid['best']:.3f}", lr_cell(r), fmt(r["wall"], 1),
                     fmt(r["cpu"], 1), fmt(r["compile_s"], 1), r["backend"]])
    print(f"## {task.name}: grid vs PBT vs successive halving ({task.steps} steps)")
    print()
    at = ", ".join(map(str, grid["at"]))
    print(table(["variant", "members", f"member-steps (/ {target:,})", "finite losses",
                 "diverged", "best held-out loss", "/ grid best",
                 f"best LR (pbt: its lineage's LR at steps {at})", "wall s", "CPU s",
                 "compile s", "backend compiles"], rows))
    print()
    p, h = results["pbt"], results["halving"]
    print(f"pbt: {p['rounds']} rounds, {p['copies']} slot copies in all. halving: "
          f"{h['member_steps']:,} member-steps planned vs {target:,} for grid/pbt "
          f"({100 * (h['member_steps'] / target - 1):+.2f}%).")
    if grid.get("floor") is not None:
        f = grid["floor"]
        print(f"lstsq: the true weights' held-out loss (the noise floor) is {f:.4f}; excess "
              "over it: " + ", ".join(f"{v} {results[v]['best'] - f:.4f}" for v in VARIANTS)
              + ".")
    decays = {d: results[d]["best"] for d in HEADROOM}
    print(f"headroom (no PBT): the same {POPULATION} LRs as the peaks of a decay to 0 over the "
          "run, best held-out loss / grid best: " + ", ".join(
              f"{d} {v:.4f} ({v / grid['best']:.3f}, peak {results[d]['best_lr']:.3g})"
              for d, v in decays.items())
          + (": a decaying schedule beats the best constant LR." if min(decays.values())
             < grid["best"] else ": no decay beats the best constant LR (nothing for a "
             "schedule to find but the constant)."))
    diff = sorted(set(p["programs"]) | set(grid["programs"]))
    diff = [n for n in diff if p["programs"].get(n, 0) != grid["programs"].get(n, 0)]
    print(f"pbt's backend compiles per program: {p['programs']}.")
    if diff:
        print("backend compiles that differ, pbt vs grid: " + ", ".join(
            f"{n} {p['programs'].get(n, 0)} vs {grid['programs'].get(n, 0)}" for n in diff)
            + ".")
    print()
    ratio = p["best"] / grid["best"]
    ok = ratio < 1.0
    print(f"- {task.name}: PBT best / grid best = {ratio:.4f} (< 1): {_goal(ok)}")
    if not ok:
        misses.append(f"{task.name} PBT best / grid best {ratio:.4f}")
    ok = p["backend"] == grid["backend"]
    print(f"- {task.name}: backend compiles, PBT {p['backend']} vs plain sweep (grid, same "
          f"chunk_size and eval_every) {grid['backend']} (equal): {_goal(ok)}")
    if not ok:
        misses.append(f"{task.name} compiles PBT {p['backend']} vs plain {grid['backend']}")
    print()


def _quartiles(xs: list[float]) -> str:
    if len(xs) < 4:
        return "—"
    q1, _, q3 = statistics.quantiles(xs, n=4)
    return f"{100 * q1:+.2f}% … {100 * q3:+.2f}%"


def report_overhead(o: dict, misses: list[str]) -> None:
    pbt, plain = o["calls"]["pbt"], o["calls"]["plain"]
    chunks, rounds = o["chunks"], o["rounds"]
    scale = chunks / rounds  # (ΔT / rounds) / (T_plain / chunks) = ΔT / T_plain * scale
    share = [(a["wall"] - b["wall"]) / b["wall"] * scale for a, b in zip(pbt, plain)]
    share_nc = [((a["wall"] - a["compile_s"]) - (b["wall"] - b["compile_s"]))
                / (b["wall"] - b["compile_s"]) * scale for a, b in zip(pbt, plain)]
    share_cpu = [(a["cpu"] - b["cpu"]) / b["cpu"] * scale for a, b in zip(pbt, plain)]
    whole = [(a["wall"] - b["wall"]) / b["wall"] for a, b in zip(pbt, plain)]
    per_round_ms = [(a["wall"] - b["wall"]) / rounds * 1e3 for a, b in zip(pbt, plain)]
    chunk_ms = statistics.median(b["wall"] / chunks * 1e3 for b in plain)
    host = [s for a in pbt for s in a["host_s"]]
    print(f"## Exploit/explore cost (mlp, {POPULATION} members, {o['steps']} steps, chunk_size "
          f"{o['chunk']}: {chunks} chunks, {rounds} PBT rounds; {len(pbt)} pairs, alternating)")
    print()
    rows = [["wall s per call (median)", fmt(statistics.median(a["wall"] for a in pbt), 2),
             fmt(statistics.median(b["wall"] for b in plain), 2)],
            ["CPU s per call (median)", fmt(statistics.median(a["cpu"] for a in pbt), 2),
             fmt(statistics.median(b["cpu"] for b in plain), 2)],
            ["compile s per call (median)", fmt(statistics.median(a["compile_s"] for a in pbt), 2),
             fmt(statistics.median(b["compile_s"] for b in plain), 2)],
            ["backend compiles per timed call", ", ".join(str(a["backend"]) for a in pbt),
             ", ".join(str(b["backend"]) for b in plain)],
            ["rounds run per call", ", ".join(str(a["rounds"]) for a in pbt[:1]), "0"]]
    print(table(["", "pbt", "plain (policy=None)"], rows))
    print()
    med, med_nc = statistics.median(share), statistics.median(share_nc)
    print(f"a chunk of the plain sweep: {chunk_ms:.0f} ms (median wall / chunks). One round "
          f"(pbt − plain, per round): {statistics.median(per_round_ms):.1f} ms median; as a "
          f"share of a chunk: {100 * med:+.2f}% median (quartiles {_quartiles(share)}); with "
          f"each call's compile time subtracted: {100 * med_nc:+.2f}% (quartiles "
          f"{_quartiles(share_nc)}); from the processes' CPU time: "
          f"{100 * statistics.median(share_cpu):+.2f}%. "
          f"Per pair: " + ", ".join(f"{100 * s:+.1f}%" for s in share) + ". "
          f"(PBT − plain) / plain over whole calls (the same per chunk, averaged over all "
          f"{chunks} chunks): {100 * statistics.median(whole):+.2f}% median.")
    gaps = o.get("gaps") or []
    if gaps:
        direct = (statistics.median(gaps) + o["copy_ms"]) / chunk_ms
        q1, _, q3 = statistics.quantiles(gaps, n=4) if len(gaps) >= 4 else (np.nan,) * 3
        print(f"Direct: at a round the device waits {statistics.median(gaps):.1f} ms median "
              f"(quartiles {q1:.1f} … {q3:.1f} ms; {len(gaps)} rounds) from "
              f"the chunk's curves on the host to the next chunk's dispatch, and the copy of "
              f"the rows (a gather of params and Adam's moments) takes {o['copy_ms']:.2f} ms: "
              f"**{100 * direct:.2f}%** of a chunk at most (the wait holds device work too).")
    if host:
        print(f"Inside: the policy's after_chunk on the host (rank, draw, new hyperparameters) "
              f"took {1e3 * statistics.median(host):.2f} ms median per round "
              f"({1e3 * max(host):.2f} ms max; {100 * statistics.median(host) * 1e3 / chunk_ms:.2f}"
              f"% of a chunk).")
    progs = pbt[-1]["programs"]
    if any(a["backend"] for a in pbt + plain):
        print(f"Programs compiled in the last timed pbt call: {progs or 'none'}; plain: "
              f"{plain[-1]['programs'] or 'none'}.")
    print()
    ok = med <= GOAL_ROUND
    spread = (statistics.quantiles(share, n=4)[2] - statistics.quantiles(share, n=4)[0]
              if len(share) >= 4 else 0.0)
    if gaps and direct <= GOAL_ROUND:  # an upper bound, measured round by round
        print(f"- exploit/explore round, share of a chunk's time, by the direct bound: "
              f"≤ {100 * direct:.2f}% (≤ {100 * GOAL_ROUND:g}%): PASS (the whole calls' "
              f"difference: {100 * med:+.2f}%, per-pair interquartile range "
              f"{100 * spread:.1f} points)")
    elif spread > GOAL_ROUND:  # the machine's noise is larger than what the goal asks to see
        print(f"- exploit/explore round, share of a chunk's time: {100 * med:+.2f}% "
              f"(≤ {100 * GOAL_ROUND:g}%): **INCONCLUSIVE**: the per-pair shares' interquartile "
              f"range, {100 * spread:.1f} points, is wider than the goal (a noisy machine); "
              "run it on a quiet one")
        misses.append(f"round cost not resolved ({100 * med:+.2f}% ± noise "
                      f"{100 * spread:.1f} points)")
    else:
        print(f"- exploit/explore round, share of a chunk's time: {100 * med:+.2f}% "
              f"(≤ {100 * GOAL_ROUND:g}%): {_goal(ok)}")
        if not ok:
            misses.append(f"round cost {100 * med:+.2f}% of a chunk")
    same = [a["backend"] for a in pbt] == [b["backend"] for b in plain]
    print(f"- backend compiles in the repeated calls, pbt {[a['backend'] for a in pbt]} vs plain "
          f"{[b['backend'] for b in plain]} (equal): {_goal(same)}")
    if not same:
        misses.append("compiles in repeated calls differ")
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 60 steps, interval 10, all in this process")
    ap.add_argument("--run", default=None, metavar="JSON",
                    help="internal: one (task, variant) in this process, prints RESULT <json>")
    ap.add_argument("--overhead", default=None, metavar="SETUP",
                    help="internal: the round-cost measurement in this process")
    args = ap.parse_args(argv)
    if args.run:
        print("RESULT " + json.dumps(run_variant(json.loads(args.run))), flush=True)
        return 0
    if args.overhead:
        print("RESULT " + json.dumps(run_overhead(args.overhead)), flush=True)
        return 0

    name = "quick" if args.quick else "full"
    setup, started = SETUPS[name], time.perf_counter()
    print_header(args.quick, setup)
    results: dict[str, dict] = {}
    for task in setup["tasks"]:
        results[task.name] = {}
        for v in (*VARIANTS, *HEADROOM):
            spec = {"task": task.name, "variant": v, "setup": name}
            r = (run_variant(spec) if args.quick
                 else in_subprocess("--run", json.dumps(spec)))
            results[task.name][v] = r
            print(f"  measured {task.name} {v}: best {r['best']:.4f}, {r['wall']:.1f} s "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    overhead = run_overhead(name) if args.quick else in_subprocess("--overhead", name)
    print(f"  measured the round cost ({time.perf_counter() - started:.0f} s)")
    print()
    misses: list[str] = []
    for task in setup["tasks"]:
        report_task(task, results[task.name], misses)
    report_overhead(overhead, misses)
    print(f"goals missed: {'; '.join(misses) if misses else 'none'}")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"total time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
