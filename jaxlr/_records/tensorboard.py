"""TensorBoard export of a sweep: one TensorBoard run per member and the HParams experiment,
so TensorBoard's scalar charts, HParams table and parallel-coordinates view show the sweep.

Why from the host, after the sweep: the curves are already ``[M, steps]`` numpy arrays in the
:class:`SweepResult`, so exporting costs the training nothing (no per-step host callback, no
sync inside the compiled program), and a saved run (``jaxlr.load(dir)``) exports the same way.

Why ``tensorboard`` itself (``pip install jaxlr[tensorboard]``; no TensorFlow needed): it is
the package that shows the export, so it is the one dependency a user needs anyway; its writer
(``EventFileWriter``) and its HParams plugin's own protos (``summary_v2.hparams_pb`` /
``hparams_config_pb``) are exactly what its reader parses, and the tests read the files back
with its ``EventAccumulator``. (tensorboardX installs less, but re-implements the HParams
summaries and still needs ``tensorboard`` to view them.)

What ``out`` holds:

- ``events.out.tfevents.*``: the HParams experiment: every grid axis (``seed`` included) with
  its values as a discrete domain, and the metrics (the tags below but ``train/lr``);
- ``<run>/events.out.tfevents.*``, one run per member, named ``<index>-<axis>=<value>,...``:
  the member's hyperparameters (its HParams session, one group per member), the scalars
  ``train/loss`` and ``train/lr`` at each step ``t`` (the loss of step ``t``'s batch; the LR
  of update ``t``), ``eval/loss`` and ``eval/<metric>`` (the aux metrics; an aux metric named
  ``loss`` is ``eval/aux_loss``) at ``eval_steps``; and the session's status: failure for a
  diverged member, else success (TensorBoard has no status for a member pruned by successive
  halving: its curves end at its rung);
- ``jaxlr-tensorboard.json``: the mark of a jaxlr export and its runs.

Non-finite values are left out (a diverged member's curve after it blew up, a pruned member's
after its rung, the LR of an optimizer that records none): the curve ends where it stopped
being finite, and the member's status says why. Wall times are the export's.

``out`` must be new, empty, or an earlier jaxlr export: a re-export deletes only the event
files of the runs its mark lists (and those runs' folders when left empty); a directory
holding anything else is refused, so none of the user's files is overwritten.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxlr._records.records import read_json, write_json
from jaxlr._sweep import SweepResult

MARK = "jaxlr-tensorboard.json"
_FORMAT = "jaxlr-tensorboard"
_EVENTS = "events.out.tfevents.*"
TRAIN_LOSS, TRAIN_LR, EVAL_LOSS = "train/loss", "train/lr", "eval/loss"


def _tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ImportError("exporting to TensorBoard needs the tensorboard package (no "
                          "TensorFlow): pip install jaxlr[tensorboard]") from None


def aux_tag(name: str) -> str:
    """The scalar tag of the aux metric ``name`` (``eval/<name>``; ``eval/aux_loss`` for an aux
    metric called ``loss``, which would clash with the eval loss)."""
    return f"eval/{'aux_loss' if name == 'loss' else name}"


def run_names(result: SweepResult) -> list[str]:
    """One folder name per member: its index (zero-padded) and hyperparameters, with any
    character outside ``[A-Za-z0-9._=,+-]`` replaced by ``_`` (at most 120 characters)."""
    width = len(str(len(result) - 1))
    names = []
    for i in range(len(result)):
        hp = ",".join(f"{k}={v}" for k, v in result.grid[i].items())
        names.append(re.sub(r"[^A-Za-z0-9._=,+-]", "_", f"{i:0{width}d}-{hp}")[:120])
    return names


def _own_runs(path: Path) -> list[str] | None:
    """The runs listed by the mark of an earlier export in ``path``; None if it has none."""
    try:
        mark = read_json(path / MARK)
    except (OSError, ValueError):
        return None
    if not isinstance(mark, dict) or mark.get("format") != _FORMAT:
        return None
    runs = mark.get("runs", [])
    ok = isinstance(runs, list) and all(isinstance(r, str) and r not in ("", ".", "..")
                                        and "/" not in r and os.sep not in r for r in runs)
    return runs if ok else None


def prepare_tensorboard_dir(out: str | os.PathLike, *, claim: bool = True) -> Path:
    """Check that ``out`` may receive an export (new, empty, or an earlier jaxlr export) and,
    with ``claim``, claim it: create it and write the mark (keeping the runs of an earlier
    export listed, so the export replaces them). Raises ``ValueError`` (with the fix) for a
    file, or a directory holding files jaxlr did not write, and ``ImportError`` without
    ``tensorboard``."""
    _tensorboard()
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is an existing file; give a directory for the TensorBoard "
                         "export")
    runs = _own_runs(path) if path.is_dir() else None
    if runs is None and path.is_dir() and any(path.iterdir()):
        raise ValueError(f"{path} is not empty and is not a jaxlr TensorBoard export (no {MARK}"
                         f"); give a new or empty directory, e.g. {path / 'tensorboard'}: "
                         "files jaxlr did not write are never overwritten")
    if not claim:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / MARK, {"format": _FORMAT, "runs": runs or []})
    except OSError as e:
        raise ValueError(f"cannot write the TensorBoard export {path} ({e.strerror or e}); give "
                         "a writable directory") from None
    return path


def _clear(path: Path, runs: list[str]) -> None:
    """Delete the event files of an earlier export (its root's and its runs'), nothing else."""
    for p in path.glob(_EVENTS):
        p.unlink()
    for run in runs:
        folder = path / run
        for p in folder.glob(_EVENTS):
            p.unlink()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _hparam_values(result: SweepResult) -> dict[str, list]:
    """Each grid axis -> its members' values as Python scalars (float32 as typed: 0.1)."""
    members = [result.grid[i] for i in range(len(result))]
    return {k: [hp[k] for hp in members] for k in result.hparams}


