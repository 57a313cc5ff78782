"""Between-chunk policies: everything that happens between two compiled chunks.

The loop (``loop.py``) only runs chunks; what happens between them is a list of
:class:`Policy` objects, each with up to five hooks (all optional):

- ``launch(step, state)``: device work dispatched right after the chunk that ends at ``step``,
  asynchronously (evaluation);
- ``record(done)``: once that chunk's curves are on the host (evaluation results, progress);
- ``boundaries(steps)``: the steps at which the policy must see the sweep synchronously;
- ``after_chunk(end)``: at those steps, the policy sees a :class:`ChunkEnd` (the step, the
  recorded curves, the members in the rows, their hyperparameters) and may return a
  :class:`Layout`: which member each row holds next and from which old row its state
  (params, model state, optimizer state, status) is copied, with new hyperparameter columns
  if it likes. Keep rows, drop rows (successive halving), copy rows with new hyperparameters
  (population-based training's exploit/explore): the loop applies any of them the same way
  (an on-device gather of the rows) and records it;
- ``finish()``: after the last chunk.

The engine's own between-chunk work is written as policies too: :class:`Evaluation`,
:class:`Progress` and :class:`Checkpointing` (in that order around the user's policies, so a
policy sees the evaluation of its step and a checkpoint holds the layout it chose).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np

from jaxlr._sweep import checkpoint as _checkpoint

if TYPE_CHECKING:
    import os

    import chex

    from jaxlr._sweep.curves import Curves
    from jaxlr._sweep.grid import Grid


class ChunkDone(NamedTuple):
    """What :meth:`Policy.record` sees once a chunk's curves are on the host."""

    start: int  # the chunk's first step
    step: int  # its end (steps done)
    active: np.ndarray  # [r] the member each row held during the chunk
    curves: Curves  # the recorded curves, this chunk's loss and LR included
    launched: Any  # what this policy's :meth:`Policy.launch` returned for the chunk (or None)
    real: np.ndarray | None = None  # [r] the rows of ``active`` (None: the first r rows)


class ChunkEnd(NamedTuple):
    """What :meth:`Policy.after_chunk` sees at a chunk end it asked for."""

    step: int  # steps done by the rows (the chunk's end)
    steps: int  # the run's length
    active: np.ndarray  # [r] the member each row holds (padding rows excluded)
    alive: np.ndarray  # [r] bool: not diverged
    curves: Curves  # the recorded curves, complete up to ``step``
    grid: Grid  # the sweep's grid
    hparams: dict  # [M] the members' current hyperparameter columns
    chunk: int = 0  # the chunk's index
    snapshot: Callable[[], tuple[chex.ArrayTree, dict]] | None = None  # the loop's state, as saved


class Layout(NamedTuple):
    """A new member layout: row ``i`` holds member ``members[i]`` and starts from the state of
    the old row ``source[i]``; ``hparams`` (None: unchanged) holds new [M] hyperparameter
    columns. A member of the old rows that is in no new row stops at this step."""

    members: np.ndarray
    source: np.ndarray
    hparams: dict | None = None


class Policy:
    """The interface (see the module's docstring); every hook defaults to doing nothing.

    ``changes_layout`` says whether :meth:`after_chunk` may return a :class:`Layout`;
    ``stops_members`` whether a layout may leave members out (the loop then keeps every
    member's final state aside, for the members that stop early)."""

    __slots__ = ()
    changes_layout = False
    stops_members = False

    def boundaries(self, steps: int) -> list[int]:
        """The steps at which this policy must see the sweep (each ends a chunk)."""
        return []

    def batch_sizes(self, grid: Grid, steps: int, n_devices: int) -> list[int]:
        """The row counts its layouts will have, when known ahead (compiled ahead)."""
        return []

    def launch(self, step: int, state: chex.ArrayTree) -> Any:
        """Device work on the members' ``(params, rest, status)`` after the chunk ending at
        ``step``, dispatched before the host sees the chunk; its result reaches
        :meth:`record` as ``done.launched``."""
        return None

    def record(self, done: ChunkDone) -> None:
        """Host work once a chunk's curves are on the host."""

    def after_chunk(self, end: ChunkEnd) -> Layout | None:
        """The new layout, or None to go on unchanged."""
        return None

    def finish(self) -> None:
        """After the last chunk."""


