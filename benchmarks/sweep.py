"""jaxlr.sweep against hand-written baselines on sklearn digits, in one run, printed as ratios.

Workloads (digits: 1,797 examples, X scaled to [0, 1], 10 classes, softmax cross-entropy):
  (a) compute-bound: MLP 64-128-128-10 (pure-JAX params, relu), batch 128, Adam, 500 steps,
      M in {1, 8, 16, 32, 128} learning rates (logspace);
  (b) dispatch-bound: logistic regression 64-10, batch 32, SGD, 500 steps, M = 64.
Variants, all training the same model with the same optax transform and batch size:
  jaxlr       ``jaxlr.sweep(..., progress=False)`` (default chunk size unless stated: with
              nothing to do between chunks, the whole run, one program; ``chunk_size=167`` is
              the chunking a run with a progress bar gets);
  expert      hand-written: ``jit(vmap(train_one))``, ``train_one`` = init + ``lax.scan`` over
              steps, per-member batches gathered on device from a precomputed index array
              [M, steps, batch] (one program, one call, losses [M, steps] fetched at the end);
  expert (randint)  the same program, except that each step samples its batch on device with
              ``jax.random.randint`` from a per-member key folded with the step (no index
              array: sampling with replacement, the other common hand-written form);
  control     a second instance of the expert's compiled program, timed next to the expert:
              its ratio to the expert is the noise of the run;
  sequential  the same ``train_one`` jitted for ONE member, called M times (one per LR);
  naive       a Python loop over members and steps of one jitted ``step(params, opt_state, lr,
              x, y)`` (compiled once; the LR is an argument), batches sliced on the host.
µs per member-step = wall time of the run without compilation / (M x steps). jaxlr.sweep
traces its functions in every call (nothing traced from a user's function is kept across
calls) and reuses an executable only for the same lowered program; its compile time
(tracing + lowering + XLA compile, read from ``jax.monitoring`` events) is subtracted from a
call's wall time, and its first call in a process is not timed when there are others (a
persistent compilation cache, a fresh directory per process, is also on); the baselines are
compiled with ``jit(...).lower(...).compile()`` (naive: first call minus a steady call)
before timing. Everything else a sweep call does (moving the data, initialising the
members, fetching the curves) is timed; the batches' shuffles (the batch-index table) are
computed on device by the first call and kept for later calls with the same seeds and steps
(``compiled.BatchTable``), as the expert computes its index table once, before its timer.
Each (workload, M) runs in its own subprocess (``--variant JSON``) with its variants
alternating call by call; jaxlr/expert ratios are medians of back-to-back pairs. Peak RSS is
per variant (VmHWM, reset through /proc/self/clear_refs before each call; process-wide).
"cores" = CPU time / wall time of the timed runs (how many cores the run kept busy).
(c) cores: a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``
times jaxlr.sweep on 1 device vs all of them (sweep shards members over all local devices by
default), alternating, in the same process.

Run: ``python benchmarks/sweep.py`` (full, ~22 minutes on 2 CPU cores, estimated) or ``--quick`` (a
smoke test: 20 steps, M in {1, 4}, measured in this process except (c) and the one-thread
sgemm). ``--cases mlp:1,logreg:64`` measures a subset; ``--one-core`` runs everything on one
CPU core with one XLA thread (on a 2-core VM the paired ratios spread about half as much), and
skips (c). Record the printed tables in ``benchmarks/README.md`` with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlr

GOAL_EXPERT = 1.05  # jaxlr / expert µs per member-step, at every M
RANDINT = "expert (randint)"  # the label of the expert that samples with jax.random.randint
GOAL_NAIVE = 5.0  # naive / jaxlr on (b)
GOAL_CORES = 1.6  # speed-up from sharding members over 2 host devices
GOAL_COMPILE = 1.5  # compile time at M=128 / M=1
GOAL_CHUNK = 1.05  # chunk_size=50 / one chunk
SGEMM_ACCEL = 8192  # matmul size for the sgemm figure on an accelerator
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
SCRIPT = Path(__file__).resolve()
ONE_CORE = "JAXLR_SWEEP_ONE_CORE"  # set in the re-executed process of --one-core


# --------------------------------------------------------------------------- workloads


class Workload(NamedTuple):
    name: str
    sizes: tuple[int, ...]  # layer widths, input first
    batch_size: int
    optimizer: Callable[[Any], optax.GradientTransformation]  # lr -> transform
    lr_range: tuple[float, float]  # log10 bounds of the LR grid
    random_init: bool  # He-normal weights (else zeros: logistic regression)

    def lrs(self, m: int) -> np.ndarray:
        return np.logspace(*self.lr_range, m).astype(np.float32)

    def flops_per_member_step(self) -> float:
        """Forward + backward of the dense layers: 3 x 2 x batch x sum(fan_in x fan_out)."""
        macs = sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))
        return 3 * 2 * self.batch_size * macs


WORKLOADS = {
    "mlp": Workload("mlp", (64, 128, 128, 10), 128, optax.adam, (-4.0, -1.0), True),
    "logreg": Workload("logreg", (64, 10), 32, optax.sgd, (-3.0, 0.5), False),
}


def make_init(wl: Workload) -> Callable[[jax.Array], list]:
    """``key -> params``: a list of {"w", "b"} layers. One ``random.normal`` call for all weights
    (each separate threefry call adds about a second of XLA compile time on CPU)."""
    shapes = list(zip(wl.sizes[:-1], wl.sizes[1:], strict=True))
    total = sum(a * b for a, b in shapes)

    def init(key):
        z = (jax.random.normal(key, (total,), jnp.float32) if wl.random_init
             else jnp.zeros((total,), jnp.float32))
        params, offset = [], 0
        for a, b in shapes:
            w = z[offset:offset + a * b].reshape(a, b) * np.float32(np.sqrt(2.0 / a))
            params.append({"w": w, "b": jnp.zeros((b,), jnp.float32)})
            offset += a * b
        return params

    return init


def loss_fn(params: list, batch: tuple) -> jax.Array:
    x, y = batch
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    logits = x @ params[-1]["w"] + params[-1]["b"]
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def load_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int32)


def member_indices(m: int, steps: int, n: int, bs: int) -> np.ndarray:
    """[m, steps, bs] int32: member i's batches, each epoch a permutation drawn from (i, epoch)
    of which the first n // bs full batches are used (as jaxlr.sweep does)."""
    per_epoch = n // bs
    epochs = -(-steps // per_epoch)
    out = np.empty((m, epochs * per_epoch * bs), np.int32)
    for i in range(m):
        rng = np.random.default_rng(i)
        out[i] = np.concatenate([rng.permutation(n)[:per_epoch * bs] for _ in range(epochs)])
    return out.reshape(m, -1, bs)[:, :steps]


# --------------------------------------------------------------------------- baselines


def make_train_one(wl: Workload, init: Callable) -> Callable:
    """One member's whole training run: init + lax.scan over its precomputed batch indices."""

    def train_one(seed, lr, idx, x, y):
        params = init(jax.random.key(seed))
        tx = wl.optimizer(lr)

        def step(carry, idx_t):
            params, opt_state = carry
            batch = (jnp.take(x, idx_t, axis=0), jnp.take(y, idx_t, axis=0))
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), idx)
        return params, losses

    return train_one


