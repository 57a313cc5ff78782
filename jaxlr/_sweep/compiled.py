"""The compiled programs of one sweep call: the member program mapped over the member axis,
jitted with the member sharding, and the small programs around it (batch indices, row moves).

Every call builds them afresh from the user's functions as they are now (see :func:`build`);
only the batch-index program, which depends on static integers alone, is shared across calls,
with the tables it computed for recent calls (:class:`BatchTable`: keyed on those integers, the
seeds' values and the first step, which is all a table depends on).

Why one file of ~500 lines: the cache of executables, the dispatch to them and the functions
they compile (one category or a block per category, the row moves) are one concern: what
program runs, and proof that it is the current one.
"""

from __future__ import annotations

import functools
import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.mlir import passmanager

from jaxlr._optim import lr_or_none
from jaxlr._sweep.data import batch_indices, gather
from jaxlr._sweep.member import Carry, Program, state
from jaxlr._sweep.models import Model, adapt
from jaxlr._sweep.placement import Placement, mesh
from jaxlr._sweep.plan import Plan

if TYPE_CHECKING:
    import chex
    import optax
    from flax import nnx
    from jax.sharding import NamedSharding

    from jaxlr._sweep.member import MemberStatus


class Functions(NamedTuple):
    """The compiled functions of one sweep call (built afresh for each call: :func:`build`)."""

    model: Model
    aux_names: list[str]
    init: Callable  # hp [rows] -> carry
    chunk: Callable  # (carry, hp, t0, xs, table, seed_pos[, move]) -> (carry, (loss, lr) [rows, K])
    batch_table: BatchTable | None  # (seeds, t0, host seeds) -> [S, K, bs] per seed
    whole: Callable  # (hp, xs, table, seed_pos) -> (state, (loss, lr)): init + one chunk
    evaluate: Callable  # (state, eval_data) -> (loss, aux) [rows]
    copy_state: Callable  # carry -> a copy of state(carry) (the carry is donated)
    write_rows: Callable  # (store, rows, ids) -> store with store[ids] = rows
    take_rows: Callable  # (carry, idx) -> carry[idx] (with categories: a block's own rows)
    ahead: dict  # rows -> Future of the chunk compiled ahead of time for that batch size
    initial_lr: Callable  # hp [rows] -> [rows] each member's first LR, or None: none kept
    state: Callable  # carry -> the rows' (params, rest, status) (``member.state``), [rows]
    copies: bool  # the chunk takes a ``move``: rows copied at its start (a policy's layout)


def chunk_inputs(fns: Functions, data: chex.ArrayTree | None, seeds: jax.Array,
                 sample_batch: chex.ArrayTree, k: int,
                 replicated: NamedSharding) -> tuple[chex.ArrayTree,
                                                     jax.ShapeDtypeStruct | None]:
    """A chunk's ``(xs, table)`` as the loop passes them, for lowering: the batch-index table
    abstract (its shape, dtype and sharding: computing it here cost ~5 ms a call for a
    500-step run), an iterable's stacked batches abstract and placed ``replicated``."""
    if data is not None:
        return data, fns.batch_table.eval_shape(seeds, np.int32(0))
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(
        (k, *np.shape(a)), jax.dtypes.canonicalize_dtype(a.dtype), sharding=replicated),
        sample_batch), None


def lower_all(fns: Functions, whole: bool, carry: Carry | None, hp: dict, xs: chex.ArrayTree,
              table: jax.Array | None, seed_pos: jax.Array, eval_data: chex.ArrayTree | None,
              by_member: NamedSharding, move: chex.ArrayTree | None = None) -> list:
    """The lowered programs the loop will run: the chunk (or the whole run) and the eval."""
    def placed(shapes):
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=by_member),
                            shapes)

    if whole:
        out = [fns.whole.lower(hp, xs, table, seed_pos)]
        st = placed(jax.eval_shape(fns.whole, hp, xs, table, seed_pos)[0])
    else:
        out = [fns.chunk.lower(carry, hp, np.int32(0), xs, table, seed_pos,
                               *(() if move is None else (move,)))]
        st = state(carry) if fns.state is state else placed(jax.eval_shape(fns.state.jitted, carry))
    if eval_data is not None:
        out.append(fns.evaluate.lower(st, eval_data))
    return out


