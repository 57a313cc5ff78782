"""The chunk loop: run the compiled chunks and, between them, the policies (``policies.py``):
the engine's own (evaluation, progress, checkpointing) and the user's (successive halving...),
applying the layouts they return.

Dispatch is asynchronous: chunk c+1 is dispatched before chunk c's curves are brought to the
host, so the host's work overlaps the device's, except at the chunk ends where something must
see the curves first (a policy's boundary, a checkpoint).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax
import numpy as np

from jaxlr._sweep import checkpoint as _checkpoint
from jaxlr._sweep.compiled import Functions, compile_ahead, program_digest
from jaxlr._sweep.curves import Curves, History
from jaxlr._sweep.data import stack_batches
from jaxlr._sweep.placement import Placement, Rows
from jaxlr._sweep.plan import Plan
from jaxlr._sweep.policies import (
    Checkpointing,
    ChunkDone,
    ChunkEnd,
    Evaluation,
    Layout,
    Policy,
    Progress,
)

if TYPE_CHECKING:
    import chex


class Inputs(NamedTuple):
    """What the programs read, on the mesh, and what the loop needs to know of it."""

    hp: dict  # [rows] hyperparameters, sharded by member
    seed_pos: chex.ArrayTree  # [rows] each row's seed position
    seeds: jax.Array  # [S] the distinct seeds, replicated
    data: chex.ArrayTree | None  # in-memory data, replicated (None for an iterable)
    eval_data: chex.ArrayTree | None
    sample_batch: chex.ArrayTree  # one batch (abstract in memory; an iterable's first batch)
    digests: tuple | None  # (data, eval_data) SHA-256 when checkpointing


class Outcome(NamedTuple):
    """What the loop leaves: the members' final (params, rest, status) [M...], the curves and
    the step each member stopped at (-1: it ran to the end)."""

    final: chex.ArrayTree
    curves: Curves
    stopped_at: np.ndarray
    history: History  # the layouts the policies applied


class Move:
    """The rows a copying policy's layout moves, applied at the start of the next chunk
    (``compiled.with_move``: the copy adds no program of its own): none (``still``), or the
    gather index of the last layout, ``pending`` until a chunk consumes it (a checkpoint
    taken in between saves it)."""

    def __init__(self, on: bool, rows: Rows, place: Placement):
        self.on, self.place, self.pending = on, place, None
        self.still = still_move(rows, place) if on else None

    def args(self) -> tuple:
        """The chunk's extra argument (none when the chunk takes no move); consumes
        ``pending``."""
        if not self.on:
            return ()
        if self.pending is None:
            return (self.still,)
        move = self.place.put((self.pending, np.bool_(True)), self.place.replicated)
        self.pending = None
        return (move,)

    def saved(self) -> dict[str, np.ndarray]:
        """``pending`` as a checkpoint's array (blocks concatenated), if any."""
        if self.pending is None:
            return {}
        flat = self.pending if isinstance(self.pending, np.ndarray) else np.concatenate(
            self.pending)
        return {"pending_move": flat}


def still_move(rows: Rows, place: Placement) -> tuple:
    """No move: every row from itself (the chunk's ``move`` argument when nothing is copied)."""
    return place.put((rows.identity(), np.bool_(False)), place.replicated)


class _Resume(NamedTuple):
    first_chunk: int
    carry: chex.ArrayTree
    store: chex.ArrayTree | None
    rows: Rows
    curves: Curves
    stopped_at: np.ndarray
    hp: dict
    seed_pos: chex.ArrayTree | None
    history: History
    # a layout's copy not yet applied (``Move``), or None
    pending_move: np.ndarray | tuple[np.ndarray, ...] | None


