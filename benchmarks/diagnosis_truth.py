"""The sweep diagnosis against a truth set of real sweeps: precision and recall of its advice.

Tasks and data: the truth set of ``benchmarks/finder_truth.py`` (imported from there, not
copied: ``TASKS``, ``build``, ``sweep_lrs``, ``SEEDS``, ``STEPS``): 10 tasks, the CLI's MLP and
logistic regression on digits / breast cancer / wine / ``make_classification`` under SGD,
momentum, Adam, AdamW and RMSProp, each with a fixed train / held-out split. The diagnosis'
thresholds were chosen on generated curves only (``tests/test_diagnose.py``,
``tests/test_advice.py``); none of these tasks influenced any of them, so all 10 are out of its
tuning (the finder's ``tune`` / ``held-out`` split does not apply here and is only printed).

The sweep of a task: ``jaxlr.sweep`` over ``grid(lr=31 log-spaced LRs, seed=[0, 1, 2])``, a
constant LR, 400 steps, batch ``min(128, n_train)``: the sweep of ``finder_truth.truth``, with
``eval_every=100`` (the CLI's default: the held-out loss at steps 100, 200, 300 and 400), so that
the diagnosis has a held-out curve to see overfitting in. The diagnosis: ``res.diagnose()`` on
that result (eval data present: the eval-aware context of ``jaxlr.diagnose`` applies).

Truth of a member, from the sweep's final held-out losses only (the rule was fixed, with its
tolerances, before any diagnosis of these sweeps was looked at):

- a *setting* is an LR (its 3 seeds); ``m(s)``: the mean final held-out loss (step 400) of the
  setting's seeds that did not diverge; ``best``: the lowest ``m`` of the settings with no
  diverged seed (= ``res.best(by="eval")``, the finder's truth);
- ``diverged``: the sweep's quarantine caught the member (``res.diverged``);
- the *basin* at tolerance X: the contiguous run of grid LRs around ``best`` whose settings have
  no diverged seed and ``m(s) <= (1 + X) m(best)``; its smallest and largest LRs are its edges;
- a member not diverged: ``keep`` if its LR is in the basin, ``raise`` if its LR is below the
  basin's smallest, ``lower`` if above its largest.

X = 10% is the primary tolerance (the finder truth's ``basin``); X = 50% is a second reading,
also fixed before looking: the diagnosis calls another setting "clearly lower" when it is >= 5%
of the range (start - its level) lower, or >= 1% of it and 1.5x lower, which on these tasks
(start ~ln(classes), best held-out loss well below it) is roughly a 1.5x band; at X = 50% the
truth asks the question the diagnosis' design answers, at X = 10% the one a user tuning the LR
within 10% asks.

Grey zone (members scored, and also reported without them): a member not diverged whose
setting (a) has ``m(s) / m(best)`` within the tolerance's band edge, between
``sqrt(1 + X)`` and ``(1 + X) ** 2`` (10%: 1.049-1.21; 50%: 1.22-2.25), or (b) has seeds that
disagree: some but not all of its seeds diverged, or the seeds' own held-out losses straddle
``(1 + X) m(best)``, or (c) is within the tolerance but outside the contiguous basin (a
non-monotone curve of ``m`` over the LR). Diverged members are never grey.

The diagnosis' advice, as a direction (what a user acts on):

- ``diverged`` -> diverged (its advice: lower the LR to the largest that did not diverge);
- ``oscillating`` -> lower; ``too_slow`` -> raise; ``healthy`` -> keep;
- ``overfitting`` -> as its advice says: lower when it names a clearly better smaller LR or no
  smaller LR was tried, raise when the clearly better grid point is a larger LR, keep when it
  says "keep the LR" (no smaller LR reached a lower held-out loss); stop earlier / regularise
  comes with each;
- ``grid_edge`` -> raise at the largest LR tried, lower at the smallest (extend the grid);
- ``schedule_too_aggressive``, ``pruned`` -> other (a constant LR has no cut; never right).

Scores: per direction (diverged / raise / keep / lower), precision = share of the members
advised that direction whose truth is that direction, recall = share of the members whose truth
is that direction that were advised it; overall (the 930 members of the 10 tasks pooled) and per
task, with and without the grey zone, at both tolerances; the confusion matrix (truth x advice);
the per-label table (label x truth direction, a label's precision = share whose truth is its
direction). ``--detail`` prints every setting: LR, ``m / m(best)``, truth, grey, the seeds'
labels.

Run: ``python benchmarks/diagnosis_truth.py`` (every task, ~1.5 minutes on 2 CPU cores; ``--tasks
NAME,...`` a subset; ``--detail``). Record the output under ``benchmarks/results/`` with the
machine and date. ``tests/test_diagnosis_truth.py`` runs a fast subset (by default) and the whole
set (``-m slow``).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):  # run from a checkout without installing
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import finder_truth as ft  # noqa: E402  (benchmarks/finder_truth.py: the tasks and data)

import jaxlr  # noqa: E402

EVAL_EVERY = 100  # the CLI's default evaluation period (its chunk size)
TOLERANCES = (0.10, 0.50)  # the basin: m(s) <= (1 + X) m(best); the first is the primary one
DIRECTIONS = ("diverged", "raise", "keep", "lower")
OTHER = "other"  # an advice with no LR direction (schedule_too_aggressive, pruned)
LABEL_ORDER = ("diverged", "oscillating", "overfitting", "too_slow", "healthy", "grid_edge",
               "schedule_too_aggressive", "pruned")


# --------------------------------------------------------------------------- sweep and truth


def run_sweep(task: ft.Task, b: dict[str, Any] | None = None,
              lrs: np.ndarray | None = None) -> Any:
    """The dense sweep of ``finder_truth.truth`` (``lrs``: its 31 LRs unless given), evaluated
    every ``EVAL_EVERY`` steps."""
    b = b or ft.build(task)
    lrs = ft.sweep_lrs(task) if lrs is None else lrs
    return jaxlr.sweep(b["init"], b["loss_fn"], b["data"], lambda hp: b["optimizer"](hp["lr"]),
                       jaxlr.grid(lr=[float(v) for v in lrs], seed=list(ft.SEEDS)),
                       steps=ft.STEPS, batch_size=b["batch_size"], eval_data=b["eval_data"],
                       eval_every=EVAL_EVERY, progress=False)


def settings(res: Any, lrs: np.ndarray) -> np.ndarray:
    """[M] the index in ``lrs`` of each member's LR."""
    member_lr = np.asarray(res.hparams["lr"], np.float64)
    idx = np.argmin(np.abs(np.log(member_lr)[:, None] - np.log(lrs)[None, :]), axis=1)
    assert np.allclose(lrs[idx], member_lr, rtol=1e-6), "a member's LR is not on the grid"
    return idx


