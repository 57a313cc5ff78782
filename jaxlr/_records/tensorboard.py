"""TensorBoard export of a sweep: one TensorBoard run per member and the HParams experiment,
so TensorBoard's scalar charts, HParams table and parallel-coordinates view show the sweep.

Two ways in, one format: :func:`write_tensorboard` exports a finished sweep (a saved run,
``jaxlr.load(dir)``, too); :class:`LiveTensorBoard` is the between-chunk policy behind
``jaxlr.sweep(..., log_dir=OUT)``, which writes each chunk's steps as soon as its curves reach
the host, so TensorBoard shows a running sweep. Both write from the host, where the curves
already are as numpy arrays: no per-step host callback, no sync inside the compiled program
(a live log adds chunk ends, see ``sweep``'s ``log_dir``). A live log's files hold the same
events as an export of the finished sweep's result (tested), except the wall times.

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

A live log appends to one event file per run (opened and closed at each chunk end: no file
handle or writer thread per member); a resumed sweep clears the killed run's files and
writes the restored steps again before its first new chunk.

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
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import numpy.typing as npt

from jaxlr._records.records import read_json, write_json
from jaxlr._sweep import ChunkDone, Grid, Policy, SweepResult

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


def run_names(grid: Grid) -> list[str]:
    """One folder name per member: its index (zero-padded) and hyperparameters, with any
    character outside ``[A-Za-z0-9._=,+-]`` replaced by ``_`` (at most 120 characters)."""
    width = len(str(len(grid) - 1))
    names = []
    for i in range(len(grid)):
        hp = ",".join(f"{k}={v}" for k, v in grid[i].items())
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


def _hparam_values(grid: Grid) -> dict[str, list]:
    """Each grid axis -> its members' values as Python scalars (float32 as typed: 0.1)."""
    members = [grid[i] for i in range(len(grid))]
    return {k: [hp[k] for hp in members] for k in grid.columns}


def _scalar_events(curves: dict[str, tuple[npt.ArrayLike, np.ndarray]], now: float) -> list:
    """One member's scalar events, one per step that has a finite value; ``curves``: tag ->
    (steps, values)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    values: dict[int, list] = {}
    for tag, (steps, curve) in curves.items():
        for step, v in zip(np.asarray(steps).tolist(), np.asarray(curve).tolist()):
            if np.isfinite(v):
                values.setdefault(int(step), []).append(
                    summary_pb2.Summary.Value(tag=tag, simple_value=v))
    return [event_pb2.Event(wall_time=now, step=step, summary=summary_pb2.Summary(value=v))
            for step, v in sorted(values.items())]


def _member_curves(i: int, steps: npt.ArrayLike, loss: np.ndarray, lr: np.ndarray,
                   eval_steps: npt.ArrayLike, eval_: np.ndarray | None,
                   aux: dict[str, np.ndarray]) -> dict:
    """Member ``i``'s tags -> (steps, values) from [M, ...] arrays of some steps."""
    out = {TRAIN_LOSS: (steps, loss[i]), TRAIN_LR: (steps, lr[i])}
    if eval_ is not None:
        out[EVAL_LOSS] = (eval_steps, eval_[i])
        out.update({aux_tag(name): (eval_steps, curve[i]) for name, curve in aux.items()})
    return out


def _experiment(grid: Grid, has_eval: bool, aux_names: Iterable[str], now: float) -> Any:
    """The HParams experiment: the grid's axes with their values, and the metrics."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    columns = _hparam_values(grid)
    axes = [hp.HParam(k, hp.Discrete(sorted(set(v)))) for k, v in columns.items()]
    tags = [TRAIN_LOSS] + ([EVAL_LOSS, *map(aux_tag, aux_names)] if has_eval else [])
    metrics = [hp.Metric(t, dataset_type=hp.Metric.TRAINING if t == TRAIN_LOSS else
                         hp.Metric.VALIDATION) for t in tags]
    return event_pb2.Event(wall_time=now, step=0, summary=hp.hparams_config_pb(
        axes, metrics, time_created_secs=now))


def _session_start(grid: Grid, names: list[str], now: float) -> list:
    """Each member's HParams session start (its hyperparameters; group: its run)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    columns = _hparam_values(grid)
    return [event_pb2.Event(wall_time=now, step=0, summary=hp.hparams_pb(
        {k: v[i] for k, v in columns.items()}, trial_id=name, start_time_secs=now))
        for i, name in enumerate(names)]


