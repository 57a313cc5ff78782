"""Checks of a sweep's inputs before step 0: each mistake found up front, named, with the fix.

Why: inside the compiled program a mistake surfaces as a deep JAX error, or only after the
whole run (``eval_data`` is first used at the end, after the checkpoints were written), or not
at all: one ``inf`` in the data makes every member "diverge", whatever its LR; a misspelt grid
axis that the optimizer never reads duplicates members. These checks run on the host, on
concrete values and abstract traces (``jax.eval_shape``); nothing here runs in the program.

- :func:`arguments` (``sweep``'s argument block): ``loss_fn``'s signature, data given as Python
  lists, non-finite values in in-memory ``data``/``eval_data``.
- :func:`program` (``_Program.check``, once per compiled configuration): one member traced
  abstractly (init, loss, gradients, the optimizer's init and update, the loss on
  ``eval_data``) with an ``hp`` that records the keys read (:class:`HParams`).
- A loader's smaller last batch is caught where batches are read (``data.chain_first``), the
  negative LR by :class:`jaxlr.Grid`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlr._sweep.data import describe, is_array_data

if TYPE_CHECKING:
    import chex
    import optax

    from jaxlr._sweep.grid import Grid
    from jaxlr._sweep.member import Program
    from jaxlr._sweep.models import Model


def arguments(loss_fn: Any, data: chex.ArrayTree | Iterable[chex.ArrayTree],
              eval_data: chex.ArrayTree | None) -> None:
    """The checks of ``sweep``'s arguments that need no trace."""
    loss_fn_signature(loss_fn)
    python_lists("data", data)
    if eval_data is not None:
        python_lists("eval_data", eval_data)
    if is_array_data(data):
        finite("data", data)
    if eval_data is not None:
        finite("eval_data", eval_data)


