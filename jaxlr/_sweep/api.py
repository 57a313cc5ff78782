"""``jaxlr.sweep``: the thin front of the engine (check -> plan -> programs -> loop -> result).

Like optimistix's ``minimise``, it only wires the layers: :mod:`plan` checks the arguments and
plans the run, :mod:`compiled` builds the member program's compiled forms, :mod:`loop` runs the
chunks and the between-chunk policies, :mod:`result` holds what came out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import optax

from jaxlr._optim import DIVERGENCE_FACTOR
from jaxlr._sweep import checkpoint as _checkpoint
from jaxlr._sweep import checks, loop, memory
from jaxlr._sweep.blocks import block_size, fits_or_block, run_blocks
from jaxlr._sweep.compiled import (
    Dispatch,
    Functions,
    build,
    chunk_inputs,
    compile_cached,
    lower_all,
)
from jaxlr._sweep.data import chain_first, is_array_data, peek
from jaxlr._sweep.grid import Grid
from jaxlr._sweep.grid import grid as _grid
from jaxlr._sweep.halving import SuccessiveHalving
from jaxlr._sweep.member import DivergenceRule
from jaxlr._sweep.memory import SweepTooLarge
from jaxlr._sweep.placement import Placement
from jaxlr._sweep.plan import Plan, check_policy, make_plan
from jaxlr._sweep.policies import Policy
from jaxlr._sweep.result import SweepResult

if TYPE_CHECKING:
    import os

    import chex
    from flax import nnx


def sweep(
    init: Callable[[jax.Array], chex.ArrayTree] | nnx.Module,
    loss_fn: Callable,
    data: chex.ArrayTree | Iterable[chex.ArrayTree],
    optimizer: Callable[[dict], optax.GradientTransformation],
    grid: Grid | Mapping[str, Any],
    *,
    steps: int,
    batch_size: int,
    eval_data: chex.ArrayTree | None = None,
    eval_every: int | None = None,
    devices: Sequence[jax.Device] | str | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: bool | str = True,
    chunk_size: int | None = None,
    divergence_factor: float = DIVERGENCE_FACTOR,
    divergence: DivergenceRule | None = None,
    prune: SuccessiveHalving | None = None,
    policy: Policy | None = None,
    member_block: int | str | None = None,
    log_dir: str | os.PathLike | None = None,
) -> SweepResult:
    r"""Train every member of ``grid`` in parallel: one compiled ``jit(vmap(scan))`` program.

    A member is one set of hyperparameters and one seed. Member ``m`` starts from
    ``init(jax.random.key(seed_m))`` (or from the given ``nnx.Module``, with its RNG streams
    folded with the seed), sees the batches of its seed (each epoch a permutation of the
    examples drawn on device from ``(seed, epoch)``; members with the same seed see the same
    batches), and is optimized by ``optimizer(hp_m)`` where ``hp_m`` holds its (traced)
    hyperparameters. Each update also passes ``value=loss`` (the batch loss), so a
    :func:`jaxlr.reduce_on_plateau` controller works as the LR. A member's results do not depend
    on the other members, on M, or on the number of devices (to float tolerance).

    Divergence quarantine: a member whose loss or gradients become non-finite, or whose loss
    exceeds its first loss by more than ``divergence_factor`` :math:`\times |loss_0|`, is frozen
    at its last good parameters (and model state) from that step on (its later losses are NaN)
    and its step is recorded in ``diverged_at``; nothing is raised, and the other members are
    untouched. The check costs one pass over the gradients per step (they exist anyway), and the
    freeze is a select fused into the parameter update, so the optimizer's maths fuses as in a
    plain optax loop. The one case it sees a step late: an update that is non-finite although
    the loss and gradients are finite (e.g. a NaN learning rate from the optimizer) makes the
    parameters non-finite, which the next step's loss shows; that member is frozen there, with
    those parameters. A frozen member's optimizer state is never used again.

    Every call traces its functions afresh, so it sees the values they read now (globals,
    closure cells, defaults, attributes of closed-over objects). An XLA executable of an
    earlier call is reused only when this call's trace lowers to the same program (the same
    StableHLO text, constants included, the same pytree structures and devices), which skips
    the XLA compile of a repeated sweep without ever running a stale program. Within a call
    each program compiles once, whatever the grid. Swept values belong in the grid (traced,
    one compile for all).

    Before step 0 the inputs are checked (``jaxlr._sweep.checks``: the loss's signature and
    output, non-finite or list data, ``eval_data`` against the model, the keys ``optimizer``
    reads) and the compiled program's memory (XLA's estimate) is compared with what the devices
    have free: a sweep that does not fit raises ``MemoryError`` with the largest M that does.

    Training runs in chunks of ``chunk_size`` scanned steps (one compiled chunk reused; the
    last chunk is padded with masked steps, so it does not recompile). Between chunks the
    progress bar advances and, every ``eval_every`` steps, members are evaluated on
    ``eval_data`` (NNX modules in ``.eval()`` mode). A run of one chunk without a checkpoint
    is a single program, init included, that keeps the optimizer state inside (as a
    hand-written ``jit(vmap(scan))`` loop does; on CPU that is a few percent faster per step).
    With ``progress=False`` and nothing else to do between chunks (no ``eval_every``,
    ``checkpoint`` or ``prune``), that is the default: the whole run is one chunk, unless its
    batch indices would take more than 64 MiB. Like any long ``jax.jit`` call, such a run
    returns (and a Ctrl-C takes effect) only when it is done: pass ``chunk_size`` to bound that.

    Args:
        init: ``key -> params`` (pytree, or linen variables from ``module.init``), ``key ->
            nnx.Module``, or an ``nnx.Module`` instance every seed starts from.
        loss_fn: ``(model_or_params, batch) -> loss`` or ``(loss, aux_dict)``; it receives what
            ``init`` returns (the NNX module, merged).
        data: a tuple/dict of arrays with the examples on axis 0 (kept on device, no copy per
            member), or an iterable of such batches (shared by all members, consumed in chunks).
        optimizer: ``hp -> optax transform`` for one member; ``hp`` maps each grid axis (and
            ``"seed"``) to a traced scalar, and each categorical axis (strings) to its plain
            Python value: ``{"adam": jaxlr.adam, "sgd": jaxlr.sgd}[hp["optimizer"]](hp["lr"])``
            (each category is a block of rows of the same program, with a vmapped step and
            an optimizer state of its own, run in turn inside each scanned step:
            ``jaxlr._sweep.categories``; successive halving ranks across categories and
            compacts within them, population-based training copies within a category).
        grid: a :class:`Grid` (or a dict, passed to :func:`jaxlr.grid`). Every axis but
            ``seed`` must be read by ``optimizer(hp)`` (else members would train identically:
            a misspelt name is refused before step 0); an axis whose name starts with ``_`` is
            a label that need not be read.
        steps: training steps per member (> 0).
        batch_size: examples per batch (<= number of examples).
        eval_data: optional data evaluated in full every ``eval_every`` steps and at the end.
        eval_every: evaluation period in steps (default: only at the end).
        devices: devices to shard the member axis over: None (default) for this process'
            devices, ``"all"`` for every process' devices once ``jax.distributed.initialize``
            has run (many hosts: every process calls ``sweep`` with the same arguments and
            data, places only its own members' shards, and receives the whole result), or a
            list of devices.
        checkpoint: a directory: after every chunk the state is saved there atomically (see
            ``jaxlr._sweep.checkpoint``), and a sweep started with a directory that holds a
            checkpoint of the same program resumes from it, to the same result as an
            uninterrupted run. "The same program": the same settings, the same structure,
            shapes and dtypes of the trained state, the same data and eval data (SHA-256 of
            the arrays; of an iterable, its first batch) and the same lowered training program
            (so the same model, loss, optimizer and the values they read); a checkpoint of
            another program is refused with a ValueError naming what differs. With an iterable
            ``data``, pass a fresh iterable: consumed batches are skipped. With many processes,
            process 0 writes and every process reads: use a disk they share.
        progress: show a tqdm progress bar (a string: the bar's label instead of "jaxlr
            sweep"); a resumed sweep's bar starts at the restored step.
        chunk_size: steps per compiled chunk (default: ``eval_every`` if given, else the whole
            run when ``progress=False`` and nothing happens between chunks (see above), else
            <= 200 steps, dividing the run as evenly as possible).
        divergence_factor: the blow-up threshold above (> 0).
        divergence: a custom :class:`DivergenceRule` replacing the blow-up test (advanced; e.g.
            the LR range test's stop rule).
        prune: :func:`jaxlr.successive_halving` to stop the losing settings at rungs and
            compact the survivors into a smaller batch (see there); ``pruned_at`` records it.
        member_block: run the members in blocks of this many, one block after another, with
            the same compiled program, for sweeps larger than the devices' memory; ``"auto"``
            runs the whole sweep when XLA's memory estimate fits and otherwise blocks of 90%
            of the largest count that fits (a multiple of the device count). Results are
            merged into one ``SweepResult`` (see ``jaxlr._sweep.blocks``); not with a policy
            or an iterable ``data``.
        policy: a between-chunk layout policy: :func:`jaxlr.successive_halving` (the same as
            ``prune=``) or :func:`jaxlr.population_based` (the worst members copy the best
            ones' state and hyperparameters at intervals and explore them;
            ``SweepResult.history``, ``lineage(i)`` and ``schedule(i)`` record it).
        log_dir: a TensorBoard log directory (new, empty, or an earlier jaxlr log; anything
            else is refused before training): one run per member (hyperparameters as HParams;
            ``train/loss``, ``train/lr``, ``eval/loss`` and aux metrics as scalars) and the
            HParams experiment, written from the host after each chunk (so the run has chunk
            ends, as with a progress bar: at most 200 steps apart by default), never by a
            per-step callback; the files equal :func:`jaxlr.write_tensorboard`'s export of the
            result. With ``member_block`` the blocks run as separate sweeps and the log is
            written once they have all finished.
            ``pip install jaxlr[tensorboard]``.

    Returns:
        A :class:`SweepResult` with ``loss``/``lr`` ``[M, steps]``, ``eval``, ``diverged``,
        ``diverged_at``, ``pruned_at``, ``best()``, ``params(i)``, ``table()``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxlr
        >>> x = jax.random.normal(jax.random.key(0), (64, 3)); y = x @ jnp.array([1., -2., .5])
        >>> res = jaxlr.sweep(lambda key: jnp.zeros(3),
        ...                   lambda w, b: jnp.mean((b[0] @ w - b[1]) ** 2), (x, y),
        ...                   lambda hp: jaxlr.sgd(hp["lr"]), jaxlr.grid(lr=[0.01, 0.1, 3.0]),
        ...                   steps=50, batch_size=16, progress=False)
        >>> res.diverged.tolist(), res.best(by="loss").hparams["lr"]
        ([False, False, True], 0.1)

    References:
        JAX sharding: https://docs.jax.dev/en/latest/sharded-computation.html
    """
    policy = _one_policy(prune, policy)
    g = grid if isinstance(grid, Grid) else _grid(**grid)
    records = None if log_dir is None else _records_for(log_dir)
    if member_block is not None:
        result = _in_blocks(member_block, g, checkpoint, policy, data, devices, dict(
            init=init, loss_fn=loss_fn, data=data, optimizer=optimizer, steps=steps,
            batch_size=batch_size, eval_data=eval_data, eval_every=eval_every, devices=devices,
            progress=progress, chunk_size=chunk_size, divergence_factor=divergence_factor,
            divergence=divergence))
        if records is not None and jax.process_index() == 0:
            records.write_tensorboard(result, log_dir)
        return result
    plan = make_plan(loss_fn, data, optimizer, g, steps=steps, batch_size=batch_size,
                     eval_data=eval_data, eval_every=eval_every, checkpoint=checkpoint,
                     progress=progress, chunk_size=chunk_size,
                     divergence_factor=divergence_factor, divergence=divergence, policy=policy,
                     logged=log_dir is not None)
    place = Placement(devices)
    inputs, plan = _place_inputs(plan, place, data, eval_data)
    fns = build(init, loss_fn, optimizer, plan, place, inputs.sample_batch, inputs.eval_data)
    if policy is not None:
        check_policy(policy, plan.k, eval_data, plan.eval_every, fns.aux_names)
    first_lr = fns.initial_lr.trace(inputs.hp)
    if first_lr.out_info is not None:  # None: no optimizer keeps a jaxlr LR, nothing to check
        first_lr = compile_cached(first_lr.lower(), place.devices)
        checks.initial_lrs(plan.rows(len(place.devices)).by_member(
            place.fetch(first_lr(inputs.hp))), plan.grid)
    fns, lowered = _fits(plan, fns, place, inputs)
    live = None if records is None else records.LiveTensorBoard(
        log_dir, plan.grid, steps, inputs.eval_data is not None, fns.aux_names)
    out = loop.run(plan, fns, place, inputs, lowered,
                   [p for p in (policy, live) if p is not None])
    return _result(plan, fns, place, out, live)


def _result(plan: Plan, fns: Functions, place: Placement, out: loop.Outcome,
            live: Any) -> SweepResult:
    """The loop's outcome as a :class:`SweepResult` (rows in member order)."""
    params, rest, status = place.fetch(out.final, numpy=False)
    status = jax.tree.map(lambda x: np.asarray(x)[:plan.m], status)
    arrays = out.curves.to_arrays()
    if live is not None:
        live.close(~status.alive)
    return SweepResult(
        grid=plan.grid,
        loss=arrays["loss"][:, :plan.steps],
        lr=arrays["lr"][:, :plan.steps],
        eval=arrays.get("eval"),
        eval_aux={a[len("aux_"):]: v for a, v in arrays.items() if a.startswith("aux_")},
        eval_steps=arrays["eval_steps"],
        diverged=~status.alive,
        diverged_at=status.diverged_at,
        pruned_at=out.stopped_at,
        history=out.history.to_arrays() if plan.policy is not None else None,
        state=(params, rest),
        assemble=fns.model.assemble,
    )


def _in_blocks(member_block: int | str, grid_: Grid, checkpoint: str | os.PathLike | None,
               policy: Policy | None, data: chex.ArrayTree | Iterable[chex.ArrayTree],
               devices: Sequence[jax.Device] | str | None, kwargs: dict) -> SweepResult:
    """``sweep`` over blocks of members (``blocks.py``)."""
    g = grid_ if isinstance(grid_, Grid) else _grid(**grid_)
    n_dev = len(Placement(devices).devices)
    block = block_size(member_block, len(g), n_dev)
    if policy is not None:
        raise ValueError("member_block runs blocks one after another, so a policy that ranks "
                         "members across the grid (prune=, policy=) cannot see them all: "
                         "give one of them")
    if not is_array_data(data):
        raise ValueError("member_block needs data in memory (every block reads it from the "
                         "start), got an iterable")
    run = lambda **kw: sweep(**kwargs, **kw)
    if block == "auto":
        try:
            return run(grid=g, checkpoint=checkpoint)
        except SweepTooLarge as e:
            block = fits_or_block(e, n_dev)
    return run_blocks(run, g, block, checkpoint)


def _records_for(log_dir: str | os.PathLike) -> ModuleType:
    """The records layer (the TensorBoard writer), once ``log_dir`` is known to be one that
    may receive a log (a lazy upward façade, see ``tests/test_layers.py``)."""
    from jaxlr import _records

    _records.prepare_tensorboard_dir(log_dir, claim=False)
    return _records


def _one_policy(prune: SuccessiveHalving | None, policy: Policy | None) -> Policy | None:
    """The layout policy of ``prune=`` (successive halving) or ``policy=`` (either)."""
    if prune is not None and not isinstance(prune, SuccessiveHalving):
        raise ValueError(f"prune must be jaxlr.successive_halving(...), got {prune!r}")
    if prune is not None and policy is not None:
        raise ValueError("give prune= or policy=, not both (prune=rule is policy=rule)")
    return prune if prune is not None else policy


def _place_inputs(plan: Plan, place: Placement, data: chex.ArrayTree | Iterable[chex.ArrayTree],
                  eval_data: chex.ArrayTree | None) -> tuple[loop.Inputs, Plan]:
    """Everything the programs read, onto the mesh in ONE transfer call (dtypes
    canonicalised); with a checkpoint, the SHA-256 of the host data first."""
    # a checkpoint is resumed only with the same data: their digests, from the host arrays
    digests = None if plan.checkpoint is None else (
        _checkpoint.tree_digest(data) if plan.in_memory else None,
        _checkpoint.tree_digest(eval_data))
    rows = plan.rows(len(place.devices))
    by_member, replicated = place.by_member, place.replicated
    hp, seed_pos, seeds, data, eval_data = place.put(
        (*rows.host(plan.cols), plan.seeds, data if plan.in_memory else None, eval_data),
        (by_member, by_member, replicated, replicated, replicated))
    if plan.in_memory:
        sample_batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct(
            (plan.batch_size, *a.shape[1:]), a.dtype), data)
    else:
        sample_batch = peek(plan.batches, "data")
        plan = plan._replace(batches=chain_first(sample_batch, plan.batches))
    return loop.Inputs(hp, seed_pos, seeds, data, eval_data, sample_batch, digests), plan


def _fits(plan: Plan, fns: Functions, place: Placement,
          inputs: loop.Inputs) -> tuple[Functions, list]:
    """Lower and compile the programs the loop runs (an executable from an earlier call when
    the program is the same: :func:`compile_cached`), and check that they fit in the devices'
    memory before anything trains. Returns the functions that run them and the lowered
    programs."""
    carry = None if plan.whole else jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=place.by_member,
                                       weak_type=s.weak_type),
        jax.eval_shape(fns.init.jitted, inputs.hp))
    xs, table = chunk_inputs(fns, inputs.data, inputs.seeds, inputs.sample_batch, plan.k,
                             place.replicated)
    move = loop.still_move(plan.rows(len(place.devices)), place) if fns.copies else None
    lowered = lower_all(fns, plan.whole, carry, inputs.hp, xs, table, inputs.seed_pos,
                        inputs.eval_data, place.by_member, move)
    compiled = [compile_cached(p, place.devices) for p in lowered]
    need = max((memory.program_bytes(c) or 0 for c in compiled), default=0)
    memory.check_fits(need, memory.free_bytes(place.devices), plan.m + (-plan.m % len(
        place.devices)), len(place.devices), memory.tree_bytes((xs, table, inputs.eval_data)))
    run = "whole" if plan.whole else "chunk"
    fns = fns._replace(**{run: Dispatch(getattr(fns, run), compiled[0])})
    if inputs.eval_data is not None:
        fns = fns._replace(evaluate=Dispatch(fns.evaluate, compiled[1]))
    return fns, lowered
