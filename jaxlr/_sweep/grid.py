"""Grids of hyperparameters: the members of a sweep."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

_EMPTY = "the grid is empty: give at least one axis, e.g. jaxlr.grid(lr=[1e-3])"
LR_AXES = ("lr", "learning_rate")  # axes whose negative values would train by gradient ascent


def _axis(name: str, values: Any) -> np.ndarray:
    """One axis as a 1-D numpy array (seeds: ``k`` means ``0..k-1``)."""
    if name == "seed" and np.ndim(values) == 0:
        k = int(values)
        if k != values or k < 1:
            raise ValueError(
                f"seed must be a positive count or a list of seeds, got seed={values!r}")
        return np.arange(k, dtype=np.int32)
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise ValueError(
            f"grid axis {name!r} must be a 1-D list of values, got an array of shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"grid axis {name!r} is empty: give at least one value")
    if name == "seed":
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"seeds must be integers, got seed={values!r}")
        return arr.astype(np.int32)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "US":  # a categorical axis: strings (e.g. optimizer names)
        return arr.astype(str)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"grid axis {name!r} must hold numbers or strings (a categorical "
                         f"axis), got {values!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"grid axis {name!r} holds a non-finite value: {values!r}")
    return arr.astype(np.int32 if np.issubdtype(arr.dtype, np.integer) else np.float32)


class Grid:
    """The members of a sweep: a table of M rows, one column per hyperparameter.

    Build it with :func:`grid` (cartesian product) and combine with :meth:`zip` (paired axes)
    or ``*`` (product of two grids). ``len(g)`` is M; iterating yields one dict per member.

    Attributes:
        columns: dict name -> [M] array (float32 / int32), one per hyperparameter.

    Example:
        >>> import jaxlr
        >>> g = jaxlr.grid(lr=[0.1, 0.01], seed=2)
        >>> len(g), g[1]
        (4, {'lr': 0.1, 'seed': 1})
    """

    def __init__(self, columns: Mapping[str, np.ndarray]):
        lengths = {len(v) for v in columns.values()}
        if not columns or lengths == {0}:
            raise ValueError(_EMPTY)
        if len(lengths) != 1:
            raise ValueError(f"grid columns have different lengths: "
                             f"{ {k: len(v) for k, v in columns.items()} }")
        for name in LR_AXES:
            values = np.asarray(columns.get(name, ()))
            if np.issubdtype(values.dtype, np.number) and (values < 0).any():
                v = values[np.argmax(values < 0)]
                raise ValueError(
                    f"grid axis {name!r} must be >= 0 (a negative LR trains by gradient ascent), "
                    f"got {name}={float(str(v)) if v.dtype == np.float32 else v.item()}; for a "
                    f"log-scale axis use another name, e.g. log_lr=[-4, -1] and 10 ** hp['log_lr']")
        self.columns = dict(columns)

    @staticmethod
    def zip(**axes: Any) -> Grid:
        """Paired axes (equal lengths): ``Grid.zip(lr=[1e-3, 1e-2], warmup_steps=[10, 100])``
        is 2 members, not 4."""
        cols = {k: _axis(k, v) for k, v in axes.items()}
        lengths = {k: len(v) for k, v in cols.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Grid.zip needs axes of equal length, got {lengths}")
        return Grid(cols)

    def __mul__(self, other: Grid) -> Grid:
        """Cartesian product of two grids (e.g. zipped pairs x seeds)."""
        clash = set(self.columns) & set(other.columns)
        if clash:
            raise ValueError(f"both grids have the axes {sorted(clash)}")
        m, n = len(self), len(other)
        cols = {k: np.repeat(v, n) for k, v in self.columns.items()}
        cols.update({k: np.tile(v, m) for k, v in other.columns.items()})
        return Grid(cols)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> dict[str, Any]:
        # float32 values print as the user typed them (0.1, not 0.10000000149011612)
        return {k: float(str(v[i])) if v.dtype == np.float32 else v[i].item()
                for k, v in self.columns.items()}

    @property
    def categorical(self) -> list[str]:
        """The categorical axes (strings, e.g. ``optimizer=["adam", "sgd"]``)."""
        return [k for k, v in self.columns.items() if v.dtype.kind in "US"]

    def select(self, indices: Any) -> Grid:
        """The sub-grid of the given member indices (e.g. to re-run one member alone)."""
        idx = np.atleast_1d(np.asarray(indices))
        return Grid({k: v[idx] for k, v in self.columns.items()})

    def settings(self) -> np.ndarray:
        """[M] int: each member's hyperparameter setting (every column but ``seed``), numbered
        in order of first appearance; members that differ only in ``seed`` share one."""
        names = [k for k in self.columns if k != "seed"]
        if not names:
            return np.zeros(len(self), np.int64)
        # each column as the index of its value among the column's distinct values (numbers
        # and categories alike)
        keys = np.stack([np.unique(self.columns[k], return_inverse=True)[1].reshape(-1)
                         for k in names], axis=1)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        return np.argsort(np.argsort(first))[inverse.reshape(-1)]

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def __repr__(self) -> str:
        def show(v: np.ndarray) -> str:
            u = np.unique(v)
            body = ", ".join(f"{x:.3g}" if isinstance(x, float) else str(x) for x in u[:4].tolist())
            return f"{len(u)} values [{body}{', ...' if len(u) > 4 else ''}]"

        axes = "; ".join(f"{k}: {show(v)}" for k, v in self.columns.items())
        return f"Grid(M={len(self)}; {axes})"


def grid(**axes: Any) -> Grid:
    """The cartesian product of hyperparameter axes: the members of a sweep.

    Each axis is a list, tuple, numpy or jax array of values (a scalar is one value);
    ``seed=k`` means seeds ``0..k-1`` and ``seed=[3, 7]`` those seeds. Members without a seed
    axis use seed 0. Values are float32 (integers stay int32); in the sweep each member's values
    arrive, traced, as ``hp[name]``. An ``lr`` (or ``learning_rate``) axis must be >= 0. An
    axis of strings is *categorical* (e.g. ``optimizer=["adam", "sgd", "prodigy"]``): its value
    arrives in ``hp`` as a plain Python string, so ``optimizer(hp)`` can branch on it (see
    :func:`jaxlr.sweep`).

    Args:
        **axes: name -> values.

    Returns:
        A :class:`Grid` with ``M = prod(len(axis))`` members, the last axis varying fastest.

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> g = jaxlr.grid(lr=jnp.logspace(-4, 0, 16), seed=3, warmup_steps=[0, 100])
        >>> len(g)
        96
        >>> g[0]
        {'lr': 0.0001, 'seed': 0, 'warmup_steps': 0}

    References:
        Bergstra & Bengio 2012, random vs grid search: https://jmlr.org/papers/v13/bergstra12a.html
    """
    if not axes:
        raise ValueError(_EMPTY)
    cols = {k: _axis(k, v) for k, v in axes.items()}
    rows = list(itertools.product(*(range(len(v)) for v in cols.values())))
    return Grid({k: v[[r[j] for r in rows]] for j, (k, v) in enumerate(cols.items())})
