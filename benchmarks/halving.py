"""Successive halving inside jaxlr.sweep against the unpruned sweep and Optuna's pruner.

Workload (the MLP of ``benchmarks/sweep.py``, whose helpers this script imports): sklearn digits
(X scaled to [0, 1]) split once, stratified, 75% train / 25% eval (``train_test_split``,
``random_state=0``: 1,347 / 450 examples); MLP 64-128-128-10 (pure-JAX params, relu,
He-normal init, seed 0), softmax cross-entropy, Adam, batch 128; M = 81 learning rates
``logspace(1e-4, 1e0)`` (the smallest are far too slow, the largest diverge); 1,800 steps,
evaluated on the eval split every 100 steps. Successive halving: ``min_steps=200``,
``reduction_factor=3``, so the rungs are 200 and 600 (81 -> 27 -> 9 settings, the last 9 run
to the end): 37,800 member-steps instead of 145,800 (3.86x fewer).
Methods, each in its own fresh subprocess (``--method NAME``):
  unpruned       ``jaxlr.sweep(..., eval_data=, eval_every=100)``;
  halving eval   the same with ``prune=jaxlr.successive_halving(200, 3, by="eval")``;
  halving loss   the same ranking by the smoothed training loss (``by="loss"``);
  optuna         ``optuna.create_study(sampler=GridSampler({"lr": lrs}, seed=0),
                 pruner=SuccessiveHalvingPruner(min_resource=200, reduction_factor=3,
                 min_early_stopping_rate=0))``, 81 trials one after the other; a trial trains
                 the same MLP from the same init on the same batches as jaxlr.sweep's members
                 (the sweep's per-seed batch order), one jitted ``lax.scan`` chunk of 100 steps
                 + eval (compiled once, the LR an argument) at a time, ``trial.report(eval loss,
                 step)`` / ``trial.should_prune()`` after each chunk.
Timing: each method is called twice in its process (JAX's start-up is not timed). "first
call": the wall time of the whole call, compilation included (a pruned sweep compiles its
programs once per distinct member batch size: once per rung plus once); "repeat call": the same
call again with the same functions (jaxlr.sweep reuses its cached programs: no tracing, no
compile; optuna: the jitted chunk is reused by a second study); "compile s": tracing + lowering
+ XLA compile of the first call (``jax.monitoring`` events); the goals also print the ratio of
the processes' CPU time, less sensitive to other load on the machine.
Member-steps: training steps actually run, summed over members (a pruned member runs until its
rung). Best: the lowest final eval loss among the members that ran to the end (not pruned,
not diverged); goal: halving by eval >= 3x faster than the unpruned sweep and its best within
1% of the unpruned best. A last table replays successive halving on the unpruned sweep's eval
curves with other ``min_steps`` (no training: how much the outcome depends on the first rung).

Run: ``python benchmarks/halving.py`` (full, ~3.5 minutes on 2 CPU cores) or ``--quick`` (a
smoke test: M=9, 40 steps, rungs 10 and 30, all in this process). Record the printed tables in
``benchmarks/README.md`` with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlr

SCRIPT = Path(__file__).resolve()
sys.path.insert(0, str(SCRIPT.parent))
import sweep as bench_sweep  # noqa: E402  (benchmarks/sweep.py: workload, Meter, report helpers)

GOAL_SPEEDUP = 3.0  # unpruned wall time / halving-by-eval wall time
GOAL_BEST = 0.01  # |best pruned eval / best unpruned eval - 1|
METHODS = ("unpruned", "halving eval", "halving loss", "optuna")


class Setup(NamedTuple):
    members: int
    lr_range: tuple[float, float]  # log10 bounds of the LR grid
    steps: int
    min_steps: int
    eta: int
    eval_every: int
    batch_size: int = 128

    def lrs(self) -> np.ndarray:
        return np.logspace(*self.lr_range, self.members).astype(np.float32)

    def rungs(self, min_steps: int | None = None) -> list[int]:
        out, r = [], min_steps or self.min_steps
        while r < self.steps:
            out.append(r)
            r *= self.eta
        return out


SETUPS = {
    "full": Setup(members=81, lr_range=(-4.0, 0.0), steps=1800, min_steps=200, eta=3,
                  eval_every=100),
    "quick": Setup(members=9, lr_range=(-4.0, 0.0), steps=40, min_steps=10, eta=3,
                   eval_every=10),
}


def split_data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import train_test_split

    x, y = bench_sweep.load_data()
    xt, xe, yt, ye = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    return (xt, yt), (xe, ye)


# --------------------------------------------------------------------------- jaxlr.sweep


def run_sweep(s: Setup, init, train, evald, prune_by: str | None) -> dict:
    """One jaxlr.sweep call; returns what the report needs (plain JSON types)."""
    kwargs = {}
    if prune_by is not None:
        kwargs["prune"] = jaxlr.successive_halving(s.min_steps, reduction_factor=s.eta,
                                                   by=prune_by)
    res = jaxlr.sweep(init, bench_sweep.loss_fn, train, adam_of_lr, jaxlr.grid(lr=s.lrs()),
                      steps=s.steps, batch_size=s.batch_size, eval_data=evald,
                      eval_every=s.eval_every, progress=False, **kwargs)
    pruned_at = np.asarray(getattr(res, "pruned_at", np.full(len(res), -1)))
    ran = np.where(pruned_at >= 0, pruned_at, s.steps)
    best = res.best(by="eval")
    return {
        "member_steps": int(ran.sum()), "ran": ran.tolist(),
        "best_index": best.index, "best_lr": float(best.hparams["lr"]), "best": best.value,
        "diverged": int(res.diverged.sum()), "diverged_at": res.diverged_at.tolist(),
        "eval": res.eval.tolist(), "eval_steps": np.asarray(res.eval_steps).tolist(),
        # finite training losses of the members that did not diverge: must equal their steps run
        "finite_loss_steps": int(np.isfinite(res.loss[~res.diverged]).sum()),
        "expected_loss_steps": int(ran[~res.diverged].sum()),
    }


# --------------------------------------------------------------------------- optuna


def sweep_batch_indices(s: Setup, n: int) -> np.ndarray:
    """[steps, batch] the batches of jaxlr.sweep's seed-0 members (its private helper, so the
    Optuna trials train the sweep's members); else the sweep benchmark's own order."""
    try:
        from jaxlr._sweep.data import batch_indices as _batch_indices

        return np.asarray(_batch_indices(jnp.zeros(1, jnp.int32), jnp.int32(0), s.steps, n,
                                         s.batch_size))[0]
    except (ImportError, TypeError):
        return bench_sweep.member_indices(1, s.steps, n, s.batch_size)[0]


def adam_of_lr(hp: dict) -> optax.GradientTransformation:
    return optax.adam(hp["lr"])


def make_trial_programs(init):
    """``init(key) -> (params, opt_state)`` and ``chunk(params, opt_state, lr, idx, x, y, xe,
    ye) -> (params, opt_state, eval loss)``: ``idx`` [eval_every, batch]; both jitted once."""

    def init_trial(key):
        params = init(key)
        return params, optax.adam(0.0).init(params)  # Adam's state does not depend on the LR

    def chunk(params, opt_state, lr, idx, x, y, xe, ye):
        tx = optax.adam(lr)

        def step(carry, idx_t):
            params, opt_state = carry
            batch = (jnp.take(x, idx_t, axis=0), jnp.take(y, idx_t, axis=0))
            grads = jax.grad(bench_sweep.loss_fn)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), idx)
        return params, opt_state, bench_sweep.loss_fn(params, (xe, ye))

    return jax.jit(init_trial), jax.jit(chunk, donate_argnums=(0, 1))


def run_optuna(s: Setup, train, evald, programs) -> dict:
    """81 (M) trials in sequence under Optuna's SuccessiveHalvingPruner (ASHA)."""
    import optuna

    init_trial, chunk = programs
    arrays = [jnp.asarray(a) for a in (*train, *evald)]
    idx = sweep_batch_indices(s, len(train[0]))
    chunks = [jnp.asarray(idx[t:t + s.eval_every]) for t in range(0, s.steps, s.eval_every)]
    lrs = [float(v) for v in s.lrs()]
    ran: dict[float, int] = {}

    def objective(trial):
        lr = trial.suggest_float("lr", lrs[0], lrs[-1], log=True)
        params, opt_state = init_trial(jax.random.key(0))
        value, done = float("nan"), 0
        for idx_c in chunks:
            params, opt_state, ev = chunk(params, opt_state, jnp.float32(lr), idx_c, *arrays)
            value, done = float(ev), done + len(idx_c)
            ran[lr] = done
            trial.report(value, done)
            if done < s.steps and trial.should_prune():
                raise optuna.TrialPruned()
        return value

    sampler = optuna.samplers.GridSampler({"lr": lrs}, seed=0)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=s.min_steps,
                                                    reduction_factor=s.eta,
                                                    min_early_stopping_rate=0)
    study = optuna.create_study(sampler=sampler, pruner=pruner, direction="minimize")
    study.optimize(objective, n_trials=s.members)
    best = min((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
                and np.isfinite(t.value)), key=lambda t: t.value)
    steps_run = [ran[v] for v in lrs]
    return {"member_steps": int(sum(steps_run)), "ran": steps_run,
            "best_index": lrs.index(best.params["lr"]), "best_lr": best.params["lr"],
            "best": float(best.value), "trials": len(study.trials),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)}