def make_train_randint(wl: Workload, init: Callable, n: int, steps: int) -> Callable:
    """One member's whole training run: init + lax.scan over steps, each step's batch sampled
    on device with ``jax.random.randint`` (with replacement) from the member's key."""

    def train_one(seed, lr, member, x, y):
        params = init(jax.random.key(seed))
        tx = wl.optimizer(lr)
        key = jax.random.fold_in(jax.random.key(1), member)

        def step(carry, t):
            params, opt_state = carry
            idx_t = jax.random.randint(jax.random.fold_in(key, t), (wl.batch_size,), 0, n)
            batch = (jnp.take(x, idx_t, axis=0), jnp.take(y, idx_t, axis=0))
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)),
                                           jnp.arange(steps, dtype=jnp.int32))
        return params, losses

    return train_one


def make_naive_step(wl: Workload) -> Callable:
    def step(params, opt_state, lr, x, y):
        tx = wl.optimizer(lr)
        loss, grads = jax.value_and_grad(loss_fn)(params, (x, y))
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1))


# --------------------------------------------------------------------------- measurement


class Meter:
    """Wall time, CPU time, peak RSS and the compile time reported by jax.monitoring over a
    block."""

    events: list[tuple[str, str, float]] = []
    _registered = False

    def __init__(self):
        if not Meter._registered:
            jax.monitoring.register_event_duration_secs_listener(Meter._listen)
            Meter._registered = True

    @staticmethod
    def _listen(event: str, duration: float, **kwargs: Any) -> None:
        if event in COMPILE_EVENTS:
            Meter.events.append((event, str(kwargs.get("fun_name", "")), duration))

    def __enter__(self):
        Meter.events.clear()
        _reset_peak_rss()
        self.cpu0, self.t0 = _cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = _cpu_seconds() - self.cpu0
        self.rss = _peak_rss_mb()
        self.compile = sum(d for _, _, d in Meter.events)
        # the training program: run_whole (a run of one chunk, the default here) or run_chunk
        self.compile_chunk = sum(d for _, f, d in Meter.events if "chunk" in f or "whole" in f)
        return False


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _reset_peak_rss() -> None:
    """Linux: writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM), so the peak of
    one variant's calls can be read in a process that ran others before."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _final_loss(losses: np.ndarray) -> float:
    last = np.asarray(losses)[:, -1]
    return float(np.nanmedian(last)) if np.isfinite(last).any() else float("nan")


class Variant:
    """One way of training the members: ``setup()`` compiles (returns the seconds it took, or
    None when ``call`` compiles itself), ``call()`` runs ``units`` member-steps and returns a
    final loss (or None)."""

    label: str
    units: int
    compiles_in_call = False

    def setup(self) -> float | None:
        return None

    def call(self) -> float | None:
        raise NotImplementedError


class JaxlrSweep(Variant):
    compiles_in_call = True

    def __init__(self, wl, data, m, steps, label, chunk_size=None, n_devices=None):
        self.label, self.units = label, m * steps
        self.wl, self.data, self.steps, self.lrs = wl, data, steps, wl.lrs(m)
        self.init, self.chunk_size, self.n_devices = make_init(wl), chunk_size, n_devices

    def call(self):
        devices = None if self.n_devices is None else jax.local_devices()[:self.n_devices]
        res = jaxlr.sweep(self.init, loss_fn, self.data, lambda hp: self.wl.optimizer(hp["lr"]),
                          jaxlr.grid(lr=self.lrs), steps=self.steps,
                          batch_size=self.wl.batch_size, progress=False,
                          chunk_size=self.chunk_size, devices=devices)
        return _final_loss(res.loss)


class Expert(Variant):
    """The hand-written ``jit(vmap(train_one))``: batches from a precomputed index array, or
    (``randint``) sampled on device with ``jax.random.randint`` at every step."""

    def __init__(self, wl, data, m, steps, label="expert", randint=False):
        self.label, self.units = label, m * steps
        self.wl, self.data, self.m, self.steps = wl, data, m, steps
        self.randint = randint

    def setup(self):
        wl, m, n = self.wl, self.m, len(self.data[0])
        x, y = (jnp.asarray(a) for a in self.data)
        if self.randint:
            train_one = make_train_randint(wl, make_init(wl), n, self.steps)
            third = jnp.arange(m, dtype=jnp.int32)  # the member: its sampling key
        else:
            train_one = make_train_one(wl, make_init(wl))
            third = jnp.asarray(member_indices(m, self.steps, n, wl.batch_size))
        self.args = (jnp.zeros(m, jnp.int32), jnp.asarray(wl.lrs(m)), third, x, y)
        program = jax.jit(jax.vmap(train_one, in_axes=(0, 0, 0, None, None)))
        t0 = time.perf_counter()
        self.compiled = program.lower(*self.args).compile()
        return time.perf_counter() - t0

    def call(self):
        params, losses = self.compiled(*self.args)
        losses = np.asarray(losses)
        jax.block_until_ready(params)
        return _final_loss(losses)


class Sequential(Variant):
    """The expert's ``train_one`` jitted for one member, called once per member (k timed)."""

    def __init__(self, wl, data, m, steps, k, label="sequential"):
        self.label, self.units, self.k = label, min(m, k) * steps, min(m, k)
        self.wl, self.data, self.m, self.steps = wl, data, m, steps

    def setup(self):
        wl = self.wl
        x, y = (jnp.asarray(a) for a in self.data)
        self.xy = (x, y)
        self.idx = jnp.asarray(member_indices(self.k, self.steps, len(self.data[0]),
                                              wl.batch_size))
        self.lrs = jnp.asarray(wl.lrs(self.m))
        program = jax.jit(make_train_one(wl, make_init(wl)))
        t0 = time.perf_counter()
        self.compiled = program.lower(jnp.int32(0), self.lrs[0], self.idx[0], x, y).compile()
        return time.perf_counter() - t0

    def call(self):
        for i in range(self.k):
            params, losses = self.compiled(jnp.int32(0), self.lrs[i], self.idx[i], *self.xy)
            np.asarray(losses)
            jax.block_until_ready(params)
        return None


