"""Run directories: what a sweep or an LR range test measured, on disk, readable without JAX.

A run directory (written by the ``jaxlr`` command, or by :meth:`SweepResult.save` for the
result files alone) holds:

- ``config.json``: every argument of the run, the grid, the seeds, the jaxlr version;
- ``environment.json``: versions (jaxlr, jax, jaxlib, optax, flax, numpy...), backend, devices,
  Python, platform, CPU count, ``XLA_FLAGS``;
- ``results.npz`` (a sweep): ``loss``, ``lr`` [M, steps], ``eval`` [M, E], ``eval_<metric>``
  [M, E], ``eval_steps`` [E], ``diverged``, ``diverged_at``, ``pruned_at`` [M], ``hp_<name>``
  [M] (the grid's columns, in the order of ``hparam_names``); or ``finder.npz`` (an LR range test);
- ``summary.json``: the table rows (mean ± std over seeds), the recommended setting (with
  the grid edge it sits on, if any, and what ``result.best(over="member")``, the single best
  member, would pick), the LR sensitivity of each LR sweep, each member's diagnosis, and a
  SHA-256 of the result arrays (equal digests = equal arrays);
- ``sweep.png`` / ``finder.png`` (with matplotlib) and ``checkpoints/`` (the sweep's).

Files are written to a temporary name and renamed into place, so a killed run never leaves a
half-written record. :func:`load` reads a run back, and checks it first: a file jaxlr did not
write (or a damaged one) is one ``ValueError`` naming the file, and the arrays must match the
``arrays_sha256`` of ``summary.json`` when it has one. Trained parameters are not in
``results.npz``, but a run of the ``jaxlr`` command restores them from its last checkpoint.

The ``jaxlr`` command writes only into a new or empty directory (or refuses a jaxlr run
directory with the command that continues it): a user's own ``summary.json`` is never
overwritten. Paths in the hints it prints are shell-quoted, ready to paste.

Why one file of ~900 lines: a run directory's files (config, environment, results,
summary, figures) are written and read back by the same functions; the TensorBoard export
is its own module.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from jaxlr._diagnose import Diagnosis, lr_sensitivity
from jaxlr._sweep import Grid, SweepResult, final_state

if TYPE_CHECKING:
    import chex

    from jaxlr._finder import FinderResult

CONFIG = "config.json"
ENVIRONMENT = "environment.json"
RESULTS = "results.npz"
FINDER = "finder.npz"
SUMMARY = "summary.json"
SWEEP_PNG = "sweep.png"
FINDER_PNG = "finder.png"
CHECKPOINTS = "checkpoints"

_UMASK = os.umask(0o022)
os.umask(_UMASK)
_NO_PARAMS = ("trained params are not stored in results.npz (only the curves are){why}; re-run "
              "the sweep and use the SweepResult it returns")


# --------------------------------------------------------------------------- files


def plain(value: Any) -> Any:
    """JSON-safe: numpy scalars/arrays to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _atomic_write(path: Path, write: Callable[[IO], None], mode: str = "w") -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; records are ordinary files
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (NaN/inf become null)."""
    text = json.dumps(plain(obj), indent=2, allow_nan=False) + "\n"
    _atomic_write(Path(path), lambda f: f.write(text))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def quote(path: str | os.PathLike) -> str:
    """``path`` as one shell word, for the commands printed in hints."""
    return shlex.quote(str(path))


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a run of the ``jaxlr`` command. Raises ``OSError`` when it
    cannot be read, and a ``ValueError`` naming the file when jaxlr did not write it."""
    path = Path(path)
    try:
        config = read_json(path)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        config, problem = None, "it is not JSON"
    else:
        problem = "it has no jaxlr command, version and settings"
    if (isinstance(config, dict) and config.get("command") in ("sweep", "find")
            and "jaxlr_version" in config and isinstance(config.get("settings"), dict)):
        return config
    raise ValueError(f"{path} was not written by jaxlr ({problem}); give a directory written "
                     "by jaxlr sweep or jaxlr find")


def factory(config: dict[str, Any]) -> Callable[[dict], dict]:
    """The function ``config.json`` names (``"module:function"``) that rebuilds the run's
    functions from its settings, imported by name (the records layer knows no command; runs
    written before the name was recorded are the ``jaxlr sweep`` command's). Only jaxlr's own
    modules are imported: a run directory is data, not code."""
    name = config.get("factory", "jaxlr._cli.tasks:sweep_inputs")
    module, _, attr = str(name).partition(":")
    if not (module == "jaxlr" or module.startswith("jaxlr.")) or not attr:
        raise ValueError(f"{CONFIG} names factory {name!r}: only jaxlr's own functions "
                         "('jaxlr.module:function') are imported")
    return getattr(importlib.import_module(module), attr)