# --------------------------------------------------------------------------- measurement


def measure(method: str, s: Setup, calls: int = 2) -> dict:
    """``calls`` timed runs of one method in this process: wall time (compilation included),
    compile time, and the first run's results."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    train, evald = split_data()
    jax.block_until_ready(jnp.zeros(1) + 1)  # JAX's backend start-up is not timed
    init = bench_sweep.make_init(bench_sweep.WORKLOADS["mlp"])  # one function: the repeat call
    programs = make_trial_programs(init) if method == "optuna" else None  # reuses programs
    walls, cpus, compiles, out = [], [], [], None
    for _ in range(calls):
        with bench_sweep.Meter() as mt:
            if method == "optuna":
                r = run_optuna(s, train, evald, programs)
            else:
                r = run_sweep(s, init, train, evald, None if method == "unpruned"
                              else method.split()[-1])
        walls.append(mt.wall)
        cpus.append(mt.cpu)
        compiles.append(mt.compile)
        out = out or r
    return {**out, "walls": walls, "cpus": cpus, "compiles": compiles}


def measure_in_subprocess(method: str, setup: str) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--method", method, "--setup", setup],
                          capture_output=True, text=True, timeout=1200)
    found = [ln.removeprefix("RESULT ") for ln in proc.stdout.splitlines()
             if ln.startswith("RESULT ")]
    if proc.returncode or not found:
        raise RuntimeError(f"{method} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(found[-1])


# --------------------------------------------------------------------------- report


def replay(unpruned: dict, s: Setup, min_steps: int) -> tuple[list[list[int]], int, int]:
    """Successive halving replayed on the unpruned sweep's eval curves (ranked by the eval at
    each rung; diverged or non-finite last; ties by grid order): (the members kept at each
    rung, member-steps, the index of the best survivor at the end)."""
    ev = np.asarray(unpruned["eval"], np.float64)
    col = {t: j for j, t in enumerate(unpruned["eval_steps"])}
    div = np.asarray(unpruned["diverged_at"])
    final = np.where((div >= 0) | ~np.isfinite(ev[:, -1]), np.inf, ev[:, -1])
    alive, prev, member_steps, kept = np.arange(len(ev)), 0, 0, []
    for r in s.rungs(min_steps):
        member_steps += len(alive) * (r - prev)
        score = ev[alive, col[r]]
        score = np.where(((div[alive] >= 0) & (div[alive] <= r)) | ~np.isfinite(score), np.inf,
                         score)
        alive = np.sort(alive[np.argsort(score, kind="stable")[:max(1, len(alive) // s.eta)]])
        kept.append(alive.tolist())
        prev = r
    member_steps += len(alive) * (s.steps - prev)
    return kept, member_steps, int(alive[np.argmin(final[alive])])


def survivors(r: dict, rung: int) -> list[int]:
    """The members of a result that trained past ``rung``."""
    return [i for i, n in enumerate(r["ran"]) if n > rung]


def print_header(quick: bool, s: Setup) -> None:
    import optuna
    import sklearn

    print("# Successive halving benchmark" + (" (--quick: smoke test, numbers meaningless)"
                                              if quick else ""))
    print()
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- machine: {platform.platform()}; CPU {bench_sweep.cpu_name()}; "
          f"os.cpu_count()={os.cpu_count()}")
    print(f"- load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"- jax {jax.__version__} (backend {jax.default_backend()}), optax {optax.__version__},"
          f" optuna {optuna.__version__}, scikit-learn {sklearn.__version__}, "
          f"jaxlr {jaxlr.__version__}, python {platform.python_version()}")
    lo, hi = s.lr_range
    print(f"- M={s.members} LRs logspace(1e{lo:g}, 1e{hi:g}), steps={s.steps}, "
          f"eval_every={s.eval_every}, batch {s.batch_size}, min_steps={s.min_steps}, "
          f"eta={s.eta}: rungs {s.rungs()}", flush=True)
    print()


def report(results: dict, s: Setup, misses: list[str]) -> None:
    base = results["unpruned"]
    lrs = s.lrs()
    rows = []
    for method, r in results.items():
        first, repeat = r["walls"][0], r["walls"][-1]
        rows.append([method, f"{r['member_steps']:,}",
                     f"{base['member_steps'] / r['member_steps']:.2f}×",
                     bench_sweep.fmt(first, 1), bench_sweep.fmt(r["cpus"][0], 1),
                     bench_sweep.fmt(r["compiles"][0], 1),
                     bench_sweep.fmt(repeat, 1),
                     f"{base['walls'][0] / first:.2f}×", f"{base['walls'][-1] / repeat:.2f}×",
                     bench_sweep.fmt((first - r["compiles"][0]) / r["member_steps"] * 1e6, 0),
                     f"{r['best_lr']:.3g}", f"{r['best']:.4f}",
                     f"{100 * (r['best'] / base['best'] - 1):+.2f}%"])
    print("## Results")
    print()
    print(bench_sweep.table(["method", "member-steps", "fewer", "first call s", "its CPU s",
                             "compile s", "repeat call s", "speed-up (first)",
                             "speed-up (repeat)", "µs/member-step", "best lr", "best eval loss",
                             "vs unpruned best"], rows))
    print()
    print("first call: wall time of the whole call in a fresh process, compilation included "
          "(its CPU s: the process's CPU time during the call, all threads); compile s: its "
          "tracing + lowering + XLA compile (jax.monitoring); repeat call: the "
          "same call again in that process (jaxlr.sweep reuses its cached programs: no tracing, "
          "no compile; optuna: the jitted chunk already compiled). speed-up: unpruned / "
          "method. µs/member-step: (first call - compile) / member-steps. best: lowest final "
          "eval loss among the members that ran to the end (not pruned, not diverged).")
    print()
    rungs = s.rungs()
    print("## Settings left after each rung")
    print()
    kept, _, _ = replay(base, s, s.min_steps)
    rung_rows = [[r, len(kept[k])] + [len(survivors(results[m], r)) for m in METHODS[1:]
                                      if m in results] for k, r in enumerate(rungs)]
    print(bench_sweep.table(["rung (step)", "replayed on the unpruned curves"]
                            + [m for m in METHODS[1:] if m in results], rung_rows))
    print()
    print("optuna: trials that trained past the rung (ASHA with trials in sequence: a trial "
          "goes on when it is in the best 1/eta of the trials that reached the rung before it, "
          "or the best so far among the first eta - 1).")
    print()
    h = results.get("halving eval")
    if h is not None:
        same = kept == [survivors(h, r) for r in rungs]
        print(f"Checks: jaxlr's halving by eval kept {'the same' if same else '**DIFFERENT**'} "
              "members at every rung as the replay on the unpruned eval curves; "
              f"{h['finite_loss_steps']:,} finite training losses of its non-diverged "
              f"members for {h['expected_loss_steps']:,} steps run.")
        print()
    b = base["best_index"]
    print(f"The unpruned best: lr={lrs[b]:.3g} (member {b}), final eval loss {base['best']:.4f}; "
          f"{base['diverged']} of {s.members} members diverged.")
    print()
    rows = []
    for mins in sorted({s.eval_every * k for k in (1, 2, 3, 6)} | {s.min_steps}):
        if not s.rungs(mins) or mins % s.eval_every:
            continue
        kept_m, ms, i = replay(base, s, mins)
        best = base["eval"][i][-1]
        rows.append([mins, ", ".join(map(str, s.rungs(mins))), " → ".join(map(str, [s.members,
                     *map(len, kept_m)])), f"{base['member_steps'] / ms:.2f}×", f"{lrs[i]:.3g}",
                     f"{best:.4f}", f"{100 * (best / base['best'] - 1):+.2f}%"])
    print("## Replayed on the unpruned eval curves: other first rungs")
    print()
    print(bench_sweep.table(["min_steps", "rungs", "settings", "fewer member-steps", "best lr",
                             "best eval loss", "vs unpruned best"], rows))
    print()
    print("## Goals")
    print()
    if h is not None:
        for label, i in (("first call", 0), ("repeat call", -1)):
            speed = base["walls"][i] / h["walls"][i]
            ok = speed >= GOAL_SPEEDUP
            print(f"- halving by eval, {label}: {speed:.2f}× faster than unpruned "
                  f"(≥ {GOAL_SPEEDUP:g}×): {bench_sweep._goal(ok)} (process CPU time: "
                  f"{base['cpus'][i] / h['cpus'][i]:.2f}× less)")
            if not ok:
                misses.append(f"speed-up ({label}) {speed:.2f}×")
        diff = h["best"] / base["best"] - 1
        ok = abs(diff) <= GOAL_BEST
        print(f"- halving by eval, best eval loss vs unpruned best: {100 * diff:+.2f}% "
              f"(within {100 * GOAL_BEST:g}%): {bench_sweep._goal(ok)}")
        if not ok:
            misses.append(f"best {100 * diff:+.2f}%")
    else:
        misses.append("jaxlr.successive_halving is missing: halving not measured")
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: M=9, 40 steps, rungs 10 and 30, in this process")
    ap.add_argument("--method", choices=METHODS, default=None,
                    help="internal: measure one method in this process, print RESULT <json>")
    ap.add_argument("--setup", choices=sorted(SETUPS), default="full", help="internal")
    args = ap.parse_args(argv)
    if args.method:
        print("RESULT " + json.dumps(measure(args.method, SETUPS[args.setup])), flush=True)
        return 0

    setup = "quick" if args.quick else "full"
    s, started = SETUPS[setup], time.perf_counter()
    print_header(args.quick, s)
    methods = [m for m in METHODS if m == "unpruned" or m == "optuna"
               or hasattr(jaxlr, "successive_halving")]
    results = {}
    for method in methods:
        results[method] = (measure(method, s) if args.quick
                           else measure_in_subprocess(method, setup))
        print(f"  measured {method} ({time.perf_counter() - started:.0f} s)", flush=True)
    print()
    misses: list[str] = []
    report(results, s, misses)
    print(f"goals missed: {'; '.join(misses) if misses else 'none'}")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"total time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