def _ended(diverged: bool, steps: int, now: float) -> Any:
    """A member's session end: failure if it diverged, else success."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import api_pb2

    status = api_pb2.STATUS_FAILURE if diverged else api_pb2.STATUS_SUCCESS
    return event_pb2.Event(wall_time=now, step=int(steps), summary=_session_end(status, now))


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


def _append(path: Path, events: list) -> None:
    """Append ``events`` to the run's one event file ``path`` (created with TensorBoard's
    file-version record first), through TensorBoard's own ``RecordWriter`` (the TFRecord
    framing its reader parses), the file opened for this call only."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    new = not path.exists()
    with open(path, "ab") as f:
        writer = RecordWriter(f)
        if new:
            writer.write(event_pb2.Event(wall_time=time.time(),
                                         file_version="brain.Event:2").SerializeToString())
        for event in events:
            writer.write(event.SerializeToString())
        writer.flush()


class LiveTensorBoard(Policy):
    """The between-chunk policy of ``jaxlr.sweep(..., log_dir=OUT)``: the same runs and
    HParams experiment as :func:`write_tensorboard`, written while the sweep trains (each
    chunk's steps once its curves are on the host; the session ends by :meth:`close`, with
    the result). Only process 0 writes."""

    __slots__ = ("path", "names", "files", "steps", "written", "evals", "on")

    def __init__(self, out: str | os.PathLike, grid: Grid, steps: int, has_eval: bool,
                 aux_names: Iterable[str]):
        self.on = jax.process_index() == 0
        self.path = prepare_tensorboard_dir(out, claim=self.on)
        self.names, self.steps = run_names(grid), steps
        self.written, self.evals = 0, 0  # steps and evaluations already in the files
        stamp = f"{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.jaxlr"
        self.files = [self.path / name / f"events.out.tfevents.{stamp}" for name in self.names]
        if not self.on:
            return
        now = time.time()
        _clear(self.path, _own_runs(self.path) or [])
        write_json(self.path / MARK, {"format": _FORMAT, "runs": self.names,
                                      "members": len(self.names)})
        _write(self.path, [_experiment(grid, has_eval, aux_names, now)])
        for file, start in zip(self.files, _session_start(grid, self.names, now)):
            file.parent.mkdir(exist_ok=True)
            _append(file, [start])

    def record(self, done: ChunkDone) -> None:
        """Write the steps and evaluations not yet written (after a resume: the restored ones
        too, at the first chunk)."""
        if not self.on:
            return
        curves, now = done.curves, time.time()
        loss = np.concatenate(curves.loss, axis=1)[:, self.written:done.step]
        lr = np.concatenate(curves.lr, axis=1)[:, self.written:done.step]
        steps = np.arange(self.written, done.step)
        evals = curves.eval_steps[self.evals:]
        eval_ = np.stack(curves.eval[self.evals:], axis=1) if evals else None
        aux = {k: np.stack(v[self.evals:], axis=1) for k, v in curves.aux.items()} if evals \
            else {}
        for i, file in enumerate(self.files):
            _append(file, _scalar_events(_member_curves(i, steps, loss, lr, evals, eval_, aux),
                                         now))
        self.written, self.evals = done.step, len(curves.eval_steps)

    def close(self, diverged: np.ndarray) -> None:
        """End every member's session: failure for a diverged member, else success."""
        if self.on:
            now = time.time()
            for file, bad in zip(self.files, np.asarray(diverged).tolist()):
                _append(file, [_ended(bad, self.steps, now)])


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

    Example:
        >>> import tempfile, jax.numpy as jnp, jaxlr
        >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
        >>> res = jaxlr.sweep(lambda key: jnp.zeros(1),
        ...                   lambda w, b: jnp.mean((b[0] @ w - b[0][:, 0]) ** 2), (x,),
        ...                   lambda hp: jaxlr.sgd(hp["lr"]), jaxlr.grid(lr=[0.1, 0.5]),
        ...                   steps=5, batch_size=8, progress=False)
        >>> out = jaxlr.write_tensorboard(res, tempfile.mkdtemp())
        >>> sorted(p.name for p in out.iterdir() if p.is_dir())
        ['0-lr=0.1', '1-lr=0.5']

    References:
        TensorBoard's HParams dashboard:
        https://www.tensorflow.org/tensorboard/hyperparameter_tuning_with_hparams
    """
    path = prepare_tensorboard_dir(out)
    now = time.time()
    names = run_names(result.grid)
    _clear(path, _own_runs(path) or [])
    write_json(path / MARK, {"format": _FORMAT, "runs": names, "members": len(result)})
    _write(path, [_experiment(result.grid, result.eval is not None, result.eval_aux, now)])
    steps = np.arange(result.loss.shape[1])
    for i, (name, start) in enumerate(zip(names, _session_start(result.grid, names, now))):
        curves = _member_curves(i, steps, result.loss, result.lr, result.eval_steps,
                                result.eval, result.eval_aux)
        _write(path / name, [start, *_scalar_events(curves, now),
                             _ended(bool(result.diverged[i]), result.loss.shape[1], now)])
    return path
