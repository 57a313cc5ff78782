"""The vectorized sweep: M members trained as ONE jit(vmap(scan)) program, sharded over devices."""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlr._optim import LearningRateState, hparam
from jaxlr._sweep import checkpoint as _checkpoint
from jaxlr._sweep import checks
from jaxlr._sweep import memory as _memory
from jaxlr._sweep.data import (
    batch_indices,
    chain_first,
    gather,
    is_array_data,
    num_examples,
    peek,
    stack_batches,
)
from jaxlr._sweep.grid import Grid, grid
from jaxlr._sweep.models import Model, adapt
from jaxlr._sweep.policies import SuccessiveHalving
from jaxlr._sweep.result import SweepResult


class DivergenceRule(NamedTuple):
    """An in-program stop rule: ``update(state, step, loss) -> (state, bad)`` per member.

    Non-finite losses and gradients always count as divergence; a rule adds a test on the
    loss curve (the default: :func:`blowup_rule`; :func:`jaxlr.find_lr` brings its own).
    """

    init: Callable[[], Any]
    update: Callable[[Any, jax.Array, jax.Array], tuple[Any, jax.Array]]


def blowup_rule(factor: float) -> DivergenceRule:
    r"""Diverged when :math:`loss_t - loss_0 > factor \cdot |loss_0|` (``loss_0``: step 0's)."""
    hparam("divergence_factor", factor, gt=0)

    def update(loss0, t, loss):
        loss0 = jnp.where(t == 0, loss, loss0)
        return loss0, loss - loss0 > factor * jnp.abs(loss0)

    return DivergenceRule(init=lambda: jnp.float32(jnp.nan), update=update)


class MemberStatus(NamedTuple):
    """Per-member bookkeeping carried through the scan (leading axis M)."""

    alive: jax.Array  # shape (), bool: not diverged
    diverged_at: jax.Array  # shape (), int32: step of divergence, -1 if never
    rule: Any  # the DivergenceRule's state


class Carry(NamedTuple):
    params: Any
    rest: Any
    opt_state: Any
    status: MemberStatus


def _current_lr(opt_state: Any) -> jax.Array | None:
    """The LR of the first :class:`LearningRateState` in ``opt_state`` (None if it has none)."""
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(
        x, LearningRateState)) if isinstance(x, LearningRateState)]
    return found[0].lr if found else None