def make_run_dir(out: str | os.PathLike | None, command: str) -> Path:
    """Create the run directory: ``out``, or ``runs/<YYYYmmdd-HHMMSS>-<command>`` (a ``-2``,
    ``-3``... suffix if that exists). Raises ``ValueError`` (with the fix) if it cannot be
    written."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path("runs") / f"{stamp}-{command}"
        path, k = base, 1
        while path.exists():
            k += 1
            path = base.with_name(f"{base.name}-{k}")
    else:
        path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"the run directory {path} is an existing file; pass --out DIR with a "
                         "directory path")
    entries = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if entries:  # never write into a directory holding anything: no file is overwritten
        try:
            command = read_config(path / CONFIG)["command"]
        except (OSError, ValueError):
            command = None
        if command is not None:
            what = (f"continue it with: jaxlr resume {quote(path)}" if command == "sweep" else
                    f"re-print it with: jaxlr report {quote(path)}")
            raise ValueError(f"{path} already holds a jaxlr {command} run; pass another --out "
                             f"DIR, or {what}")
        shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" * (len(entries) > 4))
        raise ValueError(f"--out {quote(path)}: the directory is not empty and is not a jaxlr run "
                         f"directory (it holds {shown}); jaxlr writes only into a new or empty "
                         f"directory, so that none of your files is overwritten: pass --out "
                         f"with one, e.g. --out {quote(path / 'jaxlr-run')}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe-", delete=True)
        probe.close()
    except OSError as e:
        raise ValueError(f"cannot write the run directory {path} ({e.strerror or e}); pass "
                         "--out DIR with a writable directory") from None
    return path


def package_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Versions, backend, devices and machine of this process (imports jax)."""
    import jax

    devices = jax.devices()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        cores = os.cpu_count()
    versions = {d: package_version(d) for d in ("jaxlr", "jax", "jaxlib", "optax", "flax", "numpy",
                                         "scikit-learn", "matplotlib", "tqdm")}
    return {
        "versions": versions,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_count": len(devices),
        "device_kind": devices[0].device_kind if devices else None,
        "python": sys.version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": cores,
        "env": {k: os.environ.get(k) for k in ("XLA_FLAGS", "JAX_PLATFORMS",
                                               "JAX_ENABLE_X64", "CUDA_VISIBLE_DEVICES")},
    }


# --------------------------------------------------------------------------- diagnosis


def diagnoses(result: SweepResult) -> list | None:
    """Each member's diagnosis (``label``, ``reason``, ``advice``), or None when unavailable
    (no diagnosis module, or curves too short to judge)."""
    try:
        if hasattr(result, "diagnose"):
            found = result.diagnose()
        else:
            from jaxlr._diagnose import diagnose_sweep

            found = diagnose_sweep(result)
    except ImportError:
        return None
    except ValueError:  # e.g. fewer steps than a trend needs
        return None
    except Exception as e:  # noqa: BLE001 - a diagnosis bug must not lose a finished run
        warnings.warn(f"the diagnosis failed ({type(e).__name__}: {e}); shown as '—'",
                      RuntimeWarning, stacklevel=2)
        return None
    return list(found)


# --------------------------------------------------------------------------- summary


def _stats(values: np.ndarray) -> dict[str, float | None]:
    ok = values[np.isfinite(values)]
    if not ok.size:
        return {"mean": None, "std": None}
    return {"mean": float(ok.mean()), "std": float(ok.std())}


def _hp_value(v: np.generic) -> Any:
    return float(str(v)) if isinstance(v, np.float32) else v.item()