def truth(res: Any, lrs: np.ndarray, tol: float) -> dict[str, Any]:
    """The truth of every member at tolerance ``tol`` (the rule of the module docstring)."""
    s = settings(res, lrs)
    n = len(lrs)
    div = np.asarray(res.diverged, bool)
    final = np.asarray(res.eval, np.float64)[:, -1]
    ok = ~div & np.isfinite(final)
    mean = np.full(n, np.nan)
    any_out = np.zeros(n, bool)  # a seed diverged (or has no finite held-out loss)
    all_out = np.zeros(n, bool)
    lo_seed, hi_seed = np.full(n, np.nan), np.full(n, np.nan)
    for k in range(n):
        mine = s == k
        any_out[k] = (~ok[mine]).any()
        all_out[k] = (~ok[mine]).all()
        if ok[mine].any():
            vals = final[mine & ok]
            mean[k], lo_seed[k], hi_seed[k] = vals.mean(), vals.min(), vals.max()
    clean = np.where(any_out, np.inf, mean)
    b = int(np.argmin(clean))
    best = float(clean[b])
    limit = (1 + tol) * best
    within = ~any_out & (mean <= limit)
    lo = hi = b
    while lo > 0 and within[lo - 1]:
        lo -= 1
    while hi < n - 1 and within[hi + 1]:
        hi += 1
    setting_dir = np.where(np.arange(n) < lo, "raise",
                           np.where(np.arange(n) > hi, "lower", "keep"))
    ratio = mean / best
    band = (ratio >= math.sqrt(1 + tol)) & (ratio <= (1 + tol) ** 2)
    disagree = (any_out & ~all_out) | ((lo_seed <= limit) & (hi_seed > limit))
    stray = within & ((np.arange(n) < lo) | (np.arange(n) > hi))
    setting_grey = band | disagree | stray
    direction = np.where(div, "diverged", setting_dir[s])
    grey = ~div & setting_grey[s]
    return {"direction": direction, "grey": grey, "setting": s, "best": b, "basin": (lo, hi),
            "ratio": ratio, "setting_dir": setting_dir, "setting_grey": setting_grey,
            "mixed": any_out & ~all_out, "all_diverged": all_out, "tol": tol}


