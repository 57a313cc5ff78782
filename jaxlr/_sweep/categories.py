"""Categorical grid axes (e.g. ``optimizer=["adam", "sgd", "prodigy"]``): the members of each
category run as a sweep of their own, and the results are merged in grid order.

Each category (a combination of the categorical axes' values) is one compiled program in
which ``optimizer(hp)`` receives the category's values as plain Python strings and the
numeric axes traced; the categories run one after another in the same call, on the same data
order and seeds (a member's batches depend only on its seed), and each gets its own
checkpoint directory ``DIR/category-<k>/``. What is not done yet: the categories are separate
programs run in sequence, not one scanned program with a sub-step per category; and a policy
that ranks across the grid (successive halving) is refused with categories (population-based
training runs within each category).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxlr._sweep.grid import Grid
from jaxlr._sweep.result import SweepResult


def split(grid: Grid) -> list[tuple[dict[str, str], np.ndarray]]:
    """``[(category values, member indices)]`` in order of first appearance."""
    names = grid.categorical
    keys = [tuple(str(grid.columns[k][i]) for k in names) for i in range(len(grid))]
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return [(dict(zip(names, key)), np.asarray(idx)) for key, idx in groups.items()]


def run_categories(run: Callable[..., SweepResult], grid: Grid, optimizer: Callable,
                   checkpoint: Any) -> SweepResult:
    """``run(grid=..., optimizer=..., checkpoint=...)`` per category, merged in grid order."""
    parts = []
    for k, (values, idx) in enumerate(split(grid)):
        sub = Grid({n: v[idx] for n, v in grid.columns.items() if n not in values})
        where = None if checkpoint is None else Path(checkpoint) / f"category-{k:03d}"

        def opt(hp, values=values):
            return optimizer({**hp, **values})

        parts.append((run(grid=sub, optimizer=opt, checkpoint=where), idx))
    return _merge(grid, parts)


def _merge(grid: Grid, parts: list[tuple[SweepResult, np.ndarray]]) -> SweepResult:
    m = len(grid)

    def fill(get: Callable[[SweepResult], Any]) -> Any:
        values = [get(r) for r, _ in parts]
        if any(v is None for v in values):
            return None
        first = np.asarray(values[0])
        out = np.empty((m, *first.shape[1:]), first.dtype)
        for v, (_, idx) in zip(values, parts):
            out[idx] = np.asarray(v)[: len(idx)]
        return out

    states = [(jax.tree.map(np.asarray, r.stacked()), idx) for r, idx in parts]
    structures = {jax.tree.structure(st) for st, _ in states}
    if len(structures) != 1:  # e.g. another optimizer's state shapes do not matter: params do
        raise ValueError("the categories' models differ in structure; a categorical axis may "
                         "change the optimizer, not the model")

    def gather(*leaves):
        out = np.empty((m, *leaves[0].shape[1:]), leaves[0].dtype)
        for leaf, (_, idx) in zip(leaves, states):
            out[idx] = leaf[: len(idx)]
        return out

    state = jax.tree.map(gather, *[st for st, _ in states])
    first = parts[0][0]
    steps = {tuple(np.asarray(r.eval_steps).tolist()) for r, _ in parts}
    assert len(steps) == 1  # the same steps and eval period for every category
    return SweepResult(
        grid=grid, loss=fill(lambda r: r.loss), lr=fill(lambda r: r.lr),
        eval=fill(lambda r: r.eval),
        eval_aux={a: fill(lambda r, a=a: r.eval_aux[a]) for a in first.eval_aux},
        eval_steps=first.eval_steps, diverged=fill(lambda r: r.diverged),
        diverged_at=fill(lambda r: r.diverged_at), pruned_at=fill(lambda r: r.pruned_at),
        state=state, assemble=first._assemble, history=_history(grid, parts))


def _history(grid: Grid, parts: list[tuple[SweepResult, np.ndarray]]) -> dict | None:
    """The categories' layout histories as one, over the union of their steps, in grid
    indices (a category without a layout at a step: every member continues itself)."""
    if all(r.history is None for r, _ in parts):
        return None
    steps = sorted({int(s) for r, _ in parts if r.history is not None
                    for s in r.history["history_steps"]})
    m, n = len(grid), len(steps)
    parents = np.tile(np.arange(m), (n, 1))
    alive = np.ones((n, m), bool)
    hps = {k: np.tile(v, (n, 1)) for k, v in grid.columns.items()}
    for r, idx in parts:
        h = r.history or {"history_steps": np.zeros(0, np.int64)}
        own = [int(s) for s in h["history_steps"]]
        current = {k: v.copy() for k, v in r.hparams.items()}
        for j, step in enumerate(steps):
            if step in own:
                at = own.index(step)
                local = h["history_parents"][at]
                parents[j, idx] = np.where(local >= 0, idx[np.maximum(local, 0)], -1)
                alive[j, idx] = h["history_alive"][at]
                current = {k: h[f"history_hp_{k}"][at] for k in current}
            for k, v in current.items():
                hps[k][j, idx] = v
    return {"history_steps": np.asarray(steps, np.int64), "history_parents": parents,
            "history_alive": alive, **{f"history_hp_{k}": v for k, v in hps.items()}}