def loss_fn_signature(loss_fn: Any) -> None:
    """``loss_fn`` must accept ``(model, batch)``: a ``(model, x, y)`` function is named, where
    its signature can be read (builtins and some C callables have none: then nothing is said)."""
    if isinstance(loss_fn, type) or not callable(loss_fn):
        return  # a class, or not a function: adapt() says what it must be
    try:
        sig = inspect.signature(loss_fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(None, None)
    except TypeError:
        raise ValueError(f"loss_fn must be loss_fn(model, batch) -> loss, got loss_fn{sig}: take "
                         "the batch as one argument and unpack it inside, e.g. x, y = batch"
                         ) from None


def python_lists(name: str, data: chex.ArrayTree | Iterable[chex.ArrayTree]) -> None:
    """Arrays given as Python lists (``(x.tolist(), y)``, or a list of numbers) are named with
    the fix (``np.asarray``); so is ``[x, y]``, a list (read as a sequence of batches) holding
    arrays of different shapes past axis 0, which was meant as the tuple ``(x, y)``."""
    if isinstance(data, (tuple, Mapping)):
        paths = jax.tree_util.tree_flatten_with_path(
            data, is_leaf=lambda x: isinstance(x, list))[0]
        for path, leaf in paths:
            if isinstance(leaf, list):
                raise ValueError(f"{name}{jax.tree_util.keystr(path)} is a Python list, not an "
                                 f"array: convert it with np.asarray, e.g. {name} = "
                                 "(np.asarray(x), np.asarray(y))")
    if not isinstance(data, list) or not data:
        return
    if any(isinstance(x, (int, float, complex)) for x in jax.tree.leaves(data[0])):
        raise ValueError(f"{name} is a Python list of numbers, not an array: convert it with "
                         f"np.asarray ({name} = np.asarray(...)), and give a tuple/dict of arrays "
                         "with the examples on axis 0, e.g. (x, y)")
    if len(data) > 1 and all(hasattr(x, "shape") for x in data):
        shapes = [tuple(np.shape(x)) for x in data]
        if len({s[1:] for s in shapes}) > 1:
            raise ValueError(f"{name} is a list of arrays of different shapes {shapes}: a list is "
                             "read as a sequence of batches; for arrays with the examples on axis "
                             f"0 give a tuple, e.g. {name}=(x, y)")


def finite(name: str, data: chex.ArrayTree) -> None:
    """Every float in the concrete arrays of ``data`` is finite, or the array (its path in the
    tuple/dict) and its first bad row are named. Traced and not fully addressable arrays (with
    many processes) are skipped."""
    for path, x in jax.tree_util.tree_flatten_with_path(data)[0]:
        if (isinstance(x, jax.core.Tracer) or not hasattr(x, "dtype") or np.ndim(x) == 0
                or not jnp.issubdtype(x.dtype, jnp.inexact)
                or (isinstance(x, jax.Array) and not x.is_fully_addressable)):
            continue
        xp = jnp if isinstance(x, jax.Array) else np
        ok = xp.isfinite(x)
        if bool(ok.all()):
            continue
        bad_rows = np.flatnonzero(~np.asarray(ok.reshape(x.shape[0], -1).all(axis=1)))
        row = int(bad_rows[0])
        values = np.asarray(x[row]).ravel()
        value = values[~np.isfinite(values)][0]
        raise ValueError(
            f"{name}{jax.tree_util.keystr(path)} holds {value} in row {row} (the first of "
            f"{len(bad_rows)} such rows, of {x.shape[0]}): every member's loss becomes "
            "non-finite at the first batch that holds it, whatever its LR; drop or repair those "
            "rows first, e.g. keep = np.isfinite(x).reshape(len(x), -1).all(axis=1)")


class MissingHyperparameter(KeyError):
    """A key ``optimizer(hp)`` read that ``hp`` does not have (a KeyError, so ``try: hp[k]
    except KeyError`` still works); its text is the message itself, not its repr."""

    def __str__(self) -> str:
        return str(self.args[0])


class HParams(dict):
    """``hp`` as the optimizer sees it in :func:`program`: a dict that records the keys read
    (``read``) and, on a missing key, lists the keys there are. Reading in bulk (``items()``,
    ``values()``, ``copy()``, ``dict(hp)``, ``**hp``, flattening it as a pytree) counts as
    reading every key."""

    def __init__(self, values: Mapping):
        super().__init__(values)
        self.read: set = set()

    def __getitem__(self, key):
        if not dict.__contains__(self, key):
            keys = list(dict.keys(self))
            close = difflib.get_close_matches(str(key), [str(k) for k in keys], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise MissingHyperparameter(
                f"hp[{key!r}]: no such hyperparameter; hp has {', '.join(map(repr, keys))} (the "
                f"grid's axes and 'seed'){hint}: fix the name in optimizer, or add the axis to "
                "the grid")
        self.read.add(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            self.read.add(key)
        return dict.get(self, key, default)

    def _all(self) -> None:
        self.read.update(dict.keys(self))

    def items(self):
        self._all()
        return dict.items(self)

    def values(self):
        self._all()
        return dict.values(self)

    def copy(self):
        self._all()
        return dict(dict.items(self))

    def __iter__(self):  # defined, so dict(hp) and **hp go through keys() and __getitem__
        return dict.__iter__(self)


def _flatten(hp: HParams):
    hp._all()
    return list(dict.values(hp)), list(dict.keys(hp))


jax.tree_util.register_pytree_node(HParams, _flatten,
                                   lambda keys, values: HParams(dict(zip(keys, values))))


def unread_axes(hp: Mapping, read: set) -> None:
    """Every grid axis but ``seed`` must be read by ``optimizer(hp)``: members that differ only in
    an unread axis train identically (a misspelt name, e.g. ``warmup`` for ``warmup_steps``).
    An axis whose name starts with ``_`` is a label (e.g. to tell identical settings apart) and
    need not be read."""
    unread = [k for k in hp if k != "seed" and not str(k).startswith("_") and k not in read]
    if not unread:
        return
    reads = [k for k in hp if k in read]
    said = f"it reads {', '.join(map(repr, reads))}" if reads else "it reads none of hp's keys"
    names = ", ".join(map(repr, unread))
    axis = f"grid axis {names} is" if len(unread) == 1 else f"grid axes {names} are"
    raise ValueError(f"{axis} never read by optimizer(hp) ({said}): members that differ only in "
                     f"it train identically; fix the name where optimizer reads hp, or drop the "
                     f"axis (for repeats of a setting use seed=; a label the optimizer need not "
                     f"read starts with '_', e.g. _tag)")


def _scalar_loss(value: Any, what: str) -> None:
    if jnp.shape(value) != ():
        raise ValueError(f"loss_fn must return a scalar loss (or (loss, aux_dict)), got an "
                         f"array of shape {jnp.shape(value)}{what}; reduce it, e.g. with "
                         "jnp.mean")


def program(prog: Program, hp: dict, batch: chex.ArrayTree,
            eval_data: chex.ArrayTree | None = None) -> list[str]:
    """Trace one member of ``prog`` (a ``_Program``) abstractly: init, loss and gradients on
    ``batch``, ``optimizer(hp)``'s init and update (so keys read lazily, e.g. by a schedule at
    update time, count) and the loss on ``eval_data``. Returns the names of the aux metrics."""
    model = prog.model
    seen: dict = {}

    def probe(hp, batch, eval_data):
        params, rest = model.init(jax.random.key(hp["seed"]), hp["seed"])

        def loss(params_rest):
            value, aux, new_rest = model.loss(*params_rest, batch, True)
            _scalar_loss(value, "")
            return jnp.asarray(value).astype(jnp.float32), (aux, new_rest)

        (value, (aux, _)), (grads, _) = jax.value_and_grad(
            loss, has_aux=True, allow_int=True)((params, rest))
        seen["hp"] = recorded = HParams(hp)
        tx = prog.transform(recorded)
        tx.update(grads, tx.init(params), params, value=value)
        if eval_data is not None:
            _eval_fits(model, params, rest, eval_data, batch)
        return value, aux

    _, aux = jax.eval_shape(probe, hp, batch, eval_data)
    unread_axes(hp, seen["hp"].read)
    return sorted(aux)


def _eval_fits(model: Model, params: optax.Params, rest: chex.ArrayTree,
               eval_data: chex.ArrayTree, batch: chex.ArrayTree) -> None:
    """The loss on ``eval_data`` traces (inside :func:`program`'s trace), or eval_data and a
    training batch are shown side by side."""
    try:
        value, _, _ = model.loss(params, rest, eval_data, False)
    except Exception as e:  # the user's loss on the wrong structure: any error
        raise ValueError(
            f"eval_data does not fit loss_fn: loss_fn(model, eval_data) raised "
            f"{type(e).__name__}: {e}\neval_data: {describe(eval_data)}\na training batch: "
            f"{describe(batch)}\ngive eval_data the structure of data and the same shapes after "
            "axis 0 (the examples)") from e
    _scalar_loss(value, " on eval_data")


def initial_lrs(lrs: np.ndarray, grid: Grid) -> None:
    """Every member's first LR (NaN: the optimizer keeps no jaxlr LR) is >= 0: a negative LR
    made of traced values (``sgd(-hp["lr"])``, a schedule whose start is a negative axis
    value) would train by gradient ascent, unflagged. The members are named."""
    bad = np.flatnonzero(np.asarray(lrs) < 0)
    if not len(bad):
        return
    shown = ", ".join(f"member {i} {grid[int(i)]} -> {float(lrs[i]):.4g}" for i in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    raise ValueError(f"optimizer(hp) gives a negative learning rate at step 0 for {shown}{more}: "
                     "a negative LR trains by gradient ascent; check the sign where optimizer "
                     "builds the LR from hp (to maximise a metric, minimise its negative)")