# --------------------------------------------------------------------------- advice direction


def advice_direction(d: Any) -> str:
    """The direction of a diagnosis' advice (the mapping of the module docstring)."""
    label = d.label
    if label == "diverged":
        return "diverged"
    if label == "oscillating":
        return "lower"
    if label == "too_slow":
        return "raise"
    if label == "healthy":
        return "keep"
    if label == "grid_edge":
        return "raise" if d.evidence["grid_edge"] > 0 else "lower"
    if label == "overfitting":
        if "context_lr" in d.evidence:  # the clearly better setting, named in the advice
            return "lower" if d.evidence["context_lr"] < d.evidence["lr"] else "raise"
        if "keep the LR" in d.advice:
            return "keep"
        if "try a smaller LR" in d.advice:
            return "lower"
        raise AssertionError(f"an overfitting advice of unknown direction: {d.advice!r}")
    return OTHER


# --------------------------------------------------------------------------- scores


def confusion(truth_dir: np.ndarray, advised: np.ndarray) -> dict[tuple[str, str], int]:
    """(truth, advice) -> count."""
    cols = DIRECTIONS + (OTHER,)
    return {(t, a): int(((truth_dir == t) & (advised == a)).sum())
            for t in DIRECTIONS for a in cols}


def scores(truth_dir: np.ndarray, advised: np.ndarray) -> dict[str, dict[str, float]]:
    """Per direction: precision, recall, n (members whose truth is it), advised (members
    advised it); NaN where undefined (nothing advised / no such truth)."""
    out = {}
    for d in DIRECTIONS:
        hit = int(((truth_dir == d) & (advised == d)).sum())
        n, k = int((truth_dir == d).sum()), int((advised == d).sum())
        out[d] = {"precision": hit / k if k else math.nan, "recall": hit / n if n else math.nan,
                  "n": n, "advised": k, "hits": hit}
    out["all"] = {"accuracy": float((truth_dir == advised).mean()) if len(truth_dir) else
                  math.nan, "n": len(truth_dir)}
    return out


def evaluate(task: ft.Task, lrs: np.ndarray | None = None) -> dict[str, Any]:
    """Sweep, diagnosis and truth (at every tolerance) of one task, with timings."""
    b = ft.build(task)
    lrs = ft.sweep_lrs(task) if lrs is None else np.asarray(lrs, np.float64)
    t0 = time.perf_counter()
    res = run_sweep(task, b, lrs)
    t1 = time.perf_counter()
    found = res.diagnose()
    t2 = time.perf_counter()
    labels = np.array([d.label for d in found])
    advised = np.array([advice_direction(d) for d in found])
    truths = {tol: truth(res, lrs, tol) for tol in TOLERANCES}
    best = res.best(by="eval")
    return {"task": task, "lrs": lrs, "labels": labels, "advised": advised, "truth": truths,
            "diagnoses": found, "best_lr": float(best.hparams["lr"]),
            "sweep_s": t1 - t0, "diagnose_s": t2 - t1}


def pooled(rows: list[dict[str, Any]], tol: float, grey: bool = True
           ) -> tuple[np.ndarray, np.ndarray]:
    """(truth, advice) of every member of ``rows`` (``grey=False``: without the grey zone)."""
    t, a = [], []
    for r in rows:
        tr = r["truth"][tol]
        keep = np.ones(len(r["advised"]), bool) if grey else ~tr["grey"]
        t.append(tr["direction"][keep])
        a.append(r["advised"][keep])
    return np.concatenate(t), np.concatenate(a)


# --------------------------------------------------------------------------- report


def _f(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.2f}"


def direction_table(rows: list[dict[str, Any]], tol: float) -> str:
    out = ["| direction | precision | recall | n (truth) | advised | without grey: precision "
           "| recall | n | advised |", "|---|---|---|---|---|---|---|---|---|"]
    sc_all = scores(*pooled(rows, tol, True))
    sc_clear = scores(*pooled(rows, tol, False))
    for d in DIRECTIONS:
        a, c = sc_all[d], sc_clear[d]
        out.append(f"| {d} | {_f(a['precision'])} | {_f(a['recall'])} | {a['n']} | "
                   f"{a['advised']} | {_f(c['precision'])} | {_f(c['recall'])} | {c['n']} | "
                   f"{c['advised']} |")
    out.append(f"| all (accuracy) | {_f(sc_all['all']['accuracy'])} | | {sc_all['all']['n']} | "
               f"| {_f(sc_clear['all']['accuracy'])} | | {sc_clear['all']['n']} | |")
    return "\n".join(out)