# Executables compiled from a lowered program, by what the compiler reads (see compile_cached)
_EXECUTABLES: OrderedDict = OrderedDict()
_MAX_EXECUTABLES = 32
_LOCK = threading.Lock()  # the chunks compiled ahead are compiled in a background thread


def compile_cached(lowered: jax.stages.Lowered,
                   devices: Sequence[jax.Device]) -> jax.stages.Compiled:
    """``lowered.compile()``, or the executable a previous call compiled from the SAME program.

    The key is everything the compiler reads: a SHA-256 of the whole StableHLO program (its
    ops, shapes, dtypes, shardings and every constant the trace embedded: whatever the user's
    functions read when they were traced; :func:`program_key`), the input and output pytree
    structures (so a re-defined class is another program) and the devices. A new call that
    traces its functions to the same program gets the same executable without an XLA
    compile; anything that changed what the functions compute changes the program, so it
    compiles afresh. Tracing and lowering still happen in every call (they read the functions
    as they are now).
    """
    key = (program_key(lowered), lowered.in_tree, lowered.out_tree,
           tuple((d.platform, d.id) for d in devices))
    with _LOCK:
        if key in _EXECUTABLES:
            _EXECUTABLES.move_to_end(key)
            return _EXECUTABLES[key]
    compiled = lowered.compile()
    with _LOCK:
        _EXECUTABLES[key] = compiled
        while len(_EXECUTABLES) > _MAX_EXECUTABLES:
            _EXECUTABLES.popitem(last=False)
    return compiled


def program_key(lowered: jax.stages.Lowered) -> str:
    """SHA-256 of the lowered program's MLIR bytecode with its debug info (source locations)
    stripped, from a copy: the form JAX's own persistent compilation cache hashes
    (``jax/_src/cache_key.py``, ``_canonicalize_ir``). It holds what the StableHLO text
    without debug info holds (every op, attribute and constant), and writing it takes a
    fraction of printing the text (an MLP step program of 71 kB of text: ~1-2 ms vs 5.3 ms),
    which every sweep call pays."""
    module = lowered.compiler_ir()
    with module.context:
        copy = module.operation.clone()
        passmanager.PassManager.parse("builtin.module(strip-debuginfo)").run(copy)
        out = io.BytesIO()
        copy.write_bytecode(out)
    return hashlib.sha256(out.getvalue()).hexdigest()


def clear_caches() -> None:
    """Forget every compiled program :func:`jaxlr.sweep` keeps across calls.

    Three caches live across calls, each keyed on everything its entries depend on (so
    clearing them never changes a result, only frees memory and costs compile time): the XLA
    executables of sweep programs, by their lowered program; the batch-index programs, by
    their static integers; and the batch-index tables of recent calls, by those and the
    seeds' values and first step (at most 16 MiB: :class:`BatchTable`).

    Returns:
        None.

    Example:
        >>> import jaxlr
        >>> jaxlr.clear_caches()

    References:
        equinox's ``clear_caches``, the model: https://docs.kidger.site/equinox/api/caches/
    """
    _EXECUTABLES.clear()
    _batch_table.cache_clear()
    _TABLES.clear()


class Dispatch:
    """A jitted function that runs ``compiled`` (its executable for the shapes planned) when
    the arguments match it, else the jitted function itself (other shapes: e.g. the smaller
    batches left by successive halving)."""

    def __init__(self, jitted: Callable, compiled: jax.stages.Compiled):
        self.jitted, self.compiled = jitted, compiled

    def __call__(self, *args):
        try:
            return self.compiled(*args)
        except (TypeError, ValueError):  # raised before running: the types or shardings
            return self.jitted(*args)

    def lower(self, *args):
        return self.jitted.lower(*args)

    def _cache_size(self) -> int:
        return self.jitted._cache_size() + 1


class Cached:
    """A jitted function whose executables come from :func:`compile_cached`: the first call
    with new argument types lowers it (tracing the function as it is now) and takes the
    executable of an identical earlier program, if any; later calls with those types run it
    directly. For the small programs around the chunk (init, row moves), so that a repeated
    sweep compiles nothing."""

    def __init__(self, jitted: Callable, devices: Sequence[jax.Device]):
        self.jitted, self.devices, self.executables = jitted, list(devices), {}

    def __call__(self, *args):
        leaves, tree = jax.tree.flatten(args)
        key = (tree, tuple((np.shape(x), str(getattr(x, "dtype", type(x))),
                            getattr(x, "sharding", None)) for x in leaves))
        run = self.executables.get(key)
        if run is None:
            run = self.executables[key] = compile_cached(self.jitted.lower(*args),
                                                         self.devices)
        return run(*args)

    def lower(self, *args):
        return self.jitted.lower(*args)


