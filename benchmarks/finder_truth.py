"""The LR finder against a truth set: on each task, find_lr's suggestion vs the dense sweep's best.

Truth set (``TASKS``): the models and optimizers of the CLI (``jaxlr._cli.tasks``: the NNX MLP
features-128-classes with relu, the linear ``logreg``; softmax cross-entropy; the optimizers
built by ``make_optimizer`` with the CLI's defaults: ``momentum`` = SGD with momentum 0.9, Adam
b1 0.9 / b2 0.999, AdamW weight decay 1e-4, optax numerics) on four data sets, each with a fixed
train / held-out split (a permutation of numpy seed 0, the last 80% train, the first 20% held
out, as the CLI's digits):

  digits         sklearn ``load_digits``, X / 16 (the CLI's data set): 1,438 / 359, 64 features,
                 10 classes;
  cancer         sklearn ``load_breast_cancer``, standardized with the training split's mean and
                 std: 456 / 113, 30 features, 2 classes;
  wine           sklearn ``load_wine``, standardized likewise: 143 / 35, 13 features, 3 classes;
  synth          sklearn ``make_classification(n_samples=1500, n_features=20, n_informative=8,
                 n_redundant=4, n_classes=3, n_clusters_per_class=2, flip_y=0.02,
                 random_state=0)``, standardized: 1,200 / 300.

The tasks are split once, before any result was seen, into the ones used to choose the finder's
rules (``tune``: the digits tasks an earlier review measured, plus one task on each of two other
data sets) and the ones held out (``held-out``: they influenced no choice; their figure is
reported as it comes).

Truth of a task: ``jaxlr.sweep`` over ``grid(lr=31 log-spaced LRs, seed=[0, 1, 2])``, a
constant LR, ``STEPS`` = 400 steps, batch ``min(128, n_train)``, evaluated once at the end on the
held-out split; the truth is ``res.best(by="eval")``: the LR with the lowest mean held-out
loss over the 3 seeds (a setting with a diverged seed is never the best). The LR range
(``LR_RANGE``: 5 decades, 6.0 points a decade, so neighbours are 1.47x apart) depends on the
optimizer family; the script checks that the best is not at either end of its range (``edge``)
and prints the range of LRs whose mean held-out loss is within 10% of the best (``basin``).

Finder on the same task: ``jaxlr.find_lr`` with its defaults (``min_lr=1e-7``, ``max_lr=10``,
``steps=100``, ``beta=0.98``, ``divergence_factor=4``) and the CLI's ``jaxlr find`` defaults for
the rest (3 seeds, the same batch size), on the training split: ``suggestion`` (the default);
on the same recorded curves, read as fastai and Lightning read them (the bias-corrected 0.98
moving average, ``ema_rules``): fastai's ``valley``, Lightning's ``steepest`` and the old default
(their log-median with ``minimum``/10, find_lr's default before the calibration); and the
default read from each seed's curve alone (``seeds=1``). ``--finder-steps`` adds the default at
other ramp densities. Ratios are suggestion / truth; "within 3x" means 1/3 <= ratio <= 3.

Run: ``python benchmarks/finder_truth.py`` (every task: ~3 minutes on 2 CPU cores; ``--tasks
NAME,...`` a subset; ``--save FILE.npz`` keeps the raw finder curves and the sweeps' mean
held-out losses, to study the rules without training again). Record the printed output under
``benchmarks/results/`` with the machine and the date. ``tests/test_finder_truth.py`` runs
the whole set (``-m slow``) and a fast subset.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import jaxlr  # noqa: E402
from jaxlr._cli import tasks as cli  # noqa: E402
from jaxlr._finder import finder as finder_module  # noqa: E402

STEPS = 400  # the budget of the truth: constant-LR training steps
SEEDS = (0, 1, 2)
N_LRS = 31
BATCH = 128
WITHIN = 3.0  # the goal: 1/3 <= suggestion / truth <= 3 on every task
BASIN = 0.10  # LRs whose mean held-out loss is within 10% of the best
GRID_STEP = 10 ** (5 / (N_LRS - 1))  # the sweep's LR spacing (1.47x)
#: log10 of the sweep's LR range per optimizer (5 decades, 31 points)
LR_RANGE = {"adam": (-4.5, 0.5), "adamw": (-4.5, 0.5), "rmsprop": (-4.5, 0.5),
            "adagrad": (-3.5, 1.5), "sgd": (-3.0, 2.0), "momentum": (-4.0, 1.0)}


class Task(NamedTuple):
    name: str
    dataset: str
    model: str  # "mlp" or "logreg" (jaxlr._cli.tasks.make_model)
    optimizer: str  # a CLI optimizer name
    split: str  # "tune" or "held-out"


TASKS = (
    Task("digits-mlp-adam", "digits", "mlp", "adam", "tune"),
    Task("digits-mlp-sgd", "digits", "mlp", "sgd", "tune"),
    Task("digits-mlp-momentum", "digits", "mlp", "momentum", "tune"),
    Task("digits-logreg-sgd", "digits", "logreg", "sgd", "tune"),
    Task("cancer-mlp-adam", "cancer", "mlp", "adam", "tune"),
    Task("synth-mlp-momentum", "synth", "mlp", "momentum", "tune"),
    Task("wine-mlp-sgd", "wine", "mlp", "sgd", "held-out"),
    Task("cancer-logreg-adam", "cancer", "logreg", "adam", "held-out"),
    Task("synth-mlp-rmsprop", "synth", "mlp", "rmsprop", "held-out"),
    Task("digits-mlp-adamw", "digits", "mlp", "adamw", "held-out"),
)
TASK = {t.name: t for t in TASKS}
#: The truths of run 1 (benchmarks/results/cpu-finder-truth-run1.md), for the tests.
RECORDED_TRUTH = {
    "digits-mlp-adam": 0.0464, "digits-mlp-sgd": 1.47, "digits-mlp-momentum": 0.464,
    "digits-logreg-sgd": 6.81, "cancer-mlp-adam": 0.00147, "synth-mlp-momentum": 0.0215,
    "wine-mlp-sgd": 0.0681, "cancer-logreg-adam": 0.01, "synth-mlp-rmsprop": 0.00147,
    "digits-mlp-adamw": 0.0464,
}


# --------------------------------------------------------------------------- data and task


def _split(x: np.ndarray, y: np.ndarray, standardize: bool) -> tuple:
    """A fixed permutation (numpy seed 0): the first 20% held out, the rest train."""
    perm = np.random.default_rng(0).permutation(len(x))
    n_eval = len(x) // 5
    tr, ev = perm[n_eval:], perm[:n_eval]
    x = x.astype(np.float64)
    if standardize:
        mu, sd = x[tr].mean(axis=0), x[tr].std(axis=0)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)
    x, y = x.astype(np.float32), y.astype(np.int32)
    return x[tr], y[tr], x[ev], y[ev]


def load(dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_held_out, y_held_out) of a data set (see the module docstring)."""
    from sklearn import datasets

    if dataset == "digits":
        return cli.DATASETS["digits"].load()
    if dataset == "cancer":
        x, y = datasets.load_breast_cancer(return_X_y=True)
    elif dataset == "wine":
        x, y = datasets.load_wine(return_X_y=True)
    elif dataset == "synth":
        x, y = datasets.make_classification(
            n_samples=1500, n_features=20, n_informative=8, n_redundant=4, n_classes=3,
            n_clusters_per_class=2, flip_y=0.02, random_state=0)
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    return _split(x, y, standardize=True)