def confusion_table(rows: list[dict[str, Any]], tol: float, grey: bool = True) -> str:
    c = confusion(*pooled(rows, tol, grey))
    cols = DIRECTIONS + (OTHER,)
    out = ["| truth \\ advice | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for t in DIRECTIONS:
        out.append(f"| {t} | " + " | ".join(str(c[(t, a)]) for a in cols) + " |")
    return "\n".join(out)


def label_table(rows: list[dict[str, Any]], tol: float) -> str:
    """Label x truth direction (all members), with the label's precision (its direction)."""
    labels = np.concatenate([r["labels"] for r in rows])
    advised = np.concatenate([r["advised"] for r in rows])
    truth_dir, _ = pooled(rows, tol, True)
    grey = np.concatenate([r["truth"][tol]["grey"] for r in rows])
    out = ["| label | n | " + " | ".join(f"truth {d}" for d in DIRECTIONS)
           + " | precision (advice direction) | without grey |",
           "|---|---|" + "---|" * len(DIRECTIONS) + "---|---|"]
    for lab in LABEL_ORDER:
        sel = labels == lab
        if not sel.any():
            continue
        right = (truth_dir == advised) & sel
        clear = sel & ~grey
        p_clear = right[clear].sum() / clear.sum() if clear.any() else math.nan
        out.append(f"| {lab} | {int(sel.sum())} | "
                   + " | ".join(str(int((truth_dir[sel] == d).sum())) for d in DIRECTIONS)
                   + f" | {_f(right.sum() / sel.sum())} | {_f(p_clear)} ({int(clear.sum())}) |")
    return "\n".join(out)


def task_table(rows: list[dict[str, Any]], tol: float, grey: bool = True) -> str:
    out = ["| task | best LR | basin | grey | " + " | ".join(
        f"{d} P / R (n)" for d in DIRECTIONS[1:]) + " | accuracy |",
           "|---|---|---|---|" + "---|" * (len(DIRECTIONS) - 1) + "---|"]
    for r in rows:
        tr = r["truth"][tol]
        t, a = pooled([r], tol, grey)
        sc = scores(t, a)
        lo, hi = tr["basin"]
        cells = [f"{_f(sc[d]['precision'])} / {_f(sc[d]['recall'])} ({sc[d]['n']})"
                 for d in DIRECTIONS[1:]]
        out.append(f"| {r['task'].name} | {r['lrs'][tr['best']]:.3g} | "
                   f"{r['lrs'][lo]:.3g}–{r['lrs'][hi]:.3g} | {int(tr['grey'].sum())} | "
                   + " | ".join(cells) + f" | {_f(sc['all']['accuracy'])} |")
    return "\n".join(out)


def overfitting_keeps(rows: list[dict[str, Any]]) -> str:
    """The ``overfitting`` members advised to keep their LR ("no smaller LR reached a lower
    held-out loss") and how much lower the best smaller LR's mean held-out loss was."""
    found = []
    for r in rows:
        tr = r["truth"][TOLERANCES[0]]
        for i, d in enumerate(r["diagnoses"]):
            if d.label != "overfitting" or r["advised"][i] != "keep":
                continue
            k = tr["setting"][i]
            smaller = tr["ratio"][:k]
            ok = np.isfinite(smaller) & ~tr["mixed"][:k] & ~tr["all_diverged"][:k]
            lowest = float(smaller[ok].min()) if ok.any() else math.nan
            found.append((r["task"].name, float(r["lrs"][k]), tr["ratio"][k] / lowest))
    if not found:
        return "overfitting advised to keep the LR: none"
    lower = [f for f in found if f[2] > 1]
    return (f"overfitting advised to keep the LR: {len(found)} members; a smaller LR of the "
            f"grid had a lower mean held-out loss for {len(lower)} of them (own / lowest smaller: "
            + ", ".join(f"{name} {lr:.3g} {x:.2f}x" for name, lr, x in found) + ")")


_SHORT = {"diverged": "DIV", "oscillating": "osc", "overfitting": "ovf", "too_slow": "slow",
          "healthy": "ok", "grid_edge": "edge", "schedule_too_aggressive": "sched",
          "pruned": "pruned"}


def detail(r: dict[str, Any]) -> str:
    """Every setting of a task: LR, m / m(best), truth at each tolerance (* grey), labels."""
    t10, t50 = (r["truth"][tol] for tol in TOLERANCES)
    out = [f"{r['task'].name} (best {r['lrs'][t10['best']]:.3g}; per setting: LR, m/m(best), "
           f"truth at {TOLERANCES[0]:.0%} / {TOLERANCES[1]:.0%} (* grey), the seeds' labels)"]
    for k, lr in enumerate(r["lrs"]):
        mine = t10["setting"] == k
        labs = ",".join(_SHORT.get(v, v) for v in r["labels"][mine])
        ratio = t10["ratio"][k]
        flag = " all diverged" if t10["all_diverged"][k] else (
            " mixed" if t10["mixed"][k] else "")
        tr10 = t10["setting_dir"][k] + ("*" if t10["setting_grey"][k] else "")
        tr50 = t50["setting_dir"][k] + ("*" if t50["setting_grey"][k] else "")
        if t10["all_diverged"][k]:
            tr10 = tr50 = "diverged"
        out.append(f"  {lr:9.3g}  {ratio:7.3f}  {tr10:7s} {tr50:7s} {labs}{flag}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", help="comma list of task names (default: all)")
    p.add_argument("--detail", action="store_true", help="print every setting of every task")
    a = p.parse_args(argv)
    names = a.tasks.split(",") if a.tasks else [t.name for t in ft.TASKS]
    unknown = [n for n in names if n not in ft.TASK]
    if unknown:
        p.error(f"unknown task(s) {unknown}; choose from {', '.join(ft.TASK)}")
    import jax

    print("# Sweep diagnosis truth set\n")
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    print(f"- machine: {platform.platform()}; {platform.processor() or platform.machine()}; "
          f"{os.cpu_count()} CPUs; jax {jax.__version__} ({jax.default_backend()}); Python "
          f"{platform.python_version()}")
    print(f"- sweep: jaxlr.sweep, {ft.N_LRS} log-spaced LRs x seeds {list(ft.SEEDS)}, {ft.STEPS} "
          f"steps, batch min({ft.BATCH}, n_train), eval_every={EVAL_EVERY}; res.diagnose(); "
          f"truth from the final held-out losses (basin tolerances "
          f"{', '.join(f'{t:.0%}' for t in TOLERANCES)}; the first is the primary)\n")
    rows = []
    t_all = time.perf_counter()
    for name in names:
        r = evaluate(ft.TASK[name])
        rows.append(r)
        recorded = ft.RECORDED_TRUTH[name]
        steps_off = math.log(r["best_lr"] / recorded) / math.log(ft.GRID_STEP)
        labs = ", ".join(f"{lab} {int((r['labels'] == lab).sum())}" for lab in LABEL_ORDER
                         if (r["labels"] == lab).any())
        print(f"{name} ({r['task'].split} for the finder): best {r['best_lr']:.3g} (finder "
              f"truth run 1: {recorded:.3g}, {steps_off:+.1f} grid steps); {labs} (sweep "
              f"{r['sweep_s']:.1f} s, diagnose {r['diagnose_s']:.2f} s)", flush=True)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s\n")
    for tol in TOLERANCES:
        print(f"## Basin tolerance {tol:.0%}{' (primary)' if tol == TOLERANCES[0] else ''}\n")
        print(f"Per direction, {len(rows)} task(s) pooled (grey zone included / left out):\n")
        print(direction_table(rows, tol) + "\n")
        print("Confusion matrix, all members (rows: truth; columns: the advice's direction):\n")
        print(confusion_table(rows, tol, True) + "\n")
        print("Without the grey zone:\n")
        print(confusion_table(rows, tol, False) + "\n")
        print("Per label (all members; precision: the truth is the label's advice direction):\n")
        print(label_table(rows, tol) + "\n")
        if tol == TOLERANCES[0]:
            print(overfitting_keeps(rows) + "\n")
        print("Per task, all members (P / R: precision / recall; grey: members in the grey "
              "zone):\n")
        print(task_table(rows, tol, True) + "\n")
        print("Per task, without the grey zone:\n")
        print(task_table(rows, tol, False) + "\n")
    if a.detail:
        print("## Every setting\n\n```")
        print("\n".join(detail(r) for r in rows))
        print("```")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
