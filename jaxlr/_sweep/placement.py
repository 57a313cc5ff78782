"""Where the members live: the member mesh over devices (one process' or every process'),
which member each row of the vmapped batch holds, and the moves between host and mesh."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

if TYPE_CHECKING:
    import chex


class Rows:
    """Which member each row of the vmapped batch holds.

    One group (no categorical axis): the ``active`` members (sorted), padded to a multiple of
    the device count by repeating the last one. With categorical axes (``groups``: each
    member's category index, of ``n_groups``), the rows are one block per category, in
    category order, each block its category's active members (in the order given) padded to a
    multiple of the device count by repeating its last member (a block may be empty), so that
    each category's block is sharded over every device. Padding rows train a copy of a real
    row and are discarded.

    Attributes: ``active`` [r] the member of each real row, in row order; ``ids`` [R] the
    member of every row; ``real`` [r] the positions of the real rows; ``index`` [R] each row's
    position in ``active``; ``sizes`` the blocks' sizes (None: one group).
    """

    def __init__(self, active: np.ndarray, n_devices: int, groups: np.ndarray | None = None,
                 n_groups: int = 1):
        active = np.asarray(active, np.int64)
        self.groups, self.n_groups = groups, n_groups
        if groups is None:
            blocks = [np.arange(len(active))]
        else:  # a stable partition by category: the order within a category is kept
            of = np.asarray(groups)[active]
            blocks = [np.flatnonzero(of == g) for g in range(n_groups)]
        index, real, sizes = [], [], []
        for block in blocks:
            pad = -len(block) % n_devices
            real.append(np.arange(len(block)) + sum(sizes))
            index.append(np.concatenate([block, np.repeat(block[-1:], pad)]))
            sizes.append(len(block) + pad)
        order = np.concatenate(blocks).astype(np.int64)
        rank = np.empty(len(active), np.int64)
        rank[order] = np.arange(len(active))
        self.active = active[order]
        self.order = order  # active[k] is the given ``active[order[k]]``
        self.index = rank[np.concatenate(index).astype(np.int64)]
        self.ids = self.active[self.index]
        self.real = np.concatenate(real).astype(np.int64)
        self.sizes = None if groups is None else tuple(sizes)

    def host(self, cols: dict[str, np.ndarray]) -> tuple[chex.ArrayTree, chex.ArrayTree]:
        """The rows' hyperparameters (``hp``: the numeric columns) and seed positions, on the
        host; with groups, one ``(hp, seed_pos)`` per block (tuples)."""
        numeric = {kk: v for kk, v in cols.items()
                   if kk != "_seed_pos" and v.dtype.kind not in "US"}
        if self.sizes is None:
            return {kk: v[self.ids] for kk, v in numeric.items()}, cols["_seed_pos"][self.ids]
        blocks = np.split(self.ids, np.cumsum(self.sizes)[:-1])
        return (tuple({kk: v[b] for kk, v in numeric.items()} for b in blocks),
                tuple(cols["_seed_pos"][b] for b in blocks))

    def put(self, cols: dict[str, np.ndarray],
            place: Placement) -> tuple[chex.ArrayTree, chex.ArrayTree]:
        """The rows' hyperparameters (``hp``) and seed positions, sharded by member."""
        return place.put(self.host(cols), place.by_member)

    def identity(self) -> np.ndarray | tuple[np.ndarray, ...]:
        """The gather index of no move (every row from itself), as :meth:`source` gives it."""
        if self.sizes is None:
            return np.arange(len(self.ids), dtype=np.int32)
        return tuple(np.arange(s, dtype=np.int32) for s in self.sizes)

    def split(self, flat: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        """A gather index saved flat (blocks concatenated) back in :meth:`source`'s form."""
        if self.sizes is None:
            return np.asarray(flat, np.int32)
        return tuple(np.split(np.asarray(flat, np.int32), np.cumsum(self.sizes)[:-1]))

    def by_member(self, values: np.ndarray) -> np.ndarray:
        """[r] ``values`` [R] (one per row) of the real rows, in ascending member order."""
        return np.asarray(values)[self.real[np.argsort(self.active, kind="stable")]]

    def source(self, old: Rows, source: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        """The gather index of a new layout: ``source`` [r] (aligned with the members given to
        this ``Rows``) holds positions in ``old.active``; returns, for every row, the old row
        its state comes from: one [R] array, or with groups one array per block of positions
        within the old block (a row's category never changes)."""
        src = np.asarray(source, np.int64)[self.order][self.index]  # into old.active, per row
        flat = old.real[src].astype(np.int32)
        if self.sizes is None:
            return flat
        starts = np.concatenate([[0], np.cumsum(old.sizes)[:-1]])
        ends = np.cumsum(self.sizes)
        out = []
        for g, (lo, hi) in enumerate(zip(ends - np.asarray(self.sizes), ends, strict=True)):
            rows = flat[lo:hi]
            if len(rows) and not ((rows >= starts[g]) & (rows < starts[g] + old.sizes[g])).all():
                raise AssertionError("a layout copied a row across categories")
            out.append((rows - starts[g]).astype(np.int32))
        return tuple(out)


@functools.lru_cache(maxsize=16)
def mesh(devices: tuple) -> tuple[NamedSharding, NamedSharding, Callable]:
    """The member-axis and replicated shardings over ``devices`` and a jitted gather to the
    replicated one (made once per device set: building them costs ~0.2 ms a call)."""
    mesh = Mesh(np.array(devices), ("member",))
    replicated = NamedSharding(mesh, P())
    return (NamedSharding(mesh, P("member")), replicated,
            jax.jit(lambda x: x, out_shardings=replicated))


class Placement:
    """The member mesh over ``devices`` (one process' or, with ``"all"``, every process'),
    and the moves between host and mesh that work in both cases."""

    def __init__(self, devices: Sequence[jax.Device] | str | None):
        if isinstance(devices, str) and devices != "all":
            raise ValueError(f"devices must be None (this process' devices), 'all' (every "
                             f"process' devices, after jax.distributed.initialize) or a list of "
                             f"devices, got devices={devices!r}")
        self.devices = list(jax.local_devices() if devices is None else
                            jax.devices() if devices == "all" else devices)
        if not self.devices:
            raise ValueError("devices is empty: give at least one device")
        self.by_member, self.replicated, self._replicate = mesh(tuple(self.devices))
        me = jax.process_index()
        self.multi = any(d.process_index != me for d in self.devices)

    def put(self, tree: chex.ArrayTree, sharding: Any) -> chex.ArrayTree:
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

    def fetch(self, tree: chex.ArrayTree, numpy: bool = True) -> chex.ArrayTree:
        """The mesh's arrays as full arrays on this process (numpy, or local jax arrays that
        may hold PRNG keys); with many processes a gather that every process takes part in."""
        if self.multi:
            tree = jax.tree.map(lambda x: x.addressable_data(0), self._replicate(tree))
        return jax.tree.map(np.asarray, tree) if numpy else tree