class Naive(Variant):
    """A Python loop over members and steps of one jitted step (km members x ks steps timed);
    batches are sliced from host numpy arrays; losses fetched once per member."""

    def __init__(self, wl, data, m, steps, km, ks, label="naive"):
        self.km, self.ks = min(m, km), min(steps, ks)
        self.label, self.units = label, self.km * self.ks
        self.wl, self.data, self.m = wl, data, m

    def setup(self):
        wl, (xh, _) = self.wl, self.data
        self.idx = member_indices(self.km + 1, self.ks, len(xh), wl.batch_size)
        self.lrs = wl.lrs(self.m)
        self.init, self.step = jax.jit(make_init(wl)), make_naive_step(wl)
        times = self._member(self.km, 2, timed=True)  # a spare member: compiles init and step
        return max(times[0] - times[1], 0.0)

    def _member(self, i, n_steps, timed=False):
        xh, yh = self.data
        lr = self.lrs[i % self.m]
        params = self.init(jax.random.key(0))
        opt_state = self.wl.optimizer(lr).init(params)
        jax.block_until_ready((params, opt_state))
        losses, times = [], []
        for t in range(n_steps):
            b = self.idx[i, t]
            t0 = time.perf_counter()
            params, opt_state, loss = self.step(params, opt_state, lr, xh[b], yh[b])
            if timed:
                jax.block_until_ready(loss)
                times.append(time.perf_counter() - t0)
            losses.append(loss)
        jax.device_get(losses)
        return times

    def call(self):
        for i in range(self.km):
            self._member(i, self.ks)
        return None