def run(plan: Plan, fns: Functions, place: Placement, inputs: Inputs, lowered: list,
        policies: list[Policy]) -> Outcome:
    """Train ``plan``'s members with ``fns``, chunk by chunk, to the end, with the engine's
    own policies (evaluation, progress, checkpointing) around ``policies``."""
    n_dev, m, steps, k = len(place.devices), plan.m, plan.steps, plan.k
    rows = plan.rows(n_dev)
    hp, seed_pos = inputs.hp, inputs.seed_pos
    carry = None if plan.whole else fns.init(hp)
    m_rows = len(rows.ids)
    if policies and plan.in_memory and plan.categories is None:  # (blocks: sizes unknown)
        sizes = [r for p in policies for r in p.batch_sizes(plan.grid, steps, n_dev)
                 if r != m_rows]
        compile_ahead(fns, sizes, (carry, hp, np.int32(0), inputs.data,
                                   fns.batch_table(inputs.seeds, np.int32(0), plan.seeds),
                                   seed_pos),
                      place.by_member, place.devices)
    # when a policy may stop members, ``store`` keeps every member's final state, row m =
    # member m: a member that stops (e.g. pruned) is written there when it stops, the others
    # at the end (a policy that only copies rows, as population-based training, needs none);
    # with categories too, whose rows are not in member order (``placement.Rows``)
    store = (fns.copy_state(carry) if (plan.categories is not None and not plan.whole) or
             any(p.stops_members for p in policies) else None)
    stopped_at = np.full(m, -1, np.int32)
    curves, history = Curves(m), History(m)
    first_chunk, engine_after = 0, []
    move = Move(fns.copies, rows, place)
    if plan.checkpoint is not None:
        parts = _fingerprint(plan, inputs, carry, store, lowered, n_dev)
        resumed = _resume(plan, place, parts, carry, store, rows)
        if resumed is not None:
            (first_chunk, carry, store, rows, curves, stopped_at, hp_r, seed_pos_r,
             history, move.pending) = resumed
            hp, seed_pos = (hp, seed_pos) if hp_r is None else (hp_r, seed_pos_r)
        engine_after = [Checkpointing(plan.checkpoint, parts, k, place.barrier)]
    if plan.progress and jax.process_index() == 0:
        label = plan.progress if isinstance(plan.progress, str) else "jaxlr sweep"
        engine_after.insert(0, Progress(steps, m, min(first_chunk * k, steps), label))
    engine_before = [] if inputs.eval_data is None else [
        Evaluation(fns.evaluate, inputs.eval_data, plan.eval_every, steps, place.fetch)]
    policies = [*engine_before, *policies, *engine_after]
    boundaries = {b for p in policies for b in p.boundaries(steps)}
    st = None if plan.whole else fns.state(carry)  # the rows' (params, rest, status) so far

    def collect(pending: tuple) -> None:
        """Bring one chunk's curves to the host and show them to the policies."""
        t0, t_end, chunk_curves, (active, real), launched = pending
        curves.add_curves(active, *(c[real] for c in place.fetch(chunk_curves)))
        for policy, work in zip(policies, launched):
            policy.record(ChunkDone(t0, t_end, active, curves, work, real))

    def snapshot() -> tuple[chex.ArrayTree, dict]:
        """The loop's state on the host, as a checkpoint holds it (read when called)."""
        nonlocal store
        arrays = {**curves.to_arrays(), **history.to_arrays(), **move.saved()}
        if store is None:
            return place.fetch((carry, None), numpy=False), arrays
        if t_end == steps:  # at the end, the rows' final states (what ``final_state`` reads)
            store = fns.write_rows(store, st, rows.ids)
        return (place.fetch((carry, store), numpy=False),
                {**arrays, "active": rows.active, "pruned_at": stopped_at})

    pending = None
    for c in range(first_chunk, plan.n_chunks):
        t0 = c * k
        t_end = min(t0 + k, steps)
        if plan.in_memory:  # the chunk's batch indices per seed, by a program of their own
            xs, table = inputs.data, fns.batch_table(inputs.seeds, np.int32(t0), plan.seeds)
        else:
            xs = place.put(stack_batches(plan.batches, k, steps - t0), place.replicated)
            table = None
        ahead = fns.ahead.get(len(rows.ids))
        chunk = fns.chunk if ahead is None or len(rows.ids) == m_rows else ahead.result()
        if plan.whole:
            st, chunk_curves = fns.whole(hp, xs, table, seed_pos)
        else:
            carry, chunk_curves = chunk(carry, hp, np.int32(t0), xs, table, seed_pos,
                                        *move.args())
            st = fns.state(carry)
        launched = [p.launch(t_end, st) for p in policies]
        # collect the previous chunk while this one runs (dispatch is asynchronous)
        if pending is not None:
            collect(pending)
        pending = (t0, t_end, chunk_curves, (rows.active, rows.real), launched)
        if t_end not in boundaries:
            continue
        collect(pending)
        pending = None
        end = ChunkEnd(step=t_end, steps=steps, active=rows.active,
                       alive=place.fetch(st[2].alive)[rows.real],
                       curves=curves, grid=plan.grid, hparams=plan.cols, chunk=c,
                       snapshot=snapshot)
        for policy in policies:
            layout = policy.after_chunk(end)
            if layout is not None:
                if store is not None:
                    store = fns.write_rows(store, st, rows.ids)
                old, alive = rows, np.ones(m, bool)
                alive[end.active] = end.alive
                carry, rows, hp, seed_pos = _apply(layout, carry, rows, plan, place, fns, move)
                if move.pending is None:  # (a pending move changes the rows in the next chunk)
                    st = fns.state(carry)
                parents = np.full(m, -1, np.int64)
                parents[layout.members] = old.active[layout.source]
                history.add(t_end, parents, alive, _numeric(plan.cols))
                stopped_at[np.setdiff1d(end.active, layout.members)] = t_end
                end = end._replace(active=rows.active,
                                   alive=end.alive[layout.source][rows.order])
    if pending is not None:
        collect(pending)
    if store is not None:  # the last rows' final states
        store = fns.write_rows(store, st, rows.ids)
    for policy in policies:
        policy.finish()
    if store is None and plan.categories is not None:  # one program (whole): no store
        order = rows.by_member(np.arange(len(rows.ids)))
        st = jax.tree.map(lambda x: x[order], st)
    return Outcome(final=st if store is None else store, curves=curves, stopped_at=stopped_at,
                   history=history)