def _scalar_events(result: SweepResult, i: int, now: float) -> list:
    """Member ``i``'s scalar events, one per step that has a finite value."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    values: dict[int, list] = {}

    def add(tag: str, steps: Any, curve: np.ndarray) -> None:
        for step, v in zip(np.asarray(steps).tolist(), np.asarray(curve).tolist()):
            if np.isfinite(v):
                values.setdefault(int(step), []).append(
                    summary_pb2.Summary.Value(tag=tag, simple_value=v))

    steps = np.arange(result.loss.shape[1])
    add(TRAIN_LOSS, steps, result.loss[i])
    add(TRAIN_LR, steps, result.lr[i])
    if result.eval is not None:
        add(EVAL_LOSS, result.eval_steps, result.eval[i])
        for name, curve in result.eval_aux.items():
            add(aux_tag(name), result.eval_steps, curve[i])
    return [event_pb2.Event(wall_time=now, step=step, summary=summary_pb2.Summary(value=v))
            for step, v in sorted(values.items())]


def _session_end(status: int, now: float):
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(
        status=status, end_time_secs=now))
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(data),
        tensor=metadata.NULL_TENSOR)])


def _write(directory: Path, events: list) -> None:
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(directory), max_queue_size=1024)
    try:
        for event in events:
            writer.add_event(event)
    finally:
        writer.close()


def write_tensorboard(result: SweepResult, out: str | os.PathLike) -> Path:
    """Export ``result`` to the TensorBoard log directory ``out`` (see the module docstring):
    one run per member (its hyperparameters as HParams; ``train/loss``, ``train/lr``,
    ``eval/loss`` and the aux metrics as scalars at their steps; status failure if it
    diverged) and the HParams experiment. View it with ``tensorboard --logdir OUT``.

    Args:
        result: a :class:`SweepResult` (from :func:`jaxlr.sweep` or :func:`jaxlr.load`).
        out: a new or empty directory, or an earlier export (replaced).

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: ``out`` holds files jaxlr did not write (nothing is written then).
        ImportError: without ``pip install jaxlr[tensorboard]``.
    """
    path = prepare_tensorboard_dir(out)
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    now = time.time()
    names = run_names(result)
    _clear(path, _own_runs(path) or [])
    write_json(path / MARK, {"format": _FORMAT, "runs": names, "members": len(result)})

    columns = _hparam_values(result)
    axes = [hp.HParam(k, hp.Discrete(sorted(set(v)))) for k, v in columns.items()]
    tags = [TRAIN_LOSS] + ([EVAL_LOSS, *map(aux_tag, result.eval_aux)]
                           if result.eval is not None else [])
    metrics = [hp.Metric(t, dataset_type=hp.Metric.TRAINING if t == TRAIN_LOSS else
                         hp.Metric.VALIDATION) for t in tags]
    _write(path, [event_pb2.Event(wall_time=now, step=0, summary=hp.hparams_config_pb(
        axes, metrics, time_created_secs=now))])

    for i, name in enumerate(names):
        start = hp.hparams_pb({k: v[i] for k, v in columns.items()}, trial_id=name,
                              start_time_secs=now)
        status = api_pb2.STATUS_FAILURE if result.diverged[i] else api_pb2.STATUS_SUCCESS
        events = [event_pb2.Event(wall_time=now, step=0, summary=start),
                  *_scalar_events(result, i, now),
                  event_pb2.Event(wall_time=now, step=int(result.loss.shape[1]),
                                  summary=_session_end(status, now))]
        _write(path / name, events)
    return path
