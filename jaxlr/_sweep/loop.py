"""The chunk loop: run the compiled chunks, and between them evaluate, report progress, apply
the policies' layouts and checkpoint.

Dispatch is asynchronous: chunk c+1 is dispatched before chunk c's curves are brought to the
host, so the host's work overlaps the device's, except at the chunk ends where something must
see the curves first (a policy's boundary, a checkpoint).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from jaxlr._sweep import checkpoint as _checkpoint
from jaxlr._sweep.compiled import Functions, compile_ahead, program_digest
from jaxlr._sweep.curves import Curves
from jaxlr._sweep.data import stack_batches
from jaxlr._sweep.member import state
from jaxlr._sweep.placement import Placement, Rows
from jaxlr._sweep.plan import Plan
from jaxlr._sweep.policies import ChunkEnd, Layout, Policy


class Inputs(NamedTuple):
    """What the programs read, on the mesh, and what the loop needs to know of it."""

    hp: dict  # [rows] hyperparameters, sharded by member
    seed_pos: Any  # [rows] each row's seed position
    seeds: Any  # [S] the distinct seeds, replicated
    data: Any  # in-memory data, replicated (None for an iterable)
    eval_data: Any
    sample_batch: Any  # one batch (abstract in memory; an iterable's first batch)
    digests: tuple | None  # (data, eval_data) SHA-256 when checkpointing


class Outcome(NamedTuple):
    """What the loop leaves: the members' final (params, rest, status) [M...], the curves and
    the step each member stopped at (-1: it ran to the end)."""

    final: Any
    curves: Curves
    stopped_at: np.ndarray


class _Resume(NamedTuple):
    first_chunk: int
    carry: Any
    store: Any
    rows: Rows
    curves: Curves
    stopped_at: np.ndarray
    hp: dict
    seed_pos: Any


def run(plan: Plan, fns: Functions, place: Placement, inputs: Inputs, lowered: list,
        policies: list[Policy]) -> Outcome:
    """Train ``plan``'s members with ``fns``, chunk by chunk, to the end."""
    by_member, replicated = place.by_member, place.replicated
    n_dev, m, steps, k = len(place.devices), plan.m, plan.steps, plan.k
    rows = Rows(np.arange(m), n_dev)
    hp, seed_pos, eval_data = inputs.hp, inputs.seed_pos, inputs.eval_data
    boundaries = {b for p in policies for b in p.boundaries(steps)}
    carry = None if plan.whole else fns.init(hp)
    m_rows = len(rows.ids)
    if policies and plan.in_memory:
        sizes = [r for p in policies for r in p.batch_sizes(plan.grid, steps, n_dev)
                 if r != m_rows]
        compile_ahead(fns, sizes, (carry, hp, np.int32(0), inputs.data,
                                   fns.batch_table(inputs.seeds, np.int32(0)), seed_pos),
                      by_member)
    # with policies, ``store`` keeps every member's final state, row m = member m: a member
    # that stops (e.g. pruned) is written there when it stops, the others at the end
    store = fns.copy_state(carry) if policies else None
    stopped_at = np.full(m, -1, np.int32)
    curves = Curves(m)
    first_chunk, parts = 0, None
    if plan.checkpoint is not None:
        parts = _fingerprint(plan, inputs, carry, store, lowered, n_dev)
        resumed = _resume(plan, place, parts, carry, store, rows)
        if resumed is not None:
            first_chunk, carry, store, rows, curves, stopped_at, hp_r, seed_pos_r = resumed
            hp, seed_pos = (hp, seed_pos) if hp_r is None else (hp_r, seed_pos_r)
    st = None if plan.whole else state(carry)  # the members' (params, rest, status) so far
    bar = _progress_bar(plan.progress and jax.process_index() == 0, steps, m)
    if bar is not None and first_chunk:
        bar.update(min(first_chunk * k, steps))

    def collect(pending) -> None:
        """Bring one chunk's curves (and eval) to the host, advance the progress bar."""
        t0, t_end, chunk_curves, ev, active = pending
        loss_c, lr_c = place.fetch(chunk_curves)
        loss_np = curves.add_curves(active, loss_c, lr_c)
        if ev is not None:
            ev_loss, ev_aux = place.fetch(ev)
            curves.add_eval(t_end, active, ev_loss, ev_aux)
        if bar is not None:
            last = loss_np[:, t_end - t0 - 1]
            bar.update(t_end - t0)
            if np.isfinite(last).any():
                bar.set_postfix(best_loss=f"{np.nanmin(last):.4g}")

    pending = None
    for c in range(first_chunk, plan.n_chunks):
        t0 = c * k
        t_end = min(t0 + k, steps)
        if plan.in_memory:  # the chunk's batch indices per seed, by a program of their own
            xs, table = inputs.data, fns.batch_table(inputs.seeds, np.int32(t0))
        else:
            xs = place.put(stack_batches(plan.batches, k, steps - t0), replicated)
            table = None
        ahead = fns.ahead.get(len(rows.ids))
        chunk = fns.chunk if ahead is None or len(rows.ids) == m_rows else ahead.result()
        if plan.whole:
            st, chunk_curves = fns.whole(hp, xs, table, seed_pos)
        else:
            carry, chunk_curves = chunk(carry, hp, np.int32(t0), xs, table, seed_pos)
            st = state(carry)
        ev = None
        if eval_data is not None and (t_end == steps or (
                plan.eval_every and t_end % plan.eval_every == 0)):
            ev = fns.evaluate(st, eval_data)
        # collect the previous chunk while this one runs (dispatch is asynchronous)
        if pending is not None:
            collect(pending)
        pending = (t0, t_end, chunk_curves, ev, rows.active)
        if plan.checkpoint is not None or t_end in boundaries:
            collect(pending)
            pending = None
        if t_end in boundaries:
            end = ChunkEnd(step=t_end, steps=steps, active=rows.active,
                           alive=place.fetch(carry.status.alive)[: len(rows.active)],
                           curves=curves, grid=plan.grid, hparams=plan.cols)
            for policy in policies:
                layout = policy.after_chunk(end)
                if layout is not None:
                    store = fns.write_rows(store, st, rows.ids)
                    carry, rows, hp, seed_pos = _apply(layout, carry, rows, plan, place, fns)
                    stopped_at[np.setdiff1d(end.active, layout.members)] = t_end
                    end = end._replace(active=rows.active, alive=end.alive[layout.source])
        if policies and t_end == steps:  # the last rows' final states, before saving
            store = fns.write_rows(store, st, rows.ids)
        if plan.checkpoint is not None:
            extra = {} if not policies else {"active": rows.active, "pruned_at": stopped_at}
            snapshot = place.fetch((carry, store), numpy=False)
            if jax.process_index() == 0:  # with many processes, one writes (a shared disk)
                _checkpoint.save(plan.checkpoint, c, parts, snapshot,
                                 {**curves.to_arrays(), **extra})
            place.barrier("jaxlr-checkpoint")  # nobody reads a checkpoint being written
    if pending is not None:
        collect(pending)
    if bar is not None:
        bar.close()
    return Outcome(final=st if not policies else store, curves=curves, stopped_at=stopped_at)