def program_digest(lowered: list) -> str:
    """A SHA-256 of the lowered (StableHLO) chunk and eval programs: whatever the trace read
    (the model, the loss, the optimizer, the values they close over, embedded as constants)
    is in it, and nothing of the run's progress. Lowering is a step of every jit call, so this
    adds no compile."""
    return hashlib.sha256("".join(p.as_text() for p in lowered).encode()).hexdigest()


def compile_ahead(fns: Functions, sizes: list[int], args: tuple,
                  sharding: jax.sharding.NamedSharding, devices: Sequence[jax.Device]) -> None:
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
        fns.ahead[r] = pool.submit(lambda spec=spec: compile_cached(fns.chunk.lower(*spec),
                                                                    devices))
    pool.shutdown(wait=False)


def batch_table(k: int, n: int, batch_size: int, place: Placement) -> BatchTable:
    """The ``(seeds, t0, host_seeds) -> [S, k, batch_size]`` batch indices of a chunk (see
    :func:`jaxlr._sweep.data.batch_indices`), shared by every sweep with the same static values
    (it reads nothing else: its only inputs are these integers, the device set, the x64 mode
    and its two array arguments)."""
    return _batch_table(k, n, batch_size, tuple(place.devices), jax.config.jax_enable_x64)


@functools.lru_cache(maxsize=32)
def _batch_table(k: int, n: int, batch_size: int, devices: tuple, x64: bool) -> BatchTable:
    return BatchTable(jax.jit(lambda seeds, t0: batch_indices(seeds, t0, k, n, batch_size),
                              out_shardings=mesh(devices)[1]), (k, n, batch_size, devices, x64))


# the batch-index tables kept across calls, least recently used first, and their byte budget
_TABLES: OrderedDict = OrderedDict()
KEEP_TABLE_BYTES = 16 * 2**20


class BatchTable:
    """A batch-index program (``jitted(seeds, t0)``), with the tables of recent calls kept.

    A table is a function of the values of ``seeds`` and ``t0`` alone, given the program's
    static integers, devices and x64 mode (``static``; no user function is involved), so a
    kept table is exactly what the program would compute again. Keeping them saves a repeated
    sweep that program's run (~4-7 ms for a 500-step digits run on 2 CPU cores, where the
    whole run takes ~200 ms). Tables are kept while they total at most
    :data:`KEEP_TABLE_BYTES`, the least recently used dropped first; :func:`clear_caches`
    drops them all."""

    def __init__(self, jitted: Callable, static: tuple):
        self.jitted, self.static = jitted, static

    def eval_shape(self, seeds: jax.Array, t0: np.integer) -> jax.ShapeDtypeStruct:
        return self.jitted.eval_shape(seeds, t0)

    def __call__(self, seeds: jax.Array, t0: np.integer, host_seeds: np.ndarray) -> jax.Array:
        """The table of ``seeds`` (on the devices) from step ``t0``; ``host_seeds`` are their
        values on the host, the key of a kept table."""
        key = (self.static, np.asarray(host_seeds).tobytes(), str(host_seeds.dtype), int(t0))
        with _LOCK:
            if key in _TABLES:
                _TABLES.move_to_end(key)
                return _TABLES[key]
        table = self.jitted(seeds, t0)
        if table.nbytes <= KEEP_TABLE_BYTES:
            with _LOCK:
                _TABLES[key] = table
                while sum(t.nbytes for t in _TABLES.values()) > KEEP_TABLE_BYTES:
                    _TABLES.popitem(last=False)
        return table


