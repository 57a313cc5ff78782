"""Where the members live: the member mesh over devices (one process' or every process'),
which member each row of the vmapped batch holds, and the moves between host and mesh."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


class Rows:
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

    def put(self, cols: dict[str, np.ndarray], place: Placement) -> tuple[dict, jax.Array]:
        """The rows' hyperparameters (``hp``) and seed positions, sharded by member."""
        return place.put(self.host(cols), place.by_member)


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

    def __init__(self, devices: Any):
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