def _tree_finite(tree: Any, via_dot: bool = False) -> jax.Array:
    """Whether every float in ``tree`` is finite, as ``isfinite`` of one float32 sum of ``0 * x``
    over all leaves (concatenated): each term is 0, or NaN for an inf or a NaN, so the test is
    exact (no overflow however large the values) and costs one pass over the gradients.

    ``via_dot`` computes the sum as a dot with a vector of ones. XLA's CPU backend emits a float
    sum reduction as an in-order loop (float addition is not associative) but hands a dot to a
    vectorized matrix-vector kernel; in ``benchmarks/sweep.py`` the reduction cost 2-12% of a
    logistic-regression step (M=64) and the dot about nothing (see ``benchmarks/README.md``).
    On a GPU the concatenation fuses into the reduction (one kernel), so there it is used."""
    flat = [jnp.ravel(jnp.abs(x) if jnp.iscomplexobj(x) else x).astype(jnp.float32)
            for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    if not flat:
        return jnp.bool_(True)
    zeros = jnp.concatenate(flat) * np.float32(0.0)  # NaN where a value is not finite
    total = jnp.dot(zeros, jnp.ones_like(zeros)) if via_dot else jnp.sum(zeros)
    return jnp.isfinite(total)


def sweep(
    init: Any,
    loss_fn: Callable,
    data: Any,
    optimizer: Callable[[dict], optax.GradientTransformation],
    grid: Grid | Mapping[str, Any],
    *,
    steps: int,
    batch_size: int,
    eval_data: Any = None,
    eval_every: int | None = None,
    devices: Any = None,
    checkpoint: Any = None,
    progress: bool = True,
    chunk_size: int | None = None,
    divergence_factor: float = 100.0,
    divergence: DivergenceRule | None = None,
    prune: SuccessiveHalving | None = None,
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
    closure cells, defaults, attributes of closed-over objects): a program compiled for an
    earlier call is never reused for them. Within a call each program compiles once, whatever
    the grid; only the batch-index program, which depends on nothing but static integers, is
    shared across calls. Swept values belong in the grid (traced, one compile for all).

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
            ``"seed"``) to a traced scalar.
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
        progress: show a tqdm progress bar.
        chunk_size: steps per compiled chunk (default: ``eval_every`` if given, else the whole
            run when ``progress=False`` and nothing happens between chunks (see above), else
            <= 200 steps, dividing the run as evenly as possible).
        divergence_factor: the blow-up threshold above (> 0).
        divergence: a custom :class:`DivergenceRule` replacing the blow-up test (advanced; e.g.
            the LR range test's stop rule).
        prune: :func:`jaxlr.successive_halving` to stop the losing settings at rungs and
            compact the survivors into a smaller batch (see there); ``pruned_at`` records it.

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
    steps = int(hparam("steps", steps, gt=0, integer=True))
    batch_size = int(hparam("batch_size", batch_size, gt=0, integer=True))
    rule = blowup_rule(divergence_factor) if divergence is None else divergence
    g = grid if isinstance(grid, Grid) else _grid_from(grid)
    if not callable(optimizer):
        raise ValueError(f"optimizer must be a function hp -> optax transform, got {optimizer!r}")
    if eval_every is not None:
        eval_every = int(hparam("eval_every", eval_every, gt=0, integer=True))
    if prune is not None and not isinstance(prune, SuccessiveHalving):
        raise ValueError(f"prune must be jaxlr.successive_halving(...), got {prune!r}")

    checks.arguments(loss_fn, data, eval_data)  # signature, Python lists, non-finite values
    in_memory = is_array_data(data)
    if in_memory:
        n = num_examples("data", data)
        if batch_size > n:
            raise ValueError(f"batch_size must be <= the number of examples, got batch_size="
                             f"{batch_size} with {n} examples; lower batch_size")
        batches = None
    elif isinstance(data, Iterable):
        batches, n = iter(data), None
    else:
        raise ValueError("data must be a tuple/dict of arrays (examples on axis 0) or an iterable "
                         f"of such batches, got {type(data).__name__}")
    if eval_data is not None:
        num_examples("eval_data", eval_data)

    place = _Placement(devices)
    devices = place.devices
    m_real = len(g)
    cols = dict(g.columns)  # float32 / int32 columns (Grid), with or without x64
    if "seed" not in cols:
        cols["seed"] = np.zeros(m_real, np.int32)
    seeds_unique, seed_pos = np.unique(cols["seed"], return_inverse=True)
    cols["_seed_pos"] = seed_pos.astype(np.int32)
    # with nothing to do between chunks, the default is the whole run: one program (below)
    quiet = in_memory and not progress and checkpoint is None and prune is None and (
        len(seeds_unique) * steps * batch_size <= _WHOLE_RUN_INDICES)
    k = (_default_chunk(steps, eval_every, prune, quiet) if chunk_size is None else
         int(hparam("chunk_size", chunk_size, gt=0, integer=True)))
    if eval_every is not None and eval_every % k:
        raise ValueError(f"eval_every must be a multiple of chunk_size, got eval_every="
                         f"{eval_every}, chunk_size={k}")

    by_member, replicated = place.by_member, place.replicated
    # a checkpoint is resumed only with the same data: their digests, from the host arrays
    digests = None if checkpoint is None else (
        _checkpoint.tree_digest(data) if in_memory else None, _checkpoint.tree_digest(eval_data))
    rows = _Rows(np.arange(m_real), len(devices))
    # everything the programs read, onto the mesh in ONE transfer call (dtypes canonicalised)
    hp, seed_pos, seeds_dev, data, eval_data = place.put(
        (*rows.host(cols), np.asarray(seeds_unique, np.int32), data if in_memory else None,
         eval_data), (by_member, by_member, replicated, replicated, replicated))
    if in_memory:
        sample_batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct(
            (batch_size, *a.shape[1:]), a.dtype), data)
    else:
        sample_batch = peek(batches, "data")
        batches = chain_first(sample_batch, batches)
    hp0 = {kk: v[0] for kk, v in cols.items() if kk != "_seed_pos"}
    fns = _build(init, loss_fn, optimizer, rule, steps, k, n, batch_size, place, hp0,
                 sample_batch, eval_data)
    aux_names, chunk_fn, eval_fn, write_store, take_rows = (
        fns.aux_names, fns.chunk, fns.evaluate, fns.write_rows, fns.take_rows)
    if prune is not None:
        _check_prune(prune, k, eval_data, eval_every, aux_names)
    rungs = set(prune.rungs(steps)) if prune is not None else set()
    n_chunks = -(-steps // k)
    # A run of one chunk without a checkpoint is ONE program (init and training), that returns
    # the members' params, model state and status but not the optimizer state: on CPU, a loop
    # whose optimizer state comes from and goes back to the caller ran ~3% slower per step than
    # one that keeps it inside (benchmarks/results/cpu-index-ab.md).
    whole = n_chunks == 1 and checkpoint is None and prune is None
    carry = None if whole else fns.init(hp)
    xs0, table0 = _chunk_inputs(fns, data if in_memory else None, seeds_dev, sample_batch, k)
    lowered = _lowered(fns, whole, carry, hp, xs0, table0, seed_pos, eval_data, by_member)
    # compiled here (the calls below reuse it) to check that it fits before anything trains
    _memory.check_fits(max((_memory.program_bytes(p.compile()) or 0 for p in lowered), default=0),
                       _memory.free_bytes(devices), len(rows.ids), len(devices),
                       _memory.tree_bytes((xs0, table0, eval_data)))
    m_rows = len(rows.ids)
    if prune is not None and in_memory:
        sizes = [r for r in _halving_sizes(prune, g, steps, len(devices)) if r != m_rows]
        _compile_ahead(fns, sizes, (carry, hp, np.int32(0), data,
                                    fns.batch_table(seeds_dev, np.int32(0)), seed_pos),
                       by_member)
    # with pruning, ``store`` keeps every member's final state, row m = member m: a pruned
    # member's is written at its rung, the survivors' at the end
    store = fns.copy_state(carry) if prune is not None else None
    pruned_at = np.full(m_real, -1, np.int32)

    rec = _Records(m_real)
    first_chunk = 0
    if checkpoint is not None:
        config = {"grid": {kk: v.tolist() for kk, v in cols.items()}, "steps": steps,
                  "batch_size": batch_size, "chunk": k, "eval_every": eval_every,
                  "examples": n, "divergence": "custom" if divergence else
                  float(divergence_factor), "devices": len(devices),
                  "prune": None if prune is None else list(prune)}
        parts = {"settings": _checkpoint.fingerprint(config),
                 "carry": _checkpoint.tree_spec((carry, store)),
                 # an iterable's batches cannot be hashed ahead: its first batch stands for it
                 "data": digests[0] or _checkpoint.tree_digest(sample_batch),
                 "eval_data": digests[1],
                 "program": _program_digest(lowered)}
        if jax.process_index() == 0:
            _checkpoint.remove_stale(checkpoint)
        restored = _checkpoint.load(checkpoint, parts, (carry, store))
        if restored is not None:
            done, (carry_np, store_np), saved = restored
            if prune is not None:
                rows = _Rows(saved.pop("active"), len(devices))
                pruned_at = saved.pop("pruned_at")
                hp, seed_pos = rows.put(cols, place)
                store = place.put(store_np, by_member)
            carry = place.put(carry_np, by_member)
            rec = _Records.from_arrays(m_real, saved)
            first_chunk = done + 1
            if not in_memory:
                for _ in range(min(first_chunk * k, steps)):
                    next(batches)
    state = None if whole else _state(carry)  # the members' (params, rest, status) so far
    bar = _progress_bar(progress and jax.process_index() == 0, steps, m_real)
    if bar is not None and first_chunk:
        bar.update(min(first_chunk * k, steps))

    def collect(pending) -> None:
        """Bring one chunk's curves (and eval) to the host, advance the progress bar."""
        t0, t_end, curves, ev, active = pending
        loss_c, lr_c = place.fetch(curves)
        loss_np = rec.add_curves(active, loss_c, lr_c)
        if ev is not None:
            ev_loss, ev_aux = place.fetch(ev)
            rec.add_eval(t_end, active, ev_loss, ev_aux)
        if bar is not None:
            last = loss_np[:, t_end - t0 - 1]
            bar.update(t_end - t0)
            if np.isfinite(last).any():
                bar.set_postfix(best_loss=f"{np.nanmin(last):.4g}")

    pending = None
    for c in range(first_chunk, n_chunks):
        t0 = c * k
        t_end = min(t0 + k, steps)
        if in_memory:  # the chunk's batch indices per seed, by a program of their own
            xs, table = data, fns.batch_table(seeds_dev, np.int32(t0))
        else:
            xs, table = place.put(stack_batches(batches, k, steps - t0), replicated), None
        ahead = fns.ahead.get(len(rows.ids))
        run = chunk_fn if ahead is None or len(rows.ids) == m_rows else ahead.result()
        if whole:
            state, curves = fns.whole(hp, xs, table, seed_pos)
        else:
            carry, curves = run(carry, hp, np.int32(t0), xs, table, seed_pos)
            state = _state(carry)
        ev = None
        if eval_data is not None and (t_end == steps or (eval_every and t_end % eval_every == 0)):
            ev = eval_fn(state, eval_data)
        # collect the previous chunk while this one runs (dispatch is asynchronous)
        if pending is not None:
            collect(pending)
        pending = (t0, t_end, curves, ev, rows.active)
        if checkpoint is not None or t_end in rungs:
            collect(pending)
            pending = None
        if t_end in rungs:
            alive = place.fetch(carry.status.alive)[: len(rows.active)]
            keep = prune.survivors(rows.active, rec.scores(prune, rows.active, t_end, alive),
                                   g.settings()[rows.active])
            if len(keep) < len(rows.active):
                store = write_store(store, state, rows.ids)
                pruned_at[np.setdiff1d(rows.active, keep)] = t_end
                survivors = _Rows(keep, len(devices))
                carry = take_rows(carry, np.searchsorted(rows.active, survivors.ids))
                rows = survivors
                hp, seed_pos = rows.put(cols, place)
        if prune is not None and t_end == steps:  # the survivors' final states, before saving
            store = write_store(store, state, rows.ids)
        if checkpoint is not None:
            extra = {} if prune is None else {"active": rows.active, "pruned_at": pruned_at}
            snapshot = place.fetch((carry, store), numpy=False)
            if jax.process_index() == 0:  # with many processes, one writes (a shared disk)
                _checkpoint.save(checkpoint, c, parts, snapshot,
                                 {**rec.to_arrays(), **extra})
            place.barrier("jaxlr-checkpoint")  # nobody reads a checkpoint being written
    if pending is not None:
        collect(pending)
    if bar is not None:
        bar.close()

    final = state if prune is None else store
    params, rest, status = place.fetch(final, numpy=False)
    status = jax.tree.map(lambda x: np.asarray(x)[:m_real], status)
    arrays = rec.to_arrays()
    return SweepResult(
        grid=g,
        loss=arrays["loss"][:, :steps],
        lr=arrays["lr"][:, :steps],
        eval=arrays.get("eval"),
        eval_aux={a[len("aux_"):]: v for a, v in arrays.items() if a.startswith("aux_")},
        eval_steps=arrays["eval_steps"],
        diverged=~status.alive,
        diverged_at=status.diverged_at,
        pruned_at=pruned_at,
        state=(params, rest),
        assemble=fns.model.assemble,
    )


# the default chunk is the whole run when nothing happens between chunks and its batch indices
# ([seeds, steps, batch_size] int32, made by a program of their own) take at most 64 MiB
_WHOLE_RUN_INDICES = 1 << 24


def _default_chunk(steps: int, eval_every: int | None, prune: Any, quiet: bool = False) -> int:
    """The whole run when ``quiet`` (nothing happens between chunks) and there is no
    ``eval_every``; else ``eval_every``, or chunks of <= 200 steps that divide the run evenly
    (the padded tail stays tiny); with pruning, the largest divisor <= 200 of every rung (and
    eval_every)."""
    if quiet and eval_every is None:
        return steps
    if prune is not None and prune.rungs(steps):
        base = math.gcd(prune.min_steps, eval_every or 0)
        return max(d for d in range(1, min(base, 200) + 1) if base % d == 0)
    if eval_every is not None:
        return min(steps, eval_every)
    return -(-steps // -(-steps // 200))


class _Rows:
    """Which member each row of the vmapped batch holds: the ``active`` members (sorted), padded
    to a multiple of the device count by repeating the last one (padding rows are discarded)."""

    def __init__(self, active: np.ndarray, n_devices: int):
        self.active = np.asarray(active, np.int64)
        pad = -len(self.active) % n_devices
        self.ids = np.concatenate([self.active, np.repeat(self.active[-1:], pad)])

    def host(self, cols: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
        """The rows' hyperparameters (``hp``) and seed positions, on the host."""
        return ({kk: v[self.ids] for kk, v in cols.items() if kk != "_seed_pos"},
                cols["_seed_pos"][self.ids])

    def put(self, cols: dict[str, np.ndarray], place: _Placement) -> tuple[dict, jax.Array]:
        """The rows' hyperparameters (``hp``) and seed positions, sharded by member."""
        return place.put(self.host(cols), place.by_member)


@functools.lru_cache(maxsize=16)
def _mesh(devices: tuple) -> tuple[NamedSharding, NamedSharding, Callable]:
    """The member-axis and replicated shardings over ``devices`` and a jitted gather to the
    replicated one (made once per device set: building them costs ~0.2 ms a call)."""
    mesh = Mesh(np.array(devices), ("member",))
    replicated = NamedSharding(mesh, P())
    return (NamedSharding(mesh, P("member")), replicated,
            jax.jit(lambda x: x, out_shardings=replicated))


class _Placement:
    """The member mesh over ``devices`` (one process' or, with ``"all"``, every process'),
    and the moves between host and mesh that work in both cases."""

    def __init__(self, devices: Any):
        if isinstance(devices, str) and devices != "all":
            raise ValueError(f"devices must be None (this process' devices), 'all' (every "
                             f"process' devices, after jax.distributed.initialize) or a list of "
                             f"devices, got devices={devices!r}")
        self.devices = list(jax.local_devices() if devices is None else
                            jax.devices() if devices == "all" else devices)
        if not self.devices:
            raise ValueError("devices is empty: give at least one device")
        self.by_member, self.replicated, self._replicate = _mesh(tuple(self.devices))
        me = jax.process_index()
        self.multi = any(d.process_index != me for d in self.devices)

    def put(self, tree: Any, sharding: Any) -> Any:
        """Host (or local) arrays onto the mesh (``sharding``: one, or a pytree prefix of
        ``tree``). With many processes each process gives the same full arrays and places only
        the shards of its own devices."""
        if not self.multi:
            return jax.device_put(tree, sharding)

        def one(x, sharding):
            if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
                data = np.asarray(jax.random.key_data(x))
                return jax.random.wrap_key_data(
                    jax.make_array_from_callback(data.shape, sharding, lambda i: data[i]),
                    impl=jax.random.key_impl(x))
            x = np.asarray(x)
            x = x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False)
            return jax.make_array_from_callback(x.shape, sharding, lambda i: x[i])

        if isinstance(sharding, NamedSharding):
            return jax.tree.map(lambda x: one(x, sharding), tree)
        return jax.tree.map(lambda sh, sub: jax.tree.map(lambda x: one(x, sh), sub), sharding,
                            tree, is_leaf=lambda x: isinstance(x, NamedSharding))

    def barrier(self, name: str) -> None:
        if self.multi:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)

    def fetch(self, tree: Any, numpy: bool = True) -> Any:
        """The mesh's arrays as full arrays on this process (numpy, or local jax arrays that
        may hold PRNG keys); with many processes a gather that every process takes part in."""
        if self.multi:
            tree = jax.tree.map(lambda x: x.addressable_data(0), self._replicate(tree))
        return jax.tree.map(np.asarray, tree) if numpy else tree


def _state(carry: Carry) -> tuple[Any, Any, MemberStatus]:
    """What a result keeps of a member: params, rest and status."""
    return carry.params, carry.rest, carry.status


class _Functions(NamedTuple):
    """The compiled functions of one sweep configuration (cached across calls)."""

    model: Model
    aux_names: list[str]
    init: Callable  # hp [rows] -> carry
    chunk: Callable  # (carry, hp, t0, xs, table, seed_pos) -> (carry, (loss, lr) [rows, K])
    batch_table: Callable | None  # (seeds, t0) -> [S, K, bs] the chunk's batch indices per seed
    whole: Callable  # (hp, xs, table, seed_pos) -> (_state, (loss, lr)): init + one chunk
    evaluate: Callable  # (_state, eval_data) -> (loss, aux) [rows]
    copy_state: Callable  # carry -> a copy of _state(carry) (the carry is donated)
    write_rows: Callable  # (store, rows, ids) -> store with store[ids] = rows
    take_rows: Callable  # (tree, idx) -> tree[idx]
    ahead: dict  # rows -> Future of the chunk compiled ahead of time for that batch size


def _chunk_inputs(fns: _Functions, data: Any, seeds: jax.Array, sample_batch: Any,
                  k: int) -> tuple[Any, Any]:
    """A chunk's ``(xs, table)`` as the loop passes them (an iterable's: abstract)."""
    if data is not None:
        return data, fns.batch_table(seeds, np.int32(0))
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(
        (k, *np.shape(a)), jax.dtypes.canonicalize_dtype(a.dtype)), sample_batch), None