def build(init: Callable[[jax.Array], chex.ArrayTree] | nnx.Module, loss_fn: Callable,
          optimizer: Callable, plan: Plan, place: Placement, sample_batch: chex.ArrayTree,
          eval_data: chex.ArrayTree | None = None) -> Functions:
    """The compiled functions of this call, traced from the functions as they are NOW.

    Nothing traced from a user's function is kept across calls: a trace reads the values of
    the globals, closure cells, defaults, attributes and modules the function reaches at the
    moment it runs, and no key short of the trace itself covers them all (a key on the code and
    the closed-over objects' identities served the previous call's program after a global or
    an attribute changed; ``tests/test_program_cache.py`` has the cases). Within one call each
    program is traced once (``jax.jit``). The batch-index program depends only on static
    integers and the devices, so it is shared across calls (:func:`batch_table`)."""
    k, n, batch_size = plan.k, plan.n, plan.batch_size
    model = adapt(init, loss_fn)
    platform = place.devices[0].platform
    if plan.categories is None:
        programs = [Program(model, optimizer, plan.steps, plan.rule, platform)]
        firsts = [0]
    else:  # one program per category, each checked on its first member
        programs = [Program(model, with_values(optimizer, values), plan.steps, plan.rule,
                            platform) for values in plan.categories]
        firsts = [int(np.flatnonzero(plan.groups == g)[0]) for g in range(len(programs))]
    aux_names = [p.check(plan.hp(i), sample_batch, eval_data)
                 for p, i in zip(programs, firsts, strict=True)][0]
    by_member = place.by_member
    in_memory = n is not None

    def member_chunk(program):
        vchunk = member_map(program.chunk, in_axes=(0, 0, None, None, None, 0))

        def run_chunk(carry, hp, t0, xs, table, seed_pos):
            if in_memory:  # xs: the data; each member reads its seed's row of the table
                return vchunk(carry, hp, table, t0, xs, seed_pos)
            return vchunk(carry, hp, xs, t0, None, seed_pos)

        return run_chunk

    chunks = [member_chunk(p) for p in programs]
    inits = [member_map(p.init, in_axes=(0,)) for p in programs]
    lrs = [member_map(p.initial_lr, in_axes=(0,)) for p in programs]
    if plan.categories is None:
        run_chunk, vinit, rows_state, take = chunks[0], inits[0], state, take_rows
    else:
        run_chunk = grouped_chunk(programs, in_memory)
        vinit = grouped(inits)
        rows_state, take = grouped_state, grouped_take
    # a policy that copies rows without changing their number (population-based training):
    # the copy is the first thing the next chunk does, so it adds no program of its own
    policy = plan.policy
    copies = policy is not None and policy.changes_layout and not policy.stops_members
    chunk = with_move(run_chunk, take) if copies else run_chunk

    def initial_lr(hp):
        """Each row's first LR (NaN in a category whose optimizer keeps no jaxlr LR), or None
        when no row's optimizer keeps one: then there is nothing to check and no program."""
        if plan.categories is None:
            return lrs[0](hp)
        out = [f(h) for f, h in zip(lrs, hp, strict=True)]
        if all(o is None for o in out):
            return None
        return jnp.concatenate([jnp.full(h["seed"].shape[:1], jnp.nan, jnp.float32)
                                if o is None else o for o, h in zip(out, hp, strict=True)])

    def run_whole(hp, xs, table, seed_pos):
        """A run of one chunk: init and training in one program, the optimizer state kept in."""
        carry, curves = run_chunk(vinit(hp), hp, jnp.int32(0), xs, table, seed_pos)
        return rows_state(carry), curves

    return Functions(
        model=model, aux_names=aux_names,
        init=Cached(jax.jit(vinit, out_shardings=by_member), place.devices),
        chunk=jax.jit(chunk, out_shardings=by_member, donate_argnums=0),
        whole=jax.jit(run_whole, out_shardings=by_member),
        # The batch indices of a chunk [S, K, bs] come from a program of their own: computed
        # inside the chunk program, the same indices made every training step ~3% slower on
        # CPU (benchmarks/results/cpu-index-ab.md).
        batch_table=batch_table(k, n, batch_size, place) if in_memory else None,
        evaluate=jax.jit(member_map(programs[0].evaluate, in_axes=(0, None))),
        copy_state=Cached(jax.jit(copy_state if rows_state is state else rows_state,
                                  out_shardings=by_member), place.devices),
        write_rows=Cached(jax.jit(write_rows, out_shardings=by_member, donate_argnums=0),
                          place.devices),
        take_rows=Cached(jax.jit(take, out_shardings=by_member), place.devices),
        ahead={},
        initial_lr=jax.jit(initial_lr),
        state=state if rows_state is state else Cached(
            jax.jit(rows_state, out_shardings=by_member), place.devices),
        copies=copies,
    )