def summarize(result: SweepResult, diagnosis: list | None | str = "auto") -> dict[str, Any]:
    """The sweep's summary: one row per setting, the recommended setting, its LR sensitivity
    and the diagnosis of every member.

    - ``rows``: one per setting, the mean ± std over seeds of each final metric (diverged seeds
      left out; a setting successive halving stopped: its value at its rung, ``pruned_at``),
      the members' diagnosis labels.
    - ``recommended``: ``result.best(by)`` with ``by="eval"`` when the sweep was evaluated
      (else the final training loss): with seeds, the lowest mean over seeds, a setting with a
      diverged seed never the best. ``result.best(over="member")`` ranks single members
      instead (the luckiest seed): ``recommended["best_member"]`` is what it returns, so the
      two can be told apart. ``recommended["grid_edge"]``: when the recommended LR is the
      smallest or largest of its LR sweep (of >= 2 LRs), the edge and the LR a decade beyond it
      (``extend_to``), else None.
    - ``sensitivity``: :meth:`SweepResult.sensitivity` (by the same metric) per setting of the
      other axes, as plain lists and numbers (NaN as None); None without an LR axis or after
      population-based training.

    Args:
        result: a :class:`jaxlr.SweepResult`.
        diagnosis: the members' :class:`jaxlr.Diagnosis` list, None for none, or "auto" to run
            :meth:`SweepResult.diagnose` (None when the curves are too short to judge).

    Returns:
        A dict (numpy values and NaN inside; :func:`plain` makes it JSON-safe).

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> from jaxlr._records import summarize, format_recommendation
        >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
        >>> res = jaxlr.sweep(lambda k: jnp.zeros(1), lambda w, b: jnp.mean(
        ...     (b[0] @ w - 2.0 * b[0][:, 0]) ** 2), (x,), lambda hp: jaxlr.sgd(hp["lr"]),
        ...     jaxlr.grid(lr=[0.001, 0.01, 0.1], seed=2), steps=30, batch_size=8,
        ...     progress=False)
        >>> s = summarize(res)
        >>> s["recommended"]["hparams"], s["recommended"]["grid_edge"]["extend_to"]
        ({'lr': 0.1}, 1.0)
        >>> print(format_recommendation(s).splitlines()[1])
          grid edge: best at the largest LR tried, 0.1: extend the grid to ~1

    References:
        The Deep Learning Tuning Playbook (the best trial not at the search space's boundary):
        https://github.com/google-research/tuning_playbook ; M. Wortsman et al. 2023, §2.2
        (LR sensitivity): https://arxiv.org/abs/2309.14322
    """
    if isinstance(diagnosis, str):
        diagnosis = diagnoses(result)
    by = "eval" if result.eval is not None else "loss"
    # a member stopped by successive halving shows its value at its rung ("pruned at")
    metrics = {("eval loss" if by == "eval" else "final loss"): result.at_stop(by)}
    metrics.update({name: result.at_stop(name) for name in sorted(result.eval_aux)})
    hp = result.hparams
    seeds = np.unique(hp["seed"]) if "seed" in hp else np.zeros(1)
    copied = result.copied()  # population-based: the best is one slot, with its lineage
    over = "seed" if "seed" in hp and not copied else "member"  # best()'s default
    try:
        best = result.best(by=by)
    except ValueError:
        best = None
    end = result.final_hparams() if copied else None
    # one row per setting (its seeds), or after population-based training one per slot
    groups = ([np.asarray([i]) for i in range(len(result))] if copied else
              list(result.by_setting().values()))
    diverged = np.asarray(result.diverged, bool)
    pruned = np.asarray(result.pruned_at) >= 0
    labels = [d.label for d in diagnosis] if diagnosis is not None else None
    rows = []
    for idx in groups:
        i0 = int(idx[0])
        keep = idx[~diverged[idx]]
        row_labels = [labels[i] for i in idx] if labels else []
        common = Counter(row_labels).most_common(1)
        label = "—"
        if common:
            label, count = common[0]
            label = label if count == len(idx) else f"{label} ({count}/{len(idx)})"
        rows.append({
            "hparams": {k: _hp_value(v[i0]) for k, v in hp.items() if k != "seed"},
            "members": idx.tolist(),
            "seeds": len(idx),
            "diverged": int(diverged[idx].sum()),
            "pruned_at": int(result.pruned_at[i0]),
            "metrics": {name: _stats(np.asarray(vals, np.float64)[keep])
                        for name, vals in metrics.items()},
            "diagnosis": label,
            "labels": row_labels,
            "best": best is not None and best.index in idx,
            **({"slot": i0, "end": {k: _hp_value(v[i0]) for k, v in end.items()
                                    if k != "seed"},
                "seed": _hp_value(hp["seed"][i0]) if "seed" in hp else 0} if copied else {}),
        })
    sensitivity = None if copied else _sensitivity(result, by)
    recommended = None
    if best is not None:
        row = next(r for r in rows if r["best"])
        metrics_best = row["metrics"] if not copied else {
            name: _stats(np.asarray(vals, np.float64)[[best.index]])
            for name, vals in metrics.items()}
        recommended = {"hparams": {k: v for k, v in best.hparams.items() if k != "seed"},
                       "member": best.index, "by": by,
                       "value": best.value, "std": best.std, "metrics": metrics_best,
                       "seeds": row["seeds"] if not copied else 1,
                       "lineage": ([seg._asdict() for seg in result.lineage(best.index)]
                                   if copied else None),
                       "diagnosis": (_diagnosis_dict(diagnosis[best.index])
                                     if diagnosis is not None else None),
                       "ranking": ("mean over seeds" if over == "seed" else "single member"),
                       "best_member": _best_member(result, by) if over == "seed" else None,
                       "grid_edge": None, "sensitivity": None}
        group = _group_of(result, best.index, sensitivity)
        if group is not None:
            recommended["sensitivity"] = group
            recommended["grid_edge"] = _grid_edge(result, best.index, group)
    return {
        "comparison": _comparison(result, by, copied),
        "members": len(result),
        "steps": int(result.loss.shape[1]),
        "axes": [k for k in hp if k != "seed"],
        "seeds": [int(s) for s in seeds] if "seed" in hp else [0],
        "by": by,
        "metric_names": list(metrics),
        "recommended": recommended,
        "rows": rows,
        "diverged": int(diverged.sum()),
        "pruned": int(pruned.sum()),
        "label_counts": dict(Counter(labels)) if labels else {},
        "copied": copied,  # population-based: a row per slot, its start and end hparams
        "sensitivity": sensitivity,
        "diagnosis": ([_diagnosis_dict(d) for d in diagnosis] if diagnosis is not None
                      else None),
    }