def _apply(layout: Layout, carry: Any, rows: Rows, plan: Plan, place: Placement,
           fns: Functions) -> tuple:
    """The rows of ``layout``: an on-device gather of the old rows' states, the hp put anew."""
    if layout.hparams is not None:
        plan.cols.update(layout.hparams)
    new = Rows(layout.members, len(place.devices))
    source = np.concatenate([layout.source, np.repeat(layout.source[-1:],
                                                      len(new.ids) - len(layout.source))])
    carry = fns.take_rows(carry, source)
    hp, seed_pos = new.put(plan.cols, place)
    return carry, new, hp, seed_pos


def _fingerprint(plan: Plan, inputs: Inputs, carry: Any, store: Any, lowered: list,
                 n_devices: int) -> dict[str, str]:
    """What a checkpoint must match to be resumed (``checkpoint.PARTS``)."""
    data_digest, eval_digest = inputs.digests
    return {"settings": _checkpoint.fingerprint(plan.config(n_devices)),
            "carry": _checkpoint.tree_spec((carry, store)),
            # an iterable's batches cannot be hashed ahead: its first batch stands for it
            "data": data_digest or _checkpoint.tree_digest(inputs.sample_batch),
            "eval_data": eval_digest,
            "program": program_digest(lowered)}


def _resume(plan: Plan, place: Placement, parts: dict, carry: Any, store: Any,
            rows: Rows) -> _Resume | None:
    """The state of the newest checkpoint of this program in ``plan.checkpoint``, if any."""
    if jax.process_index() == 0:
        _checkpoint.remove_stale(plan.checkpoint)
    restored = _checkpoint.load(plan.checkpoint, parts, (carry, store))
    if restored is None:
        return None
    done, (carry_np, store_np), saved = restored
    stopped_at, hp, seed_pos = np.full(plan.m, -1, np.int32), None, None
    if store is not None:
        rows = Rows(saved.pop("active"), len(place.devices))
        stopped_at = saved.pop("pruned_at")
        hp, seed_pos = rows.put(plan.cols, place)
        store = place.put(store_np, place.by_member)
    carry = place.put(carry_np, place.by_member)
    first_chunk = done + 1
    if not plan.in_memory:
        for _ in range(min(first_chunk * plan.k, plan.steps)):
            next(plan.batches)
    return _Resume(first_chunk, carry, store, rows, Curves.from_arrays(plan.m, saved),
                   stopped_at, hp, seed_pos)


def _progress_bar(progress: bool, steps: int, m: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc=f"jaxlr sweep ({m} members)", unit="step", leave=False)
