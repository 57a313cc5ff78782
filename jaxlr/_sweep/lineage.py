"""A member slot's ancestry through the layouts a policy applied (population-based training's
exploit steps), and the hyperparameter trajectory it followed."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Segment(NamedTuple):
    """Steps ``[start, end)`` of a lineage (:meth:`SweepResult.lineage`), trained in one slot.

    Attributes:
        start, end: the steps ``[start, end)``.
        slot: the member slot (row) that trained them.
        parent: the slot whose state ``slot`` continued from at ``start`` (itself for the
            first segment).
        hparams: the hyperparameters the slot trained with (explored ones after a copy).

    Example:
        >>> from jaxlr import Segment
        >>> Segment(0, 15, 3, 3, {"lr": 0.03}).end
        15
    """

    start: int
    end: int
    slot: int
    parent: int
    hparams: dict


def lineage(history: dict[str, np.ndarray] | None, hparams: dict[str, np.ndarray],
            steps: int, i: int) -> list[Segment]:
    """The segments, first to last, whose training led to slot ``i``'s final state.

    Walking back from the end: at each recorded round ``j`` (step ``s_j``) where slot ``cur``
    continued from another slot ``parents[j, cur]``, a segment starts: slot ``cur`` held the
    hyperparameters recorded after round ``j`` from ``s_j`` on, and before ``s_j`` the line
    was the parent's (a slot that stopped there, ``-1``, ends its lineage at ``s_j``).
    Before the first copy, the grid's hyperparameters (``hparams``) applied.
    """
    names = [k for k in hparams if not k.startswith("_")]
    out, cur, end = [], i, steps
    rounds = [] if history is None else list(enumerate(history["history_steps"].tolist()))
    for j, s in reversed(rounds):
        parent = int(history["history_parents"][j, cur])
        if parent < 0:  # the slot stopped here (e.g. pruned): its lineage ends at s
            end = s
            continue
        if parent == cur:  # nothing copied into the slot: the segment goes on
            continue
        hp = {k: _value(history[f"history_hp_{k}"][j, cur]) for k in names}
        out.append(Segment(s, end, cur, parent, hp))
        cur, end = parent, s
    out.append(Segment(0, end, cur, cur, {k: _value(hparams[k][cur]) for k in names}))
    return [seg for seg in reversed(out) if seg.end > seg.start]


def _value(x: np.generic) -> float | int | bool:
    """A column's entry as Python (float32 printed as written: 0.1, not 0.10000000149...)."""
    return float(str(x)) if x.dtype == np.float32 else x.item()


def trajectory(segments: list[Segment], axis: str, recorded: np.ndarray | None,
               steps: int) -> np.ndarray:
    """[steps] the per-step values of ``axis`` along ``segments``: the ``recorded`` [M, steps]
    curve of each segment's slot when given (e.g. the LR each update used, which composes a
    base schedule with the swept value), else the segment's hyperparameter value. Past the
    lineage's end (a stopped slot) the last value is repeated."""
    out = np.full(steps, np.nan)
    for seg in segments:
        out[seg.start: seg.end] = (recorded[seg.slot, seg.start: seg.end] if recorded is not None
                                   else seg.hparams[axis])
    last = segments[-1].end if segments else 0
    if 0 < last < steps:
        out[last:] = out[last - 1]
    return out