def _comparison(result: SweepResult, by: str, copied: bool) -> dict | None:
    """:meth:`SweepResult.compare` along the categorical axis (``optimizer`` first) with >= 2
    values, as dicts and its text; None without one (or after population-based training)."""
    hp = result.hparams
    axes = [k for k, v in hp.items() if v.dtype.kind in "US" and len(np.unique(v)) > 1]
    if not axes or copied:
        return None
    axis = "optimizer" if "optimizer" in axes else axes[0]
    rows = result.compare(axis, by=by)
    return {"axis": axis, "by": by, "rows": [plain(c._asdict()) for c in rows],
            "text": result.compare(axis, by=by, text=True)}


def format_comparison(summary: dict[str, Any]) -> str:
    """The summary's comparison of the categories (e.g. each optimizer: its best setting, its
    end LR, its basin and its gap to the best one), or "" when the grid has none."""
    c = summary.get("comparison")
    if not c:
        return ""
    body = "\n".join("  " + line for line in c["text"].splitlines())
    return f"{c['axis']}s compared (the best setting of each, by {c['by']}):\n{body}"


def _diagnosis_dict(d: Diagnosis) -> dict[str, str]:
    return {"label": d.label, "reason": d.reason, "advice": d.advice}


def _sensitivity(result: SweepResult, by: str) -> list[dict] | None:
    """:meth:`SweepResult.sensitivity` as JSON-safe dicts (None without an LR axis)."""
    try:
        found = lr_sensitivity(result, by=by)
    except ValueError:  # no LR axis
        return None
    return [plain(s._asdict()) for s in found]


def _lr_name(result: SweepResult) -> str | None:
    return next((k for k in ("lr", "learning_rate") if k in result.hparams), None)


def _group_of(result: SweepResult, i: int, sensitivity: list[dict] | None) -> dict | None:
    """The sensitivity entry of member ``i``'s LR sweep (its other axes' values)."""
    name = _lr_name(result)
    if sensitivity is None or name is None:
        return None
    key = {k: _hp_value(v[i]) for k, v in result.hparams.items() if k not in (name, "seed")}
    return next((g for g in sensitivity if g["setting"] == key), None)


def _grid_edge(result: SweepResult, i: int, group: dict) -> dict | None:
    """``{"edge": "largest"|"smallest", "lr", "extend_to"}`` when member ``i``'s LR, the
    best of its LR sweep, is its largest / smallest (of >= 2 LRs), else None."""
    lr = float(_hp_value(result.hparams[_lr_name(result)][i]))
    if not group["edge"] or group["best_lr"] is None or not math.isclose(
            group["best_lr"], lr, rel_tol=1e-6):
        return None
    return {"edge": "largest" if group["edge"] > 0 else "smallest", "lr": lr,
            "extend_to": group["extend_to"]}