def _lowered(fns: _Functions, whole: bool, carry: Carry | None, hp: dict, xs: Any, table: Any,
             seed_pos: jax.Array, eval_data: Any, by_member: Any) -> list:
    """The lowered programs the loop will run: the chunk (or the whole run) and the eval."""
    if whole:
        out = [fns.whole.lower(hp, xs, table, seed_pos)]
        state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=by_member),
                             jax.eval_shape(fns.whole, hp, xs, table, seed_pos)[0])
    else:
        out = [fns.chunk.lower(carry, hp, np.int32(0), xs, table, seed_pos)]
        state = _state(carry)
    if eval_data is not None:
        out.append(fns.evaluate.lower(state, eval_data))
    return out


def _program_digest(lowered: list) -> str:
    """A SHA-256 of the lowered (StableHLO) chunk and eval programs: whatever the trace read
    (the model, the loss, the optimizer, the values they close over, embedded as constants)
    is in it, and nothing of the run's progress. Lowering is a step of every jit call, so this
    adds no compile."""
    return hashlib.sha256("".join(p.as_text() for p in lowered).encode()).hexdigest()


def _compile_ahead(fns: _Functions, sizes: list[int], args: tuple, sharding: Any) -> None:
    """Compile the chunk for the batch sizes successive halving will leave, in a background
    thread while the first rungs train, so a rung does not stop to compile."""
    todo = [r for r in sizes if r not in fns.ahead]
    if not todo:
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxlr-compile")

    def abstract(tree, r):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct((r, *x.shape[1:]), x.dtype,
                                                           sharding=sharding), tree)

    carry, hp, t0, xs, table, seed_pos = args
    for r in todo:
        spec = (abstract(carry, r), abstract(hp, r), t0, xs, table, abstract(seed_pos, r))
        fns.ahead[r] = pool.submit(lambda spec=spec: fns.chunk.lower(*spec).compile())
    pool.shutdown(wait=False)