def build(task: Task) -> dict[str, Any]:
    """init, loss_fn, data, eval_data, batch_size and ``optimizer(lr)`` of a task (the CLI's)."""
    xt, yt, xe, ye = load(task.dataset)
    classes = int(max(yt.max(), ye.max())) + 1
    spec = cli.DatasetSpec(xt.shape[1], (1, xt.shape[1], 1), classes, lambda: None, task.dataset)
    s = {"optimizer": task.optimizer, "convention": "optax", "nesterov": False}
    v = {"momentum": 0.9 if task.optimizer == "momentum" else 0.0, "b1": 0.9, "b2": 0.999,
         "weight_decay": 1e-4 if task.optimizer == "adamw" else 0.0}
    return {"init": cli.make_model(task.model, spec), "loss_fn": cli.loss_fn,
            "data": (xt, yt), "eval_data": (xe, ye), "batch_size": min(BATCH, len(xt)),
            "optimizer": lambda lr: cli.make_optimizer(s, v, lr)}


def sweep_lrs(task: Task) -> np.ndarray:
    lo, hi = LR_RANGE[task.optimizer]
    return np.logspace(lo, hi, N_LRS)


# --------------------------------------------------------------------------- truth and finder


def truth(task: Task, b: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dense sweep's best LR by mean held-out loss over the seeds (see the docstring)."""
    b = b or build(task)
    lrs = sweep_lrs(task)
    res = jaxlr.sweep(b["init"], b["loss_fn"], b["data"], lambda hp: b["optimizer"](hp["lr"]),
                      jaxlr.grid(lr=[float(v) for v in lrs], seed=list(SEEDS)), steps=STEPS,
                      batch_size=b["batch_size"], eval_data=b["eval_data"], progress=False)
    best = res.best(by="eval")
    ev = np.where(res.diverged, np.nan, res.metric("eval"))
    member_lr = np.asarray(res.hparams["lr"], np.float64)
    ev = np.stack([ev[np.isclose(member_lr, v, rtol=1e-6)] for v in lrs])  # [lrs, seeds]
    mean = np.full(len(lrs), np.inf)  # a setting with a diverged seed is never the best
    ok = ~np.isnan(ev).any(axis=1)
    mean[ok] = ev[ok].mean(axis=1)
    i = int(np.argmin(mean))
    lr = float(best.hparams["lr"])
    assert math.isclose(lr, float(lrs[i]), rel_tol=1e-6), (lr, lrs[i])
    near = np.flatnonzero(mean <= (1 + BASIN) * mean[i])
    return {"lr": lr, "index": i, "edge": i in (0, len(lrs) - 1), "value": float(mean[i]),
            "basin": (float(lrs[near.min()]), float(lrs[near.max()])), "lrs": lrs,
            "mean_eval": mean}


def finder(task: Task, b: dict[str, Any] | None = None, **kwargs: Any) -> tuple[Any, list[str]]:
    """find_lr on the task's training split (defaults; 3 seeds): the result and its warnings."""
    b = b or build(task)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        res = jaxlr.find_lr(b["init"], b["loss_fn"], b["data"], b["optimizer"],
                            seeds=len(SEEDS), batch_size=b["batch_size"], **kwargs)
    return res, [str(w.message) for w in caught]


def within(ratio: float, factor: float = WITHIN) -> bool:
    return math.isfinite(ratio) and 1 / factor <= ratio <= factor


def ema_rules(res: Any, beta: float = 0.98) -> dict[str, float]:
    """The rules as fastai and Lightning read them: on the mean over seeds of the bias-corrected
    EMA (``beta`` 0.98) of the recorded losses, over the same window; ``old default``: their
    log-median, find_lr's default before the calibration (the same code path as then)."""
    sm = np.stack([finder_module.smooth(row, beta) for row in res.losses])
    mean, _ = finder_module._mean_spread(sm)
    start, end = res.window
    level, _ = finder_module._start_level(res.losses[:, :start])
    if end - start < 3:
        return {"valley": math.nan, "steepest": math.nan, "minimum": math.nan,
                "old default": math.nan}
    out = finder_module.suggest(res.lrs[start:end], mean[start:end], level)
    out["old default"] = finder_module._median_log(out.values())
    return out


def one_seed(res: Any) -> list[float]:
    """The default suggestion of each seed read alone (= ``find_lr(..., seeds=[s])``: a seed's
    curve does not depend on the others)."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for s in range(res.losses.shape[0]):
            one = jaxlr.FinderResult.from_curves(res.lrs, res.losses[s], beta=res.beta,
                                                 divergence_factor=res.divergence_factor,
                                                 diverged_at=res.diverged_at[s:s + 1])
            out.append(one.suggestion)
    return out


def evaluate(task: Task, finder_steps: tuple[int, ...] = (100,)) -> dict[str, Any]:
    """Truth and finder of one task (the finder at each ``steps``; the first is the main one),
    with timings."""
    b = build(task)
    t0 = time.perf_counter()
    tr = truth(task, b)
    t1 = time.perf_counter()
    runs = {n: finder(task, b, steps=n) for n in finder_steps}
    t2 = time.perf_counter()
    res, warned = runs[finder_steps[0]]
    return {"task": task, "truth": tr, "finder": res, "warnings": warned, "ema": ema_rules(res),
            "one_seed": one_seed(res), "by_steps": {n: r[0].suggestion for n, r in runs.items()},
            "sweep_s": t1 - t0, "finder_s": t2 - t1}


# --------------------------------------------------------------------------- report


def _x(ratio: float) -> str:
    if not math.isfinite(ratio):
        return "—"
    return f"{ratio:.2f}x" + ("" if within(ratio) else " **miss**")


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| task | split | truth LR (within 10%) | edge | suggestion | ratio | 1 seed: ratios "
           "| old default | ratio | fastai valley | ratio | Lightning steepest | ratio |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, tr, res, ema = r["task"], r["truth"], r["finder"], r["ema"]
        lr = tr["lr"]
        singles = ", ".join(f"{v / lr:.2f}" + ("" if within(v / lr) else "*")
                            for v in r["one_seed"])
        out.append(
            f"| {t.name} | {t.split} | {lr:.3g} ({tr['basin'][0]:.3g}–{tr['basin'][1]:.3g}) | "
            f"{'**yes**' if tr['edge'] else 'no'} | {res.suggestion:.3g} | "
            f"{_x(res.suggestion / lr)} | {singles} | {ema['old default']:.3g} | "
            f"{_x(ema['old default'] / lr)} | {ema['valley']:.3g} | {_x(ema['valley'] / lr)} | "
            f"{ema['steepest']:.3g} | {_x(ema['steepest'] / lr)} |")
    return "\n".join(out)


def steps_table(rows: list[dict[str, Any]]) -> str:
    steps = list(rows[0]["by_steps"])
    out = ["| task | split | truth | " + " | ".join(f"steps={n}" for n in steps) + " |",
           "|---|---|---|" + "---|" * len(steps)]
    for r in rows:
        lr = r["truth"]["lr"]
        out.append(f"| {r['task'].name} | {r['task'].split} | {lr:.3g} | "
                   + " | ".join(f"{v:.3g} ({_x(v / lr)})" for v in r["by_steps"].values())
                   + " |")
    return "\n".join(out)


def summary(rows: list[dict[str, Any]]) -> str:
    lines = []
    for split in ("tune", "held-out"):
        part = [r for r in rows if r["task"].split == split]
        if not part:
            continue
        columns = {"suggestion": [r["finder"].suggestion for r in part],
                   "old default": [r["ema"]["old default"] for r in part],
                   "fastai valley": [r["ema"]["valley"] for r in part],
                   "Lightning steepest": [r["ema"]["steepest"] for r in part],
                   "suggestion, 1 seed": [v for r in part for v in r["one_seed"]]}
        truths = {"suggestion, 1 seed": [r["truth"]["lr"] for r in part for _ in r["one_seed"]]}
        for key, values in columns.items():
            ratios = [v / t for v, t in zip(values, truths.get(key, [r["truth"]["lr"]
                                                                   for r in part]))]
            ok = sum(within(x) for x in ratios)
            logs = [abs(math.log10(x)) if math.isfinite(x) and x > 0 else math.inf
                    for x in ratios]
            lines.append(f"- {split}, {key}: within {WITHIN:g}x on {ok} of {len(ratios)}; "
                         f"worst factor {10 ** max(logs):.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", help="comma list of task names (default: all)")
    p.add_argument("--split", choices=("tune", "held-out"), help="only the tasks of one split")
    p.add_argument("--finder-steps", default="100", help="comma list of find_lr steps (default "
                   "100, its default; the first is the main table's, more add a table)")
    p.add_argument("--save", help="save the raw finder curves and the sweeps' mean held-out "
                   "losses to this .npz")
    a = p.parse_args(argv)
    names = a.tasks.split(",") if a.tasks else [t.name for t in TASKS
                                                if a.split in (None, t.split)]
    unknown = [n for n in names if n not in TASK]
    if unknown:
        p.error(f"unknown task(s) {unknown}; choose from {', '.join(TASK)}")
    finder_steps = tuple(int(v) for v in a.finder_steps.split(","))
    import jax

    print("# LR finder truth set\n")
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    print(f"- machine: {platform.platform()}; {platform.processor() or platform.machine()}; "
          f"{os.cpu_count()} CPUs; jax {jax.__version__} ({jax.default_backend()}); Python "
          f"{platform.python_version()}")
    print(f"- truth: jaxlr.sweep, {N_LRS} log-spaced LRs x seeds {list(SEEDS)}, {STEPS} steps, "
          f"batch min({BATCH}, n_train), best mean held-out loss; finder: find_lr defaults, "
          f"{len(SEEDS)} seeds, same batch\n")
    rows, saved = [], {}
    t_all = time.perf_counter()
    for name in names:
        r = evaluate(TASK[name], finder_steps)
        rows.append(r)
        res, tr = r["finder"], r["truth"]
        print(f"{name}: truth {tr['lr']:.3g}, suggestion {res.suggestion:.3g} "
              f"(sweep {r['sweep_s']:.1f} s, finder {r['finder_s']:.1f} s)"
              + "".join(f"\n  warning: {w}" for w in r["warnings"]), flush=True)
        saved.update({f"{name}/lrs": res.lrs, f"{name}/losses": res.losses,
                      f"{name}/diverged_at": res.diverged_at, f"{name}/sweep_lrs": tr["lrs"],
                      f"{name}/mean_eval": tr["mean_eval"]})
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s\n")
    print("Ratios are suggestion / truth; **miss**: outside [1/3, 3]; 1 seed: each seed's curve "
          "read alone (* = miss); old default: the median of the three rules on the EMA (find_lr "
          "before the calibration); fastai valley, Lightning steepest: those rules on the EMA "
          "(beta 0.98), as those libraries read them.\n")
    print(table(rows) + "\n")
    if len(finder_steps) > 1:
        print("Default suggestion by find_lr steps (the ramp 1e-7..10 at other densities):\n")
        print(steps_table(rows) + "\n")
    print(summary(rows))
    edges = [r["task"].name for r in rows if r["truth"]["edge"]]
    print(f"\nbest at an edge of its LR range: {', '.join(edges) if edges else 'none'}")
    if a.save:
        np.savez(a.save, **saved)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