def _best_member(result: SweepResult, by: str) -> dict | None:
    """What ``result.best(by, over="member")`` returns: the single best member."""
    try:
        b = result.best(by=by, over="member")
    except ValueError:
        return None
    seed = result.hparams["seed"][b.index].item() if "seed" in result.hparams else None
    return {"member": b.index, "hparams": {k: _hp_value(result.hparams[k][b.index])
                                           for k in result.hparams if k != "seed"},
            "seed": seed, "value": b.value}


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def format_table(summary: dict[str, Any]) -> str:
    """The summary's rows as an aligned text table: one row per setting (mean ± std over its
    seeds that did not diverge), ``*`` marking the recommended one, and the diagnosis; after
    population-based training one row per slot, with its start and end hyperparameters.
    The one renderer of :meth:`SweepResult.table`, ``jaxlr sweep`` and ``jaxlr report``."""
    names, metric_names = summary["axes"], summary["metric_names"]
    pruning, copied = bool(summary.get("pruned")), bool(summary.get("copied"))
    seeded = copied and len(summary.get("seeds", [0])) > 1
    header = ["", *(["slot"] if copied else []),
              *(f"{k} start" if copied else k for k in names),
              *(f"{k} end" for k in names if copied), *(["seed"] if seeded else []),
              *metric_names, "diverged", *(["pruned at"] if pruning else []), "diagnosis"]
    lines = []
    for row in summary["rows"]:
        cells = ["*" if row["best"] else "", *([str(row["slot"])] if copied else []),
                 *(_num(row["hparams"][k]) for k in names),
                 *(_num(row["end"][k]) for k in names if copied),
                 *([str(row["seed"])] if seeded else [])]
        for m in metric_names:
            s = row["metrics"][m]
            if s["mean"] is None:
                cells.append("—")
            else:
                spread = f" ± {s['std']:.2g}" if row["seeds"] - row["diverged"] > 1 else ""
                cells.append(f"{s['mean']:.4g}{spread}")
        cells.append(f"{row['diverged']}/{row['seeds']}")
        if pruning:
            cells.append(str(row["pruned_at"]) if row["pruned_at"] >= 0 else "")
        cells.append(row["diagnosis"])
        lines.append(cells)
    widths = [max(len(r[j]) for r in [header, *lines]) for j in range(len(header))]
    left = {len(header) - 1}  # the diagnosis reads better left-aligned

    def fmt(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if j in left else c.rjust(w)
                         for j, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def result_table(result: SweepResult) -> str:
    """:meth:`SweepResult.table`: :func:`format_table`, :func:`format_recommendation` and
    (with a categorical axis) :func:`format_comparison` of :func:`summarize` (the same text
    ``jaxlr sweep`` prints)."""
    summary = summarize(result)
    compared = format_comparison(summary)
    return (format_table(summary) + "\n" + format_recommendation(summary)
            + (f"\n{compared}" if compared else ""))


def format_recommendation(summary: dict[str, Any]) -> str:
    """A few lines: the recommended setting with its metrics over seeds and how it was ranked
    (``result.best()``: the mean over seeds when seeded; and what ``result.best(over="member")``
    picks when that differs), the grid edge it sits on, its LR sweep's sensitivity (one line, see
    :func:`format_sensitivity`) and its member's diagnosis."""
    rec = summary["recommended"]
    if rec is None:
        return "no recommendation: every member diverged; lower the learning rates"
    what = ", ".join(f"{k}={_num(v)}" for k, v in rec["hparams"].items())
    parts = []
    for name, s in rec["metrics"].items():
        if s["mean"] is not None:
            spread = f" ± {s['std']:.2g}" if rec["seeds"] > 1 else ""
            parts.append(f"{name} {s['mean']:.4g}{spread}")
    seeds = f" over {rec['seeds']} seeds" if rec["seeds"] > 1 else ""
    by = "eval loss" if rec["by"] == "eval" else "final training loss"
    if rec.get("ranking") == "mean over seeds":
        how = f"lowest mean {by} over seeds: result.best()"
    else:
        how = f"lowest {by}"
    text = f"recommended: {what}  ({', '.join(parts)}{seeds}; {how})"
    one = rec.get("best_member")
    if one is not None and one["hparams"] != rec["hparams"]:
        single = ", ".join(f"{k}={_num(v)}" for k, v in one["hparams"].items())
        text += (f"\n  result.best(over=\"member\") ranks single members instead: {single}, "
                 f"seed {one['seed']}"
                 f" ({by} {_num(one['value'])}), the best single seed, not the best setting")
    edge = rec.get("grid_edge")
    if edge:
        to = "to" if edge["edge"] == "largest" else "down to"
        text += (f"\n  grid edge: best at the {edge['edge']} LR tried, {_num(edge['lr'])}: "
                 f"extend the grid {to} ~{_num(edge['extend_to'])}")
    if rec.get("sensitivity"):
        text += "\n  " + format_sensitivity(rec["sensitivity"])
    if rec.get("lineage"):
        steps = "; ".join(
            f"{seg['start']}-{seg['end']}: "
            + ", ".join(f"{k}={_num(v)}" for k, v in seg["hparams"].items() if k != "seed")
            + (f" (from slot {seg['parent']})" if j else f" (slot {seg['slot']})")
            for j, seg in enumerate(rec["lineage"]))
        text += f"\n  discovered schedule of slot {rec['member']} (steps: values): {steps}"
    if rec.get("diagnosis"):
        d = rec["diagnosis"]
        text += f"\n  diagnosis: {d['label']}: {d['reason']} -> {d['advice']}"
    return text


def format_sensitivity(s: dict[str, Any]) -> str:
    """One line: an LR sweep's sensitivity, basin, divergence boundary and best-LR interval
    (an entry of ``summary["sensitivity"]``)."""
    metric = "eval loss" if s["by"] == "eval" else "final training loss"
    parts = []
    stopped = sum(1 for n in s.get("pruned") or [] if n)
    if s["sensitivity"] is not None:
        parts.append(f"LR sensitivity {s['sensitivity']:.3g} (Wortsman et al. 2023)")
    elif stopped:
        parts.append(f"LR sensitivity n/a (successive halving stopped {stopped} of "
                     f"{len(s['lrs'])} LRs early: no final loss)")
    lo, hi = s["basin"]
    if lo is not None:
        where, width = ((f"{_num(lo)}-{_num(hi)}", f"{s['basin_decades']:.2g} decades")
                        if hi != lo else (_num(lo), "one grid point"))
        lrs, pruned = s["lrs"], s.get("pruned") or [0] * len(s["lrs"])
        a, b = lrs.index(lo), lrs.index(hi)
        cut = (a > 0 and pruned[a - 1]) or (b < len(lrs) - 1 and pruned[b + 1])
        parts.append(f"basin {where} ({width}, mean {metric} within "
                     f"{100 * s['within']:.0f}% of the best"
                     f"{'; next to pruned LRs, so maybe wider' if cut else ''})")
    parts.append("no LR diverged" if s["boundary"] is None else
                 f"diverges from lr={_num(s['boundary'])}")
    lo, hi = s["interval"]
    if lo is not None:
        where = f"{_num(lo)}-{_num(hi)}" if hi != lo else f"{_num(lo)}"
        parts.append(f"best LR over seeds: {where} ({100 * s['level']:.0f}% bootstrap "
                     f"interval; {100 * s['agreement']:.0f}% of draws pick {_num(s['best_lr'])})")
    return "; ".join(parts)


# --------------------------------------------------------------------------- arrays


def result_arrays(result: SweepResult) -> dict[str, np.ndarray]:
    """The arrays ``results.npz`` holds (see the module docstring)."""
    out = {"loss": result.loss, "lr": result.lr, "diverged": result.diverged,
           "diverged_at": result.diverged_at, "pruned_at": result.pruned_at,
           "eval_steps": np.asarray(result.eval_steps if result.eval_steps is not None else [],
                                    np.int32),
           "hparam_names": np.asarray(list(result.hparams), dtype=str)}
    if result.eval is not None:
        out["eval"] = result.eval
        out.update({f"eval_{k}": v for k, v in result.eval_aux.items()})
    out.update({f"hp_{k}": v for k, v in result.hparams.items()})
    out.update(result.history or {})  # history_* (a layout policy's)
    return {k: np.asarray(v) for k, v in out.items()}


def digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes (equal digests: equal arrays)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    _atomic_write(path, lambda f: np.savez(f, **arrays), mode="wb")


def save(result: SweepResult, directory: str | os.PathLike, *, plot: bool = True,
         diagnosis: list | None | str = "auto", extra: dict | None = None) -> dict[str, Any]:
    """Write ``results.npz`` and ``summary.json`` (and ``sweep.png`` when matplotlib is
    installed and ``plot``) into ``directory`` (created if needed). Returns the summary.

    ``extra`` is merged into ``summary.json`` (e.g. the run's timings).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arrays = result_arrays(result)
    _write_npz(d / RESULTS, arrays)
    summary = summarize(result, diagnosis)
    summary["arrays_sha256"] = digest(arrays)
    summary = plain({**summary, **(extra or {})})
    write_json(d / SUMMARY, summary)
    if plot:
        plot_sweep_png(result, d)
    return summary


def plot_sweep_png(result: SweepResult, directory: Path) -> Path | None:
    """Draw ``sweep.png`` into ``directory``; None (and nothing written) without matplotlib."""
    return _plot_png(result, Path(directory) / SWEEP_PNG)


def _plot_png(result: SweepResult | FinderResult, path: Path) -> Path | None:
    """``result.plot()`` written atomically to ``path``; None without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    _atomic_write(path, lambda f: result.plot(path=f), mode="wb")
    return path


def _state_loader(directory: Path) -> Callable[[], tuple[chex.ArrayTree, Callable]]:
    """``load_state`` for a run directory's :class:`SweepResult`: the members' trained state
    from the run's last checkpoint, through the engine's loader, with the functions the
    run's ``config.json`` names (its ``factory``)."""
    def load_state() -> tuple[chex.ArrayTree, Callable]:
        try:
            config = read_config(directory / CONFIG)
        except (OSError, KeyError) as e:
            raise ValueError(_NO_PARAMS.format(
                why=f", and there is no usable {CONFIG} ({e})")) from e
        if config.get("command") != "sweep":
            raise ValueError(_NO_PARAMS.format(why=", and the run was not written by `jaxlr "
                                               "sweep` (nothing to restore them from)"))
        try:
            return final_state(directory / CHECKPOINTS, **factory(config)(config["settings"]))
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(_NO_PARAMS.format(
                why=f", and they cannot be restored from a checkpoint: {e}")) from e

    return load_state


def load(directory: str | os.PathLike) -> SweepResult | FinderResult:
    """Read a run directory back.

    Args:
        directory: a directory written by ``jaxlr sweep`` / ``jaxlr find`` or
            :meth:`SweepResult.save`.

    Returns:
        For a sweep (``results.npz``), a :class:`SweepResult` whose ``loss``, ``lr``, ``eval``,
        ``eval_aux``, ``eval_steps``, ``diverged``, ``diverged_at``, ``pruned_at`` and
        ``hparams`` equal the saved ones (``params(i)``: restored from the run's last
        checkpoint when ``jaxlr sweep`` wrote it); for an LR range test
        (``finder.npz``), a :class:`jaxlr.FinderResult`.

    Raises:
        FileNotFoundError: the directory holds no results (e.g. a sweep that did not finish:
            continue it with ``jaxlr resume DIR``; or a ``config.json`` jaxlr did not write).
        ValueError: ``results.npz`` / ``finder.npz`` is not a readable ``.npz``, lacks arrays
            jaxlr writes, has inconsistent shapes, or does not match the ``arrays_sha256`` of
            the directory's ``summary.json`` (checked when present): the message names the
            file and the problem.

    Example:
        >>> import tempfile, numpy as np, jax.numpy as jnp, jaxlr
        >>> from jaxlr import load
        >>> x = jnp.linspace(-1, 1, 32)[:, None]; y = 3 * x[:, 0]
        >>> res = jaxlr.sweep(lambda key: jnp.zeros(1),
        ...                   lambda w, b: jnp.mean((b[0] @ w - b[1]) ** 2), (x, y),
        ...                   lambda hp: jaxlr.sgd(hp["lr"]), jaxlr.grid(lr=[0.01, 0.1], seed=2),
        ...                   steps=30, batch_size=8, progress=False)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     summary = res.save(d)
        ...     back = load(d)
        >>> np.array_equal(back.loss, res.loss), back.best().hparams["lr"]
        (True, 0.1)

    References:
        NumPy's ``.npz`` format: https://numpy.org/doc/stable/reference/generated/numpy.savez.html
    """
    d = Path(directory)
    if (d / RESULTS).is_file():
        return _load_sweep(d)
    if (d / FINDER).is_file():
        return load_finder(d)
    if not d.is_dir():
        raise FileNotFoundError(f"{d} is not a directory; give a run directory written by "
                                "jaxlr sweep or jaxlr find (e.g. runs/<timestamp>-sweep)")
    if (d / CONFIG).is_file():
        try:
            command = read_config(d / CONFIG)["command"]
        except ValueError as e:
            raise FileNotFoundError(f"{d} holds no {RESULTS} or {FINDER}, and {e}") from None
        hint = (f"continue it with: jaxlr resume {quote(d)}" if command == "sweep" else
                "rerun it with: jaxlr find --out DIR")
        raise FileNotFoundError(f"the run in {d} did not finish (no {RESULTS}); {hint}")
    raise FileNotFoundError(f"{d} holds no jaxlr run (no {RESULTS} or {FINDER}); give a "
                            "directory written by jaxlr sweep or jaxlr find")


_SWEEP_ARRAYS = ("loss", "lr", "diverged", "diverged_at", "eval_steps", "hparam_names")
_FINDER_ARRAYS = ("lrs", "losses", "diverged_at", "seeds", "beta", "divergence_factor")


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


def _read_npz(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` jaxlr wrote, checked against the ``arrays_sha256`` of the
    ``summary.json`` beside it (when there is one). Raises ValueError naming the file."""
    rerun = "re-run the jaxlr command that wrote it (or restore the original file)"
    try:
        if not zipfile.is_zipfile(path):  # also a truncated one: no central directory
            raise ValueError("it is not a zip archive")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        why = " ".join(str(e).split()) if type(e) is ValueError else _one_line(e)
        raise ValueError(f"{path} is not a readable .npz file ({why}); it was not written by "
                         f"jaxlr or is damaged: {rerun}") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks the arrays {', '.join(missing)} that jaxlr writes; it "
                         f"was not written by jaxlr (or by an incompatible version): {rerun}")
    summary_path = path.parent / SUMMARY
    if summary_path.is_file():
        try:
            summary = read_json(summary_path)
        except ValueError as e:
            raise ValueError(f"{summary_path} is not JSON ({_one_line(e)}), so {path} cannot be "
                             f"verified; restore it, or delete it to load {path} unverified"
                             ) from None
        expected = summary.get("arrays_sha256") if isinstance(summary, dict) else None
        if expected is not None and digest(arrays) != expected:
            raise ValueError(f"{path} does not match the arrays_sha256 in {summary_path}: the "
                             f"arrays changed after the run wrote them; {rerun}")
    return arrays


def _check_shapes(path: Path, a: dict[str, np.ndarray], names: list[str]) -> None:
    loss = a["loss"]
    if loss.ndim != 2:
        raise ValueError(f"{path}: loss has shape {loss.shape}, not [members, steps]; the file "
                         "is damaged or was not written by jaxlr")
    m, e = loss.shape[0], a["eval_steps"].shape
    want = {"lr": loss.shape, "diverged": (m,), "diverged_at": (m,), "pruned_at": (m,),
            **{f"hp_{n}": (m,) for n in names}}
    if len(e) == 1 and "eval" in a:
        want.update({k: (m, *e) for k in a if k.startswith("eval") and k != "eval_steps"})
    for k, shape in want.items():
        if k in a and a[k].shape != shape:
            raise ValueError(f"{path}: {k} has shape {a[k].shape}, but loss of shape "
                             f"{loss.shape} needs {shape}; the file is damaged or was not "
                             "written by jaxlr")


def _load_sweep(d: Path) -> SweepResult:
    path = d / RESULTS
    a = _read_npz(path, _SWEEP_ARRAYS)
    names = [str(n) for n in np.atleast_1d(a["hparam_names"])]
    missing = [f"hp_{n}" for n in names if f"hp_{n}" not in a]
    if missing:
        raise ValueError(f"{path} lacks the arrays {', '.join(missing)} named in its "
                         "hparam_names; the file is damaged or was not written by jaxlr")
    _check_shapes(path, a, names)
    grid = Grid({n: a[f"hp_{n}"] for n in names})
    aux = {k[len("eval_"):]: v for k, v in a.items()
           if k.startswith("eval_") and k != "eval_steps"}
    return SweepResult(grid=grid, loss=a["loss"], lr=a["lr"], eval=a.get("eval"),
                       eval_aux=aux if "eval" in a else {}, eval_steps=a["eval_steps"],
                       diverged=a["diverged"], diverged_at=a["diverged_at"],
                       pruned_at=a.get("pruned_at"), load_state=_state_loader(d),
                       history={k: v for k, v in a.items() if k.startswith("history_")} or None)


# --------------------------------------------------------------------------- finder


def save_finder(result: FinderResult, directory: str | os.PathLike, *, plot: bool = True,
                extra: dict | None = None) -> dict[str, Any]:
    """Write ``finder.npz``, ``summary.json`` (and ``finder.png``) of an LR range test."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {"lrs": result.lrs, "losses": result.losses, "smoothed": result.smoothed,
              "diverged_at": result.diverged_at, "seeds": result.seeds, "mean": result.mean,
              "spread": result.spread, "beta": np.float64(result.beta),
              "divergence_factor": np.float64(result.divergence_factor)}
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _write_npz(d / FINDER, arrays)
    summary = finder_summary(result)
    summary["arrays_sha256"] = digest(arrays)
    summary = plain({**summary, **(extra or {})})
    write_json(d / SUMMARY, summary)
    if plot:
        plot_finder_png(result, d)
    return summary


def finder_summary(result: FinderResult) -> dict[str, Any]:
    return {"suggestion": result.suggestion, "suggestions": dict(result.suggestions),
            "window": list(result.window), "diverged_at": result.diverged_at.tolist(),
            "seeds": result.seeds.tolist(), "steps": len(result.lrs),
            "min_lr": float(result.lrs[0]), "max_lr": float(result.lrs[-1])}


def format_finder(summary: dict[str, Any]) -> str:
    s = summary["suggestions"]
    lines = [f"{name:>9}: {_lr(s.get(name))}" for name in ("valley", "steepest", "minimum")]
    stops = [d for d in summary["diverged_at"] if d >= 0]
    stop = (f"; the loss diverged at step {min(stops)} of {summary['steps']}" if stops else
            f"; no seed diverged before max_lr={summary['max_lr']:.3g}")
    return "\n".join([f"suggested LR: {_lr(summary['suggestion'])}  (the steepest point x 2.5, "
                      f"calibrated on real tasks; {len(summary['seeds'])} seed(s){stop})",
                       *lines])


def _lr(v: float | None) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.3g}"


def plot_finder_png(result: FinderResult, directory: Path) -> Path | None:
    """Draw ``finder.png`` into ``directory``; None (and nothing written) without matplotlib."""
    return _plot_png(result, Path(directory) / FINDER_PNG)


def load_finder(directory: str | os.PathLike) -> FinderResult:
    """The :class:`jaxlr.FinderResult` of ``finder.npz``, rebuilt from its raw curves (the
    same stop rule, smoothing and suggestions)."""
    from jaxlr._finder import FinderResult

    path = Path(directory) / FINDER
    a = _read_npz(path, _FINDER_ARRAYS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # already shown when it ran
        try:
            return FinderResult.from_curves(a["lrs"], a["losses"], beta=float(a["beta"]),
                                            divergence_factor=float(a["divergence_factor"]),
                                            diverged_at=a["diverged_at"], seeds=a["seeds"])
        except (ValueError, TypeError, IndexError) as e:
            raise ValueError(f"{path} does not hold a jaxlr LR range test ({_one_line(e)}); "
                             "the file is damaged or was not written by jaxlr") from None