def _halving_sizes(prune: SuccessiveHalving, g: Grid, steps: int, n_devices: int) -> list[int]:
    """The batch sizes (rows) after each rung, when every setting has the same number of seeds
    (then they do not depend on the ranking); [] otherwise."""
    counts = np.bincount(g.settings())
    if len(set(counts.tolist())) != 1:
        return []
    n, per, out = len(counts), int(counts[0]), []
    for _ in prune.rungs(steps):
        n = max(1, n // prune.reduction_factor)
        out.append(-(-n * per // n_devices) * n_devices)
    return out


def batch_table(k: int, n: int, batch_size: int, place: _Placement) -> Callable:
    """The jitted ``(seeds, t0) -> [S, k, batch_size]`` batch indices of a chunk (see
    :func:`jaxlr._sweep.data.batch_indices`), shared by every sweep with the same static values
    (it reads nothing else: its only inputs are these integers, the device set, the x64 mode
    and its two array arguments)."""
    return _batch_table(k, n, batch_size, tuple(place.devices), jax.config.jax_enable_x64)


@functools.lru_cache(maxsize=32)
def _batch_table(k: int, n: int, batch_size: int, devices: tuple, x64: bool) -> Callable:
    del x64  # a key only: the traced program's integer dtypes depend on it
    return jax.jit(lambda seeds, t0: batch_indices(seeds, t0, k, n, batch_size),
                   out_shardings=_mesh(devices)[1])


def _build(init, loss_fn, optimizer, rule, steps, k, n, batch_size, place, hp0,
           sample_batch, eval_data=None) -> _Functions:
    """The compiled functions of this call, traced from the functions as they are NOW.

    Nothing traced from a user's function is kept across calls: a trace reads the values of
    the globals, closure cells, defaults, attributes and modules the function reaches at the
    moment it runs, and no key short of the trace itself covers them all (a key on the code and
    the closed-over objects' identities served the previous call's program after a global or
    an attribute changed; ``tests/test_program_cache.py`` has the cases). Within one call each
    program is traced once (``jax.jit``). The batch-index program depends only on static
    integers and the devices, so it is shared across calls (:func:`batch_table`)."""
    model = adapt(init, loss_fn)
    program = _Program(model, optimizer, steps, rule, place.devices[0].platform)
    aux_names = program.check(hp0, sample_batch, eval_data)
    by_member = place.by_member
    in_memory = n is not None
    vchunk = _member_map(program.chunk, in_axes=(0, 0, None, None, None, 0))

    def run_chunk(carry, hp, t0, xs, table, seed_pos):
        if in_memory:  # xs: the data; each member reads its seed's row of the table per step
            return vchunk(carry, hp, table, t0, xs, seed_pos)
        return vchunk(carry, hp, xs, t0, None, seed_pos)

    vinit = _member_map(program.init, in_axes=(0,))

    def run_whole(hp, xs, table, seed_pos):
        """A run of one chunk: init and training in one program, the optimizer state kept in."""
        carry, curves = run_chunk(vinit(hp), hp, jnp.int32(0), xs, table, seed_pos)
        return _state(carry), curves

    return _Functions(
        model=model, aux_names=aux_names,
        init=jax.jit(vinit, out_shardings=by_member),
        chunk=jax.jit(run_chunk, out_shardings=by_member, donate_argnums=0),
        whole=jax.jit(run_whole, out_shardings=by_member),
        # The batch indices of a chunk [S, K, bs] come from a program of their own: computed
        # inside the chunk program, the same indices made every training step ~3% slower on
        # CPU (benchmarks/results/cpu-index-ab.md).
        batch_table=batch_table(k, n, batch_size, place) if in_memory else None,
        evaluate=jax.jit(_member_map(program.evaluate, in_axes=(0, None))),
        copy_state=jax.jit(lambda c: jax.tree.map(jnp.copy, _state(c)),
                           out_shardings=by_member),
        write_rows=jax.jit(_write_rows, out_shardings=by_member, donate_argnums=0),
        take_rows=jax.jit(_take_rows, out_shardings=by_member),
        ahead={},
    )


def _member_map(f: Callable, in_axes: tuple) -> Callable:
    """``jax.vmap(f, in_axes)`` over the member axis, except that a batch of ONE member runs
    ``f`` itself and adds the axis to its outputs: XLA:CPU compiles the batch-of-one program
    (batched dots of batch 1) ~13% slower per step than the plain one
    (``benchmarks/results/cpu-index-ab.md``). The size is static, so this is a trace-time
    choice."""
    batched = jax.vmap(f, in_axes=in_axes)

    def mapped(*args):
        sizes = {x.shape[0] for a, ax in zip(args, in_axes, strict=True) if ax == 0
                 for x in jax.tree.leaves(a)}
        if sizes != {1}:
            return batched(*args)
        one = [jax.tree.map(lambda x: x[0], a) if ax == 0 else a
               for a, ax in zip(args, in_axes, strict=True)]
        return jax.tree.map(lambda x: x[None], f(*one))

    return mapped


def _write_rows(store: Any, rows: Any, ids: jax.Array) -> Any:
    return jax.tree.map(lambda s, r: s.at[ids].set(r), store, rows)


def _take_rows(tree: Any, idx: jax.Array) -> Any:
    return jax.tree.map(lambda x: x[idx], tree)


def _check_prune(prune: Any, k: int, eval_data: Any, eval_every: int | None,
                 aux_names: list[str]) -> None:
    if prune.min_steps % k:
        raise ValueError(f"chunk_size must divide prune's min_steps (rungs end chunks), got "
                         f"chunk_size={k}, min_steps={prune.min_steps}")
    if prune.by == "loss":
        return
    if eval_data is None or eval_every is None or prune.min_steps % eval_every:
        raise ValueError(f"prune by={prune.by!r} ranks members at each rung's evaluation: pass "
                         "eval_data= and an eval_every that divides min_steps, got "
                         f"eval_every={eval_every}, min_steps={prune.min_steps}")
    if prune.by != "eval" and prune.by not in aux_names:
        raise ValueError(f"prune by must be 'loss', 'eval' or one of loss_fn's aux metrics "
                         f"{aux_names}, got by={prune.by!r}")


class _Records:
    """The curves recorded chunk by chunk (host numpy arrays, [M, ...]; NaN for the members
    that did not run, i.e. were pruned)."""

    def __init__(self, m: int):
        self.m = m
        self.loss, self.lr, self.eval_steps, self.eval = [], [], [], []
        self.aux: dict[str, list[np.ndarray]] = {}

    def _full(self, active: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = np.full((self.m, *rows.shape[1:]), np.nan, rows.dtype)
        out[active] = rows[: len(active)]
        return out

    def add_curves(self, active: np.ndarray, loss: np.ndarray, lr: np.ndarray) -> np.ndarray:
        self.loss.append(self._full(active, loss))
        self.lr.append(self._full(active, lr))
        return self.loss[-1]

    def add_eval(self, step: int, active: np.ndarray, loss: np.ndarray,
                 aux: dict[str, np.ndarray]) -> None:
        self.eval_steps.append(step)
        self.eval.append(self._full(active, loss))
        for name, value in aux.items():
            if not np.issubdtype(value.dtype, np.floating):
                value = value.astype(np.float32)
            self.aux.setdefault(name, []).append(self._full(active, value))

    def scores(self, prune: SuccessiveHalving, active: np.ndarray, step: int,
               alive: np.ndarray) -> np.ndarray:
        """[n] the members' scores at a rung (lower is better; inf when diverged)."""
        if prune.by == "loss":
            w = max(1, step // 10)
            loss = np.concatenate(self.loss, axis=1)[active, step - w:step]
            value = loss.mean(axis=1)
        else:
            value = (self.eval if prune.by == "eval" else self.aux[prune.by])[-1][active]
        value = value.astype(np.float64) * (1.0 if prune.mode == "min" else -1.0)
        return np.where(alive & np.isfinite(value), value, np.inf)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"loss": np.concatenate(self.loss, axis=1), "lr": np.concatenate(self.lr, axis=1),
               "eval_steps": np.asarray(self.eval_steps, np.int32)}
        if self.eval:
            out["eval"] = np.stack(self.eval, axis=1)
            out.update({f"aux_{a}": np.stack(v, axis=1) for a, v in self.aux.items()})
        return out

    @classmethod
    def from_arrays(cls, m: int, arrays: dict[str, np.ndarray]) -> _Records:
        rec = cls(m)
        rec.loss, rec.lr = [arrays["loss"]], [arrays["lr"]]
        rec.eval_steps = [int(s) for s in arrays["eval_steps"]]
        if "eval" in arrays:
            rec.eval = list(np.moveaxis(arrays["eval"], 1, 0))
            rec.aux = {a[len("aux_"):]: list(np.moveaxis(v, 1, 0))
                       for a, v in arrays.items() if a.startswith("aux_")}
        return rec


def _grid_from(axes: Mapping[str, Any]) -> Grid:
    return grid(**axes)


class _Program:
    """The per-member functions that are vmapped and compiled."""

    def __init__(self, model: Model, optimizer: Callable, steps: int, rule: DivergenceRule,
                 platform: str = "cpu"):
        self.model, self.optimizer = model, optimizer
        self.steps, self.rule = steps, rule
        self.check_via_dot = platform == "cpu"  # see _tree_finite

    def transform(self, hp: dict) -> optax.GradientTransformationExtraArgs:
        tx = self.optimizer(hp)
        if not isinstance(tx, optax.GradientTransformation):
            raise ValueError("optimizer(hp) must return an optax transform (e.g. jaxlr.adam("
                             f"hp['lr'])), got {type(tx).__name__}")
        return optax.with_extra_args_support(tx)

    def check(self, hp: dict, batch: Any, eval_data: Any = None) -> list[str]:
        """Trace one member's init, step (optimizer included) and, given ``eval_data``, its
        evaluation abstractly: bad outputs, hp keys and axes, eval_data fail here, with names
        (see ``checks.program``). Returns the names of the aux metrics ``loss_fn`` returns."""

        return checks.program(self, hp, batch, eval_data)

    def init(self, hp: dict) -> Carry:
        params, rest = self.model.init(jax.random.key(hp["seed"]), hp["seed"])
        status = MemberStatus(alive=jnp.bool_(True), diverged_at=jnp.int32(-1),
                              rule=self.rule.init())
        return Carry(params, rest, self.transform(hp).init(params), status)

    def chunk(self, carry: Carry, hp: dict, xs: Any, t0: jax.Array, data: Any,
              seed_pos: jax.Array):
        """K steps of one member; ``xs`` is the chunk's batch indices into ``data`` per seed
        [S, K, bs] (the member's row: ``seed_pos``), or the batches themselves when ``data`` is
        None (an iterable's stacked chunk, [K, ...])."""
        tx = self.transform(hp)
        has_lr = _current_lr(carry.opt_state) is not None

        def step(carry: Carry, inp):
            t, x = inp
            batch = x if data is None else gather(data, xs[seed_pos, t - t0])
            # rest (BatchNorm stats, RNG counters) is differentiated too, and its cotangent
            # dropped: NNX may only mutate variables created at the trace level of the grad.
            (loss, (_, rest)), (grads, _) = jax.value_and_grad(
                self._loss, has_aux=True, allow_int=True)((carry.params, carry.rest), batch)
            updates, opt_state = tx.update(grads, carry.opt_state, carry.params, value=loss)
            st = carry.status
            rule_state, blown = self.rule.update(st.rule, t, loss)
            # The gradients, not the updates, are checked: they exist in memory anyway, so the
            # check is one extra pass over them, and the optimizer's maths stays fused into the
            # parameter update (the select below), as in a plain optax loop. An update that is
            # non-finite although loss and gradients are finite (a NaN learning rate) shows
            # in the next step's loss and freezes the member there.
            bad = ~jnp.isfinite(loss) | ~_tree_finite(grads, self.check_via_dot) | blown
            active = (t < self.steps) & st.alive
            keep = active & ~bad
            params = optax.apply_updates(carry.params, jax.tree.map(
                lambda u: jnp.where(keep, u, jnp.zeros((), u.dtype)), updates))
            # a frozen member's optimizer state runs on (it is never used again): no select
            out = Carry(params, jax.tree.map(lambda a, b: jnp.where(keep, a, b), rest,
                                             carry.rest), opt_state, st)
            rule_state = jax.tree.map(lambda a, b: jnp.where(active, a, b), rule_state, st.rule)
            status = MemberStatus(alive=st.alive & ~(active & bad),
                                  diverged_at=jnp.where(active & bad, t, st.diverged_at),
                                  rule=rule_state)
            record = [jnp.where(active, loss, jnp.nan).astype(jnp.float32)]
            if has_lr:  # without an LR in the state, no per-step write of a NaN
                record.append(jnp.where(active, _current_lr(opt_state), jnp.nan))
            return out._replace(status=status), record

        k = xs.shape[1] if data is not None else jax.tree.leaves(xs)[0].shape[0]
        ts = jnp.asarray(t0, jnp.int32) + jnp.arange(k, dtype=jnp.int32)  # int32 under x64
        carry, record = jax.lax.scan(step, carry, (ts, None if data is not None else xs))
        if not has_lr:
            record.append(jnp.full_like(record[0], jnp.nan))
        return carry, tuple(record)

    def _loss(self, params_rest, batch):
        loss, aux, new_rest = self.model.loss(*params_rest, batch, True)
        return loss.astype(jnp.float32), (aux, new_rest)

    def evaluate(self, state: tuple, eval_data: Any):
        """The loss and aux metrics of ``state`` (``(params, rest, status)``) on ``eval_data``."""
        params, rest, _ = state
        loss, aux, _ = self.model.loss(params, rest, eval_data, False)
        return loss, aux


def _progress_bar(progress: bool, steps: int, m: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc=f"jaxlr sweep ({m} members)", unit="step", leave=False)

