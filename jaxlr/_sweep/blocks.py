"""Sweeps larger than memory: the members run in blocks of B, one after another, with the same
compiled program, and the blocks' results are merged into one ``SweepResult``.

A block is a sweep of B members of the grid (in grid order); the last one is padded to B with
copies of its last member (dropped from the result), so every block has the same shapes and
the program compiles once (the executable cache serves the others). A member's batches depend
only on its seed, so a member's result is the unblocked sweep's (to float tolerance: a batch of
B members and one of M compile to different kernels). With a checkpoint directory each block
checkpoints into ``DIR/block-<b>/``: a killed blocked sweep resumes its unfinished block, and
a finished block is read back from its last checkpoint without training. The trained states
of finished blocks are kept on the host (numpy), so the devices hold one block at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from jaxlr._sweep.grid import Grid
from jaxlr._sweep.memory import SweepTooLarge
from jaxlr._sweep.result import SweepResult

if TYPE_CHECKING:
    import os


def block_size(member_block: Any, m: int, n_devices: int) -> int | str:
    """``member_block`` checked: an integer in [1, M] or ``"auto"``."""
    if member_block == "auto":
        return "auto"
    if isinstance(member_block, bool) or not isinstance(member_block, (int, np.integer)) or (
            member_block < 1):
        raise ValueError(f"member_block must be a positive number of members or 'auto', got "
                         f"member_block={member_block!r}")
    return int(min(member_block, m))


def auto_block(fits: int, n_devices: int) -> int:
    """The block for ``"auto"`` when ``fits`` members fit at once: 90% of it (XLA's estimate
    is not exact), a multiple of the device count, at least one member per device."""
    return max(n_devices, math.floor(0.9 * fits / n_devices) * n_devices)


def run_blocks(run: Callable[..., SweepResult], grid: Grid, block: int,
               checkpoint: str | os.PathLike | None) -> SweepResult:
    """``run(grid=..., checkpoint=...)`` on each block of ``grid``, merged."""
    m = len(grid)
    parts = []
    for b, start in enumerate(range(0, m, block)):
        idx = np.arange(start, min(start + block, m))
        padded = np.concatenate([idx, np.repeat(idx[-1:], block - len(idx))])
        where = None if checkpoint is None else Path(checkpoint) / f"block-{b:04d}"
        res = run(grid=grid.select(padded), checkpoint=where)
        parts.append((res, len(idx)))
    return merge(grid, parts)


def merge(grid: Grid, parts: list[tuple[SweepResult, int]]) -> SweepResult:
    """One result of the blocks' results (each ``(result, real members)``), in grid order."""
    def cat(get: Callable[[SweepResult], np.ndarray | None]) -> np.ndarray | None:
        values = [get(r) for r, _ in parts]
        if values[0] is None:
            return None
        return np.concatenate([np.asarray(v)[:n] for v, (_, n) in zip(values, parts)])

    first = parts[0][0]
    states = [jax.tree.map(lambda x, n=n: np.asarray(x)[:n], r.stacked()) for r, n in parts]
    state = jax.tree.map(lambda *xs: np.concatenate(xs), *states)
    return SweepResult(
        grid=grid, loss=cat(lambda r: r.loss), lr=cat(lambda r: r.lr), eval=cat(lambda r: r.eval),
        eval_aux={k: cat(lambda r, k=k: r.eval_aux[k]) for k in first.eval_aux},
        eval_steps=first.eval_steps, diverged=cat(lambda r: r.diverged),
        diverged_at=cat(lambda r: r.diverged_at), pruned_at=cat(lambda r: r.pruned_at),
        state=state, assemble=first._assemble)


def fits_or_block(error: SweepTooLarge, n_devices: int) -> int:
    """The block ``"auto"`` takes after the whole sweep was found too large."""
    if error.fits < 1:
        raise error
    return auto_block(error.fits, n_devices)