def with_move(run: Callable, take: Callable) -> Callable:
    """``run`` (a chunk) that first copies rows: ``move = (index, copy)``; when ``copy``, row
    i starts from the state of row ``index[i]`` (a gather on the member axis, a collective
    between devices), else the carry is used as it is (``lax.cond``: one program for both)."""
    def run_chunk(carry, hp, t0, xs, table, seed_pos, move):
        index, copy = move
        carry = jax.lax.cond(copy, lambda c: take(c, index), lambda c: c, carry)
        return run(carry, hp, t0, xs, table, seed_pos)

    return run_chunk


def with_values(optimizer: Callable, values: dict[str, str]) -> Callable:
    """``optimizer`` for one category: ``hp`` with the category's values (plain Python)."""
    return lambda hp: optimizer({**hp, **values})


# Categorical axes: one block of rows per category (``placement.Rows``), each with its own
# carry (its optimizer's state), in ONE program: one scan whose body runs each category's
# vmapped step in turn (not ``lax.switch``, which under vmap would compute every category's
# step for every row). The blocks' sizes are static (the shapes), so an empty block (a category that
# successive halving stopped entirely) is skipped at trace time.
def _rows(carry: Carry) -> int:
    return carry.status.alive.shape[0]


def grouped(fs: list[Callable]) -> Callable:
    """``f_g(args_g)`` for each block g (tuples in, a tuple out)."""
    def run(args):
        return tuple(f(a) for f, a in zip(fs, args, strict=True))

    return run


def grouped_chunk(programs: list[Program], in_memory: bool) -> Callable:
    """ONE ``lax.scan`` over the chunk's steps whose body runs each block's vmapped step in
    turn (``Program.step``: the same step as a single program's); the curves in row order
    ([R, K], blocks concatenated)."""
    def run_chunk(carry, hp, t0, xs, table, seed_pos):
        live = [g for g, c in enumerate(carry) if _rows(c) > 0]
        k = table.shape[1] if in_memory else jax.tree.leaves(xs)[0].shape[0]
        ts = jnp.asarray(t0, jnp.int32) + jnp.arange(k, dtype=jnp.int32)  # int32 under x64

        def block_step(program: Program, has_lr: bool) -> Callable:
            def member_step(c, t, x, h, seed):
                batch = x if not in_memory else gather(xs, table[seed, t - t0])
                return program.step(program.transform(h), has_lr, c, t, batch)

            return member_map(member_step, in_axes=(0, None, None, 0, 0))

        steps = {g: block_step(programs[g], lr_or_none(carry[g].opt_state) is not None)
                 for g in live}

        def body(carries, inp):
            t, x = inp
            carries, loss, lr = list(carries), [], []
            for g in live:
                carries[g], record = steps[g](carries[g], t, x, hp[g], seed_pos[g])
                loss.append(record[0])
                lr.append(record[1] if len(record) > 1 else jnp.full_like(record[0], jnp.nan))
            return tuple(carries), (jnp.concatenate(loss), jnp.concatenate(lr))

        carry, (loss, lr) = jax.lax.scan(body, tuple(carry),
                                         (ts, None if in_memory else xs))
        return carry, (loss.T, lr.T)

    return run_chunk


def grouped_state(carry: tuple) -> tuple[optax.Params, chex.ArrayTree, MemberStatus]:
    """The rows' (params, rest, status) of every block, in row order (one array per leaf: a
    category changes the optimizer, so its state, never the model)."""
    return jax.tree.map(lambda *x: jnp.concatenate(x), *[state(c) for c in carry])


def grouped_take(carry: tuple, idx: tuple) -> tuple:
    """Each block's rows ``idx[g]`` (positions within the block)."""
    return tuple(take_rows(c, i) for c, i in zip(carry, idx, strict=True))


def member_map(f: Callable, in_axes: tuple) -> Callable:
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


def copy_state(carry: Carry) -> tuple[optax.Params, chex.ArrayTree, MemberStatus]:
    return jax.tree.map(jnp.copy, state(carry))


def write_rows(store: chex.ArrayTree, rows: chex.ArrayTree, ids: jax.Array) -> chex.ArrayTree:
    return jax.tree.map(lambda s, r: s.at[ids].set(r), store, rows)


def take_rows(tree: chex.ArrayTree, idx: jax.Array) -> chex.ArrayTree:
    return jax.tree.map(lambda x: x[idx], tree)
