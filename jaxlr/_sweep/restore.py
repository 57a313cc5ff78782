"""A finished sweep's members read back from its last checkpoint (the engine's one loader,
``checkpoint.load_final``): what ``jaxlr.load(DIR).params(i)`` restores for a run directory,
given the functions that made the run (the run's own task rebuilds them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from jaxlr._optim import DIVERGENCE_FACTOR
from jaxlr._sweep import checkpoint
from jaxlr._sweep.categories import split
from jaxlr._sweep.compiled import grouped_state, with_values
from jaxlr._sweep.grid import Grid
from jaxlr._sweep.member import Program, blowup_rule, state
from jaxlr._sweep.models import adapt

if TYPE_CHECKING:
    import os

    import chex
    from flax import nnx


def final_state(directory: str | os.PathLike,
                init: Callable[[jax.Array], chex.ArrayTree] | nnx.Module, loss_fn: Callable,
                optimizer: Callable, grid: Grid, *, steps: int, chunk_size: int, pruned: bool,
                divergence_factor: float = DIVERGENCE_FACTOR) -> tuple[chex.ArrayTree, Callable]:
    """The trained ``(params, rest)`` [M, ...] of a finished sweep checkpointed in
    ``directory`` (with ``chunk_size``), and the function assembling one member's model.

    The tree structure, dtypes and per-member shapes come from the member program traced
    abstractly (nothing runs); every restored leaf is checked against them. With pruning, or
    categorical axes (one carry per category, rows not in member order), the members' final
    states are the store that follows the carry. Raises ValueError."""
    model, rule = adapt(init, loss_fn), blowup_rule(divergence_factor)
    cols = {k: v for k, v in grid.columns.items() if v.dtype.kind not in "US"}
    cols.setdefault("seed", np.zeros(len(grid), np.int32))

    def carry_like(opt: Callable, first: int) -> chex.ArrayTree:
        program = Program(model, opt, steps, rule)
        return jax.eval_shape(jax.vmap(program.init),
                              {k: jnp.asarray(v[first:first + 1]) for k, v in cols.items()})

    if grid.categorical:  # the engine's carry: one per category (``compiled.grouped_*``)
        like = tuple(carry_like(with_values(optimizer, values), int(idx[0]))
                     for values, idx in split(grid))
        rows_state, pruned = grouped_state, True
    else:
        like, rows_state = carry_like(optimizer, 0), state
    tree = checkpoint.load_final(
        directory, (like, jax.eval_shape(rows_state, like)) if pruned else (like, None),
        -(-steps // chunk_size) - 1)
    params, rest, _ = tree[1] if pruned else state(tree[0])
    return jax.tree.map(lambda a: a[:len(grid)], (params, rest)), model.assemble