def make_variants(spec: dict, wl: Workload, data) -> list[Variant]:
    m, steps = spec["members"], spec["steps"]
    out: list[Variant] = []
    for v in spec["variants"]:
        kind, label = v["kind"], v["label"]
        if kind == "jaxlr":
            out.append(JaxlrSweep(wl, data, m, steps, label, v.get("chunk_size"),
                                  v.get("n_devices")))
        elif kind == "expert":
            out.append(Expert(wl, data, m, steps, label))
        elif kind == "expert_randint":
            out.append(Expert(wl, data, m, steps, label, randint=True))
        elif kind == "sequential":
            out.append(Sequential(wl, data, m, steps, v["members"], label))
        elif kind == "naive":
            out.append(Naive(wl, data, m, steps, v["members"], v["steps"], label))
        else:
            raise ValueError(f"unknown variant kind {kind!r}")
    return out


def use_compilation_cache(directory: str) -> None:
    """A persistent compilation cache (the directory starts empty, so the first call compiles
    cold; later calls of the same program find its XLA executable there)."""
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def measure(spec: dict) -> dict:
    """Run the variants of ``spec`` (one workload, one M) in this process, alternating their
    order every repetition; returns label -> measurements."""
    if spec.get("sgemm"):
        gflops, cores = sgemm_gflops()
        return {"gflops": gflops, "cores": cores}
    if spec.get("cache_dir"):
        use_compilation_cache(spec["cache_dir"])
    wl, data = WORKLOADS[spec["model"]], load_data()
    jax.block_until_ready(jnp.zeros(1) + 1)
    _reset_peak_rss()
    base = _peak_rss_mb()
    variants = make_variants(spec, wl, data)
    rec = {v.label: {"run": [], "cpu": [], "compile": [], "chunk": [], "rss": 0.0}
           for v in variants}
    for v in variants:
        if not v.compiles_in_call:
            with Meter() as mt:
                rec[v.label]["compile"].append(v.setup())
            rec[v.label]["rss"] = mt.rss
    for rep in range(spec["reps"]):
        for v in variants if rep % 2 == 0 else variants[::-1]:
            r = rec[v.label]
            with Meter() as mt:
                loss = v.call()
            comp = mt.compile if v.compiles_in_call else 0.0
            r["run"].append(mt.wall - comp)
            r["cpu"].append(max(mt.cpu - comp, 0.0))  # XLA compiles on about one core
            if v.compiles_in_call:
                r["compile"].append(mt.compile)
                r["chunk"].append(mt.compile_chunk)
            r["rss"] = max(r["rss"], mt.rss)
            r["loss"] = loss
    out = {}
    for v in variants:
        r = rec[v.label]
        # jaxlr.sweep's first call in a process also pays one-time costs: time the others
        keep = slice(1, None) if v.compiles_in_call and len(r["run"]) > 1 else slice(None)
        run, cpu = r["run"][keep], r["cpu"][keep]
        out[v.label] = {
            "us": statistics.median(run) / v.units * 1e6, "runs_s": r["run"], "cpus_s": r["cpu"],
            "units": v.units, "first_untimed": keep.start == 1,
            "cpu_us": statistics.median(cpu) / v.units * 1e6, "n_timed": len(run),
            "spread": (max(run) - min(run)) / statistics.median(run) if len(run) > 1 else None,
            "cores": sum(cpu) / max(sum(run), 1e-9), "compile_s": r["compile"][0],
            "compile_chunk_s": r["chunk"][0] if r["chunk"] else None,
            "recompile_s": r["compile"][1:] if v.compiles_in_call else [],
            "loss": r.get("loss"), "rss_mb": r["rss"], "rss_base_mb": base,
            "timed": [getattr(v, "k", None) or getattr(v, "km", None) or spec["members"],
                      getattr(v, "ks", None) or spec["steps"]],
        }
    return out


def measure_in_subprocess(spec: dict, host_devices: int = 1, flags: tuple[str, ...] = ()) -> dict:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")] + list(flags)
    if host_devices > 1:
        flags.append(f"--xla_force_host_platform_device_count={host_devices}")
    env = {**os.environ, "XLA_FLAGS": " ".join(flags)}
    with tempfile.TemporaryDirectory(prefix="jaxlr-bench-cache-") as cache_dir:
        arg = json.dumps({**spec, "cache_dir": cache_dir})
        proc = subprocess.run([sys.executable, str(SCRIPT), "--variant", arg], env=env,
                              capture_output=True, text=True, timeout=900)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"measurement {spec} failed (exit {proc.returncode}):\n"
                       f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


# --------------------------------------------------------------------------- report