class Evaluation(Policy):
    """Evaluate every member on the eval data every ``every`` steps and at the end."""

    __slots__ = ("evaluate", "eval_data", "every", "steps", "fetch")

    def __init__(self, evaluate: Callable, eval_data: chex.ArrayTree, every: int | None, steps: int,
                 fetch: Callable):
        self.evaluate, self.eval_data, self.every = evaluate, eval_data, every
        self.steps, self.fetch = steps, fetch

    def launch(self, step: int, state: chex.ArrayTree) -> chex.ArrayTree | None:
        if step == self.steps or (self.every and step % self.every == 0):
            return self.evaluate(state, self.eval_data)
        return None

    def record(self, done: ChunkDone) -> None:
        if done.launched is not None:
            loss, aux = self.fetch(done.launched)
            real = np.arange(len(done.active)) if done.real is None else done.real
            done.curves.add_eval(done.step, done.active, loss[real],
                                 {k: v[real] for k, v in aux.items()})


class Progress(Policy):
    """A tqdm bar over the steps, with the best recent loss; after the first chunk (when more
    are to come) one line with its time and an estimate of the rest:
    ``remaining steps x (its time / its steps)`` (the chunk's time is from the bar's start to
    its curves on the host: training only, the programs were compiled before)."""

    __slots__ = ("bar", "steps", "started", "estimated")

    def __init__(self, steps: int, m: int, done: int = 0, label: str = "jaxlr sweep"):
        from tqdm.auto import tqdm

        # a resumed run starts at ``done``: ``initial`` keeps those steps out of the rate
        self.bar = tqdm(total=steps, initial=done, desc=f"{label} ({m} members)", unit="step",
                        leave=False)
        self.steps, self.started, self.estimated = steps, _now(), False

    def record(self, done: ChunkDone) -> None:
        last = done.curves.loss[-1][:, done.step - done.start - 1]
        self.bar.update(done.step - done.start)
        if np.isfinite(last).any():
            self.bar.set_postfix(best_loss=f"{np.nanmin(last):.4g}")
        if not self.estimated and done.step < self.steps:
            self.estimated = True
            took, ran = _now() - self.started, done.step - done.start
            rest = self.steps - done.step
            self.bar.write(f"{self.bar.desc}: the first chunk, {ran} steps, took "
                           f"{_duration(took)}; estimated {_duration(took * rest / ran)} for "
                           f"the remaining {rest} steps", file=sys.stderr)

    def finish(self) -> None:
        self.bar.close()


def _now() -> float:
    return time.perf_counter()


def _duration(seconds: float) -> str:
    """``12.3 s``, ``4.5 min`` or ``1.2 h``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class Checkpointing(Policy):
    """Save the loop's state atomically after every chunk (``checkpoint.save``); with many
    processes process 0 writes and every process waits for it."""

    __slots__ = ("directory", "parts", "k", "barrier")

    def __init__(self, directory: str | os.PathLike, parts: dict[str, str], k: int,
                 barrier: Callable[[str], None]):
        self.directory, self.parts, self.k, self.barrier = directory, parts, k, barrier

    def boundaries(self, steps: int) -> list[int]:
        return [*range(self.k, steps, self.k), steps]

    def after_chunk(self, end: ChunkEnd) -> None:
        state, arrays = end.snapshot()
        if jax.process_index() == 0:  # with many processes, one writes (a shared disk)
            _checkpoint.save(self.directory, end.chunk, self.parts, state, arrays)
        self.barrier("jaxlr-checkpoint")  # nobody reads a checkpoint being written


def ranking(end: ChunkEnd, by: str, mode: str, loss: Callable[[], np.ndarray]) -> np.ndarray:
    """[n] the active members' scores for a layout policy, lower is better: ``loss()`` (a
    smoothed training loss) for ``by="loss"``, else the evaluation of ``by`` at this step;
    negated for ``mode="max"``; inf for a diverged member or a non-finite value."""
    value = loss() if by == "loss" else end.curves.last_eval(by)[end.active]
    value = value.astype(np.float64) * (1.0 if mode == "min" else -1.0)
    return np.where(end.alive & np.isfinite(value), value, np.inf)