def _numeric(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The hyperparameter columns a history records (the grid's, without positions)."""
    return {k: v for k, v in cols.items() if not k.startswith("_")}


def _apply(layout: Layout, carry: chex.ArrayTree, rows: Rows, plan: Plan, place: Placement,
           fns: Functions, move: Move) -> tuple:
    """The rows of ``layout``: an on-device gather of the old rows' states (with a ``move``,
    left pending for the next chunk to do), the hp put anew."""
    if layout.hparams is not None:
        plan.cols.update(layout.hparams)
    new = Rows(layout.members, len(place.devices), rows.groups, rows.n_groups)
    if move.on:  # the same rows, copied at the next chunk's start
        move.pending = new.source(rows, layout.source)
    else:
        carry = fns.take_rows(carry, new.source(rows, layout.source))
    hp, seed_pos = new.put(plan.cols, place)
    return carry, new, hp, seed_pos


def _fingerprint(plan: Plan, inputs: Inputs, carry: chex.ArrayTree | None,
                 store: chex.ArrayTree | None, lowered: list,
                 n_devices: int) -> dict[str, str]:
    """What a checkpoint must match to be resumed (``checkpoint.PARTS``)."""
    data_digest, eval_digest = inputs.digests
    return {"settings": _checkpoint.fingerprint(plan.config(n_devices)),
            "carry": _checkpoint.tree_spec((carry, store)),
            # an iterable's batches cannot be hashed ahead: its first batch stands for it
            "data": data_digest or _checkpoint.tree_digest(inputs.sample_batch),
            "eval_data": eval_digest,
            "program": program_digest(lowered)}


def _resume(plan: Plan, place: Placement, parts: dict, carry: chex.ArrayTree | None,
            store: chex.ArrayTree | None, rows: Rows) -> _Resume | None:
    """The state of the newest checkpoint of this program in ``plan.checkpoint``, if any."""
    if jax.process_index() == 0:
        _checkpoint.remove_stale(plan.checkpoint)
    restored = _checkpoint.load(plan.checkpoint, parts, (carry, store))
    if restored is None:
        return None
    done, (carry_np, store_np), saved = restored
    stopped_at, hp, seed_pos = np.full(plan.m, -1, np.int32), None, None
    pending = saved.pop("pending_move", None)
    history = History.from_arrays(plan.m, saved)
    saved = {k: v for k, v in saved.items() if not k.startswith("history_")}
    if store is not None:
        rows = Rows(saved.pop("active"), len(place.devices), rows.groups, rows.n_groups)
        stopped_at = saved.pop("pruned_at")
        store = place.put(store_np, place.by_member)
    if history.hparams:  # the columns the last layout left (e.g. explored hparams)
        plan.cols.update(history.hparams[-1])
    if store is not None or history.hparams:
        hp, seed_pos = rows.put(plan.cols, place)
    carry = place.put(carry_np, place.by_member)
    first_chunk = done + 1
    if not plan.in_memory:
        for _ in range(min(first_chunk * plan.k, plan.steps)):
            next(plan.batches)
    return _Resume(first_chunk, carry, store, rows, Curves.from_arrays(plan.m, saved),
                   stopped_at, hp, seed_pos, history,
                   None if pending is None else rows.split(pending))