def sgemm_gflops(n: int = 1024, reps: int = 20) -> tuple[float, float]:
    """GFLOP/s of a jitted float32 n x n matmul (median of ``reps`` calls) and the cores it
    kept busy (CPU time / wall time)."""
    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    jax.block_until_ready(f(a, b))
    times = []
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, b))
        times.append(time.perf_counter() - t0)
    cores = (_cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
    return 2 * n**3 / statistics.median(times) / 1e9, cores


def repeat_call_compile() -> tuple[float, float]:
    """Compile seconds of two identical small jaxlr.sweep calls in this process."""
    wl, data = WORKLOADS["logreg"], load_data()
    out, probe = [], JaxlrSweep(wl, data, 2, 10, "probe")
    for _ in range(2):
        with Meter() as mt:
            probe.call()
        out.append(mt.compile)
    return out[0], out[1]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt(x: float, digits: int = 1) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:,.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plan(quick: bool, accel: bool = False) -> dict:
    """What to measure. Full: ~22 minutes on 2 CPU cores (estimated); quick: a smoke test. On an
    accelerator (``accel``) the calls are short, so there are more repetitions, two larger M
    (1,024 and 4,096 members) and a larger logistic-regression sweep, and no (c), which is
    about CPU cores."""
    if quick:
        return dict(steps=20, cases=[("mlp", 1, 1), ("mlp", 4, 2), ("logreg", 4, 1)]
                    + ([("mlp", 16, 2)] if accel else []),
                    chunk_case=("mlp", 4), chunk_small=5, subset=(2, 20),
                    core_model="logreg", core_cases=[] if accel else [(4, 1)],
                    compile_pair=(1, 4))
    if accel:
        return dict(steps=500, cases=[("mlp", 1, 15), ("mlp", 8, 15), ("mlp", 16, 15),
                                      ("mlp", 32, 15),
                                      ("mlp", 128, 15), ("mlp", 1024, 7), ("mlp", 4096, 4),
                                      ("logreg", 64, 15), ("logreg", 4096, 9)],
                    chunk_case=("mlp", 8), chunk_small=50, subset=(4, 250),
                    core_model="mlp", core_cases=[], compile_pair=(1, 128))
    return dict(steps=500, cases=[("mlp", 1, 15), ("mlp", 8, 21), ("mlp", 16, 11),
                                  ("mlp", 32, 7), ("mlp", 128, 5), ("logreg", 64, 15)],
                chunk_case=("mlp", 8), chunk_small=50, subset=(4, 250),
                core_model="mlp", core_cases=[(8, 5), (32, 3)], compile_pair=(1, 128))


def chunked_default(steps: int) -> int:
    """jaxlr.sweep's default chunk_size when the run needs chunks (a progress bar): at most 200
    steps, dividing the run evenly. With ``progress=False`` and nothing else between chunks,
    as here, its default is the whole run: one program."""
    return -(-steps // -(-steps // 200))


def case_spec(p: dict, model: str, m: int, reps: int) -> dict:
    steps, (sub_m, sub_s) = p["steps"], p["subset"]
    # the control (a second instance of the expert's compiled program) sits next to the
    # expert, as jaxlr does on the other side: its ratio to the expert is this run's noise
    variants = [{"kind": "expert", "label": "control"}, {"kind": "expert", "label": "expert"},
                {"kind": "jaxlr", "label": "jaxlr"},
                {"kind": "expert_randint", "label": RANDINT}]
    if chunked_default(steps) != steps:  # the chunks of a run with a progress bar
        variants.append({"kind": "jaxlr", "label": f"jaxlr chunk_size={chunked_default(steps)}",
                         "chunk_size": chunked_default(steps)})
    if (model, m) == p["chunk_case"]:
        variants.append({"kind": "jaxlr", "label": f"jaxlr chunk_size={p['chunk_small']}",
                         "chunk_size": p["chunk_small"]})
    variants.append({"kind": "sequential", "label": "sequential", "members": sub_m})
    variants.append({"kind": "naive", "label": "naive", "members": sub_m, "steps": sub_s})
    return {"model": model, "members": m, "steps": steps, "reps": reps, "variants": variants}


def device_name() -> str:
    d = jax.local_devices()[0]
    return f"{len(jax.local_devices())} x {getattr(d, 'device_kind', d.platform)}"


def header(quick: bool, gflops: float, gcores: float, gflops1: float | None, steps: int) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print("# jaxlr.sweep benchmark" + (" (--quick: smoke test, numbers meaningless)"
                                       if quick else ""))
    print()
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- machine: {platform.platform()}; CPU {cpu_name()}; os.cpu_count()={os.cpu_count()}")
    print(f"- load average at start: {load} (other processes share the cores and add noise)")
    print(f"- jax {jax.__version__} (backend {jax.default_backend()}), optax {optax.__version__},"
          f" jaxlr {jaxlr.__version__}, python {platform.python_version()}")
    if gflops1 is None:  # an accelerator
        print(f"- devices: {device_name()}")
        print(f"- sgemm: jitted float32 {SGEMM_ACCEL}x{SGEMM_ACCEL} matmul on the device "
              f"(default precision): {gflops:.1f} GFLOP/s")
    else:
        print(f"- sgemm: jitted float32 1024x1024 matmul: {gflops:.1f} GFLOP/s "
              f"(kept {gcores:.1f} cores busy); on one thread "
              f"(XLA_FLAGS=--xla_cpu_multi_thread_eigen=false): {gflops1:.1f} GFLOP/s")
    where = ("this process, except (c)" if quick
             else "one subprocess per workload and M, variants alternating inside it")
    print(f"- steps={steps}; measurements: {where}", flush=True)
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 20 steps, M in {1, 4}, measured in this process")
    ap.add_argument("--variant", default=None, metavar="JSON",
                    help="internal: measure one spec (workload, M, variants) in this process and "
                         "print RESULT <json> (the parent runs each case in a subprocess)")
    ap.add_argument("--cases", default=None, metavar="MODEL:M,...",
                    help="measure only these cases of the plan, e.g. mlp:1,mlp:128,logreg:64 "
                         "(the compile and chunk reports need mlp:1, mlp:128 and mlp:8)")
    ap.add_argument("--one-core", action="store_true",
                    help="run on one CPU core with one XLA thread (re-executes this script; "
                         "the cores report (c) is skipped)")
    args = ap.parse_args(argv)
    if args.one_core and os.environ.get(ONE_CORE) != "1":
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env = {**os.environ, ONE_CORE: "1",
               "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()}
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # inherited by every child
        os.execve(sys.executable, [sys.executable, __file__, *(argv or sys.argv[1:])], env)
    if args.variant:
        print("RESULT " + json.dumps(measure(json.loads(args.variant))), flush=True)
        return 0

    accel = jax.default_backend() != "cpu"
    p = plan(args.quick, accel)
    if args.cases:
        wanted = {(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",")}
        p["cases"] = [c for c in p["cases"] if c[:2] in wanted]
    steps, started = p["steps"], time.perf_counter()
    if accel:
        gflops, gcores = sgemm_gflops(SGEMM_ACCEL)
        header(args.quick, gflops, gcores, None, steps)
    else:
        gflops, gcores = sgemm_gflops()
        one_core = measure_in_subprocess({"sgemm": True},
                                         flags=("--xla_cpu_multi_thread_eigen=false",))
        header(args.quick, gflops, gcores, one_core["gflops"], steps)
        gflops = one_core["gflops"]  # the MLP runs keep about one core busy: compare with one
    recompile = repeat_call_compile()

    def run(spec: dict, host_devices: int = 1) -> dict:
        if args.quick and host_devices == 1:
            return measure(spec)
        return measure_in_subprocess(spec, host_devices)

    def progress(what: str) -> None:
        print(f"  measured {what} ({time.perf_counter() - started:.0f} s)", flush=True)

    results = {}
    for model, m, reps in p["cases"]:
        r = results[model, m] = run(case_spec(p, model, m, reps))
        progress(f"{model} M={m}: jaxlr {r['jaxlr']['us']:.2f} µs/member-step, expert "
                 f"{r['expert']['us']:.2f}, paired ratio {paired(r['jaxlr'], r['expert']):.3f}"
                 + (f"; {RANDINT} {r[RANDINT]['us']:.2f}, paired ratio "
                    f"{paired(r['jaxlr'], r[RANDINT]):.3f}" if RANDINT in r else ""))
    cores = os.cpu_count() or 1
    many = f"{cores} devices"
    core_results = {}
    if os.environ.get(ONE_CORE) == "1":
        print(f"  one core: CPU {sorted(os.sched_getaffinity(0))}, XLA_FLAGS="
              f"{os.environ.get('XLA_FLAGS')!r}; the cores report (c) is skipped", flush=True)
        p["core_cases"] = []
    for m, reps in p["core_cases"]:
        spec = {"model": p["core_model"], "members": m, "steps": steps, "reps": reps,
                "variants": [{"kind": "jaxlr", "label": "1 device", "n_devices": 1},
                             {"kind": "jaxlr", "label": many}]}
        core_results[m] = run(spec, host_devices=cores)
        progress(f"cores M={m}")
    print()
    misses: list[str] = []
    report_variants(results, gflops, steps, accel)
    report_ratios(results, steps, misses)
    if core_results:
        report_cores(core_results, p["core_model"], cores, misses)
    if all(("mlp", m) in results for m in p["compile_pair"]):
        report_compile(results, p["compile_pair"], recompile, misses, cached=not args.quick)
    if p["chunk_case"] in results:
        report_chunks(results[p["chunk_case"]], p, misses)
    print(f"goals missed: {'; '.join(misses) if misses else 'none'}")
    print(f"total time: {time.perf_counter() - started:.0f} s")
    return 0


def _goal(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def report_variants(results: dict, gflops: float, steps: int, accel: bool = False) -> None:
    rows = []
    for (model, m), r in results.items():
        wl = WORKLOADS[model]
        for label, v in r.items():
            gf = wl.flops_per_member_step() / (v["us"] * 1e-6) / 1e9
            timed = ""
            spread = f"{v['n_timed']}" + (f", ±{50 * v['spread']:.0f}%" if v["spread"] else "")
            if v["timed"] != [m, steps]:
                timed = f" ({v['timed'][0]}×{v['timed'][1]} timed)"
            rows.append([f"{model} ({'a' if model == 'mlp' else 'b'})", m, label + timed,
                         fmt(v["us"]), spread, fmt(v["cpu_us"]), fmt(v["compile_s"], 2),
                         fmt(v["rss_mb"], 0),
                         fmt(v["cores"], 2), fmt(gf), fmt(100 * gf / gflops),
                         fmt(v.get("loss"), 4)])
    print("## Per variant")
    print()
    print(table(["workload", "M", "variant", "µs/member-step", "runs, spread",
                 "CPU µs/member-step",
                 "compile s", "peak RSS MB",
                 "cores", "GFLOP/s", "% sgemm", "final loss"], rows))
    print()
    base = min(v["rss_base_mb"] for r in results.values() for v in r.values())
    print("µs/member-step: median wall time over repetitions (jaxlr.sweep: its compile time "
          "subtracted, its first call in the process not timed when there were others; its "
          "later calls load their programs from a persistent compilation cache). CPU µs: the "
          "same with the process's CPU time (less sensitive to other processes on the machine; "
          "counts every thread). compile s: jaxlr variants after the first one reuse its cached "
          "init program. runs, spread: timed runs and ±half their (max - min) / median. "
          "(k×s timed): k "
          "members × s steps timed, extrapolated to M members × all steps. peak RSS: of the "
          f"process during that variant's calls (after importing JAX and loading the data: "
          f"{base:.0f} MB). cores: CPU time / wall time of the timed calls. GFLOP/s: dense "
          "forward + backward FLOPs (3 × 2 × batch × Σ fan_in·fan_out per member-step) / time; "
          + ("% sgemm: of the device's matmul above. " if accel else
             "% sgemm: of the one-thread 1024² matmul above. ") +
          "final loss: median over members of "
          "the last step's batch loss (jaxlr and expert train the same models on different batch "
          "orders).")
    print()


def paired_ratios(a: dict, b: dict, key: str = "runs_s") -> list[float]:
    """a's time / b's time per member-step of each repetition, each pair measured back to back
    in one process (so a change of load on the machine hits both alike); calls that were not
    timed (a jaxlr.sweep's first call) are left out."""
    skip = 1 if a["first_untimed"] or b["first_untimed"] else 0
    pairs = list(zip(a[key], b[key], strict=True))[skip:] or list(zip(a[key], b[key],
                                                                      strict=True))
    return [(x / a["units"]) / (y / b["units"]) for x, y in pairs]


def paired(a: dict, b: dict, key: str = "runs_s") -> float:
    """The median of :func:`paired_ratios`."""
    return statistics.median(paired_ratios(a, b, key))


def quartiles(a: dict, b: dict) -> str:
    """The first and third quartiles of :func:`paired_ratios` (where half the pairs lie)."""
    r = paired_ratios(a, b)
    if len(r) < 4:
        return "—"
    q1, _, q3 = statistics.quantiles(r, n=4)
    return f"{q1:.3f}–{q3:.3f}"


def report_ratios(results: dict, steps: int, misses: list[str]) -> None:
    rows = []
    for (model, m), r in results.items():
        jx = r["jaxlr"]["us"]
        ratio = paired(r["jaxlr"], r["expert"])
        chunked = paired(r.get(f"jaxlr chunk_size={chunked_default(steps)}", r["jaxlr"]),
                         r["expert"])
        naive = r["naive"]["us"] / jx
        goals = f"≤ {GOAL_EXPERT}: {_goal(ratio <= GOAL_EXPERT)}"
        if ratio > GOAL_EXPERT:
            misses.append(f"jaxlr/expert {model} M={m}: {ratio:.2f}")
        if model == "logreg":
            goals += f"; naive ≥ {GOAL_NAIVE:g}×: {_goal(naive >= GOAL_NAIVE)}"
            if naive < GOAL_NAIVE:
                misses.append(f"naive/jaxlr {model} M={m}: {naive:.1f}")
        cpu = paired(r["jaxlr"], r["expert"], "cpus_s")
        control = f"{paired(r['control'], r['expert']):.3f}" if "control" in r else "—"
        randint = (f"{paired(r['jaxlr'], r[RANDINT]):.3f} ({quartiles(r['jaxlr'], r[RANDINT])})"
                   if RANDINT in r else "—")
        rows.append([model, m, f"{ratio:.3f}", quartiles(r["jaxlr"], r["expert"]), control,
                     randint,
                     f"{cpu:.3f}", f"{chunked:.3f}",
                     f"{r['sequential']['us'] / jx:.2f}", f"{naive:.1f}", goals])
    print("## Ratios of µs per member-step")
    print()
    print("jaxlr/expert columns: median over repetitions of the ratio of two runs timed back to "
          "back in one process (wall time; 'CPU time': the process's CPU time); its quartiles: "
          "half of those ratios lie between them. control/expert: "
          "the same for a second instance of the expert's compiled program, timed on the "
          "expert's other side: how far it lands from 1 is the noise of this run. jaxlr/"
          "expert (randint): the same against the expert that samples its batches with "
          "jax.random.randint (its quartiles in brackets). sequential/"
          "jaxlr, naive/jaxlr: ratios of the medians.")
    print()
    print(table(["workload", "M", "jaxlr/expert", "its quartiles", "control/expert",
                 "jaxlr/expert (randint)",
                 "same, CPU time",
                 f"jaxlr chunk_size={chunked_default(steps)} / expert",
                 "sequential/jaxlr", "naive/jaxlr", "goals"], rows))
    print()


def report_cores(core_results: dict, model: str, cores: int, misses: list[str]) -> None:
    many = f"{cores} devices"
    rows = []
    for m, r in core_results.items():
        one, all_ = r["1 device"], r[many]
        speed = paired(one, all_)
        if speed < GOAL_CORES:
            misses.append(f"cores {model} M={m}: {speed:.2f}×")
        rows.append([m, fmt(one["us"]), fmt(all_["us"]), f"{one['cores']:.2f} / "
                     f"{all_['cores']:.2f}", f"{speed:.2f}×",
                     f"≥ {GOAL_CORES}×: {_goal(speed >= GOAL_CORES)}"])
    print(f"## (c) Cores: {model}, jaxlr.sweep on 1 vs {cores} host devices")
    print()
    print(table(["M", "1 device µs/member-step", f"{many} µs/member-step",
                 "cores busy (1 / N)", "speed-up", "goal"], rows))
    print()
    print(f"One subprocess with XLA_FLAGS=--xla_force_host_platform_device_count={cores}: "
          "devices=jax.local_devices()[:1] vs the default (all local devices), alternating; "
          "speed-up: median of the paired ratios.")
    print()


def report_compile(results: dict, pair: tuple[int, int], recompile: tuple[float, float],
                   misses: list[str], cached: bool) -> None:
    m1, m2 = pair
    c1, c2 = results["mlp", m1]["jaxlr"], results["mlp", m2]["jaxlr"]
    total = c2["compile_s"] / c1["compile_s"]
    chunk = c2["compile_chunk_s"] / c1["compile_chunk_s"]
    if total > GOAL_COMPILE:
        misses.append(f"compile M={m2}/M={m1}: {total:.2f}")
    print("## jaxlr.sweep compile time (MLP, its first call in the process)")
    print()
    print(table(["", f"M={m1}", f"M={m2}", f"M={m2} / M={m1}", "goal"], [
        ["all programs, s", fmt(c1["compile_s"], 2), fmt(c2["compile_s"], 2), f"{total:.2f}",
         f"≤ {GOAL_COMPILE}: {_goal(total <= GOAL_COMPILE)}"],
        ["the training program, s", fmt(c1["compile_chunk_s"], 2), fmt(c2["compile_chunk_s"], 2),
         f"{chunk:.2f}", ""]]))
    rec = [x for r in results.values() for v in r.values() for x in v["recompile_s"]]
    print()
    print(f"A second identical jaxlr.sweep call in the same process (logreg, M=2, 10 steps, no "
          f"persistent cache) spent {recompile[1]:.2f} s compiling (first call "
          f"{recompile[0]:.2f} s): jaxlr caches its programs across calls.", end=" ")
    if cached and rec:
        print(f"The timed repeated calls of the measurements spent {min(rec):.2f}–{max(rec):.2f} "
              "s each in compile events.", end="")
    print()
    print()


def report_chunks(r: dict, p: dict, misses: list[str]) -> None:
    steps, small = p["steps"], p["chunk_small"]
    base_label, mid = "jaxlr", f"jaxlr chunk_size={chunked_default(steps)}"
    base = r[base_label]["us"]
    rows = []
    for label in (base_label, mid, f"jaxlr chunk_size={small}"):
        if label not in r or (label == mid and rows and mid == f"jaxlr chunk_size={small}"):
            continue
        over = paired(r[label], r[base_label])
        goal = ""
        if label == f"jaxlr chunk_size={small}":
            goal = f"≤ {GOAL_CHUNK}: {_goal(over <= GOAL_CHUNK)}"
            if over > GOAL_CHUNK:
                misses.append(f"chunk_size={small} / one chunk: {over:.3f}")
        name = f"jaxlr default (one chunk of {steps} steps: one program)" if label == "jaxlr" \
            else label
        rows.append([name, fmt(r[label]["us"]), f"{over:.3f}", goal])
    m = p["chunk_case"][1]
    print(f"## Chunking overhead (MLP, M={m}, {steps} steps)")
    print()
    print(table(["configuration", "µs/member-step", "/ one chunk (paired)", "goal"], rows))
    extra = -(-steps // small) - 1
    if extra > 0:
        per_chunk = (r[f"jaxlr chunk_size={small}"]["us"] - base) * m * steps / 1e3 / extra
        print()
        print(f"chunk_size={small} runs {extra} more chunks than one chunk: "
              f"{per_chunk:.1f} ms per extra chunk (host work between chunks: batch indices, "
              "loss/LR transfers, dispatch; and every chunk program takes the optimizer state "
              "in and gives it back).")
    k = chunked_default(steps)
    print()
    print(f"With progress=False and nothing between chunks the default is one chunk (one "
          f"program); a run that needs chunks (a progress bar) gets chunk_size={k} (at most 200, "
          f"dividing the run evenly): {-(-steps // k)} chunk(s) = {-(-steps // k) * k} scanned "
          "steps.")
    print()


if __name__ == "__main__":
    raise SystemExit(main())
