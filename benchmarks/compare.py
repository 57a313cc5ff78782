"""Every way to set the LR in one sweep: tuned Adam and SGD+momentum (12 LRs each) beside six
LR-free / schedule-free methods (Prodigy, D-Adaptation AdamW, DoG, Mechanic on Adam, COCOB,
Schedule-Free AdamW at its default LR), x 3 seeds, on the digits MLP (the CLI's: 64-128-10,
NNX, softmax cross-entropy, batch 128, 500 steps, held-out loss on a fixed 20% split).

Variants, timed in this process after an untimed warm-up call of each (so both reuse their
compiled executables; what is timed is tracing, lowering and training):
  one call   ``jaxlr.sweep`` over the union grid (a categorical ``optimizer`` axis: one
             compiled program, a block of rows and a vmapped step per category);
  separate   one ``jaxlr.sweep`` per optimizer, the grids of the same members.
Both give the same members (same data order and seeds); the script checks that their losses
are equal and prints the comparison report (``SweepResult.compare``): per optimizer its best
setting's held-out loss, its end LR (the effective step for the LR-free ones), its basin and
its gap to the best.

Run: ``python benchmarks/compare.py`` (~2 minutes on 2 CPU cores) or ``--quick`` (20 steps, 2
LRs, 1 seed). Record the output in ``benchmarks/results/`` with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import numpy as np

import jaxlr
from jaxlr._cli import tasks as _tasks

TUNED = {"adam": lambda lr: jaxlr.adam(lr), "momentum": lambda lr: jaxlr.sgd(lr, 0.9)}
FREE = {"prodigy": lambda m: jaxlr.prodigy(m), "dadapt_adamw": lambda m: jaxlr.dadapt_adamw(m),
        "dog": lambda m: jaxlr.dog(m), "mechanic": lambda m: jaxlr.mechanize(jaxlr.adam(m)),
        "cocob": lambda m: jaxlr.cocob(m),
        "schedule_free_adamw": lambda m: jaxlr.schedule_free_adamw(0.0025 * m)}
ALL = {**TUNED, **FREE}


def optimizer(hp):
    return ALL[hp["optimizer"]](hp["lr"])


def grid_of(names, lrs, seeds):
    parts = [jaxlr.grid(optimizer=[n], lr=lrs if n in TUNED else [1.0], seed=seeds)
             for n in names]
    return jaxlr.Grid({k: np.concatenate([g.columns[k] for g in parts])
                       for k in parts[0].columns})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    steps, lrs, seeds = ((20, [1e-2, 1e-1], 1) if args.quick else
                         (500, list(np.logspace(-4, 0, 12)), 3))
    spec = _tasks.DATASETS["digits"]
    x, y, xe, ye = spec.load()
    init = _tasks.make_model("mlp", spec)
    kw = dict(steps=steps, batch_size=128, eval_data=(xe, ye), progress=False)

    def one_call():
        return jaxlr.sweep(init, _tasks.loss_fn, (x, y), optimizer, grid_of(ALL, lrs, seeds),
                           **kw)

    def separate():
        return [jaxlr.sweep(init, _tasks.loss_fn, (x, y), optimizer,
                            grid_of([n], lrs, seeds), **kw) for n in ALL]

    print("# every way to set the LR, in one sweep\n")
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    print(f"- machine: {platform.platform()}; os.cpu_count()={os.cpu_count()}; load average "
          f"at start {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"- digits MLP 64-128-10, batch 128, {steps} steps, {len(lrs)} LRs for adam and "
          f"momentum, the LR-free methods at multiplier 1, {seeds} seed(s)\n")
    one_call(), separate()  # warm-up: compile every program once
    t0 = time.perf_counter()
    res = one_call()
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    parts = separate()
    t_sep = time.perf_counter() - t0
    merged = np.concatenate([p.loss for p in parts])
    same = bool(np.allclose(res.loss, merged, rtol=1e-5, atol=1e-6, equal_nan=True))
    print(f"| variant | members | wall s |\n|---|---|---|\n| one call | {len(res)} | "
          f"{t_one:.1f} |\n| separate ({len(parts)} calls) | {len(res)} | {t_sep:.1f} |\n")
    print(f"one call / separate: {t_one / t_sep:.2f}; losses equal (rtol 1e-5): {same}\n")
    print("```\n" + res.compare("optimizer", text=True) + "\n```")


if __name__ == "__main__":
    main()
