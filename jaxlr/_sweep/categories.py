"""Categorical grid axes (e.g. ``optimizer=["adam", "sgd", "prodigy"]``): the members of each
category are one block of rows of the same compiled program.

A category is a combination of the categorical axes' values. ``optimizer(hp)`` receives the
category's values as plain Python strings and the numeric axes traced, so each category has
its own optimizer (and optimizer-state pytree): the program holds one carry per category and,
inside its scanned chunk, runs each category's vmapped step in turn (``compiled.grouped_*``;
not ``lax.switch``, which under vmap would compute every category's step for every member).
Each category's block is padded to a multiple of the device count and sharded over every
device (``placement.Rows``); results come back in grid order. Every member sees the batches
of its seed, whatever its category. Successive halving ranks settings across categories and
compacts the survivors within each category; population-based training copies within a
category.
"""

from __future__ import annotations

import numpy as np

from jaxlr._sweep.grid import Grid


def split(grid: Grid) -> list[tuple[dict[str, str], np.ndarray]]:
    """``[(category values, member indices)]`` in order of first appearance."""
    names = grid.categorical
    keys = [tuple(str(grid.columns[k][i]) for k in names) for i in range(len(grid))]
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return [(dict(zip(names, key, strict=True)), np.asarray(idx)) for key, idx in groups.items()]
