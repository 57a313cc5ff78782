"""The plan of a sweep: its arguments checked and turned into the static facts the programs
and the loop share (members, seeds, chunking, whether the run is one program).

Everything here is decided on the host before anything is traced; a bad argument fails here
with its name, its value and the fix (``checks.py`` holds the checks that read the data).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from jaxlr._optim import hparam
from jaxlr._sweep import checks
from jaxlr._sweep.categories import split
from jaxlr._sweep.data import is_array_data, num_examples
from jaxlr._sweep.grid import Grid, grid
from jaxlr._sweep.halving import SuccessiveHalving
from jaxlr._sweep.member import DivergenceRule, blowup_rule
from jaxlr._sweep.placement import Rows
from jaxlr._sweep.policies import Policy

if TYPE_CHECKING:
    import os

    import chex

# the default chunk is the whole run when nothing happens between chunks and its batch indices
# ([seeds, steps, batch_size] int32, made by a program of their own) take at most 64 MiB
WHOLE_RUN_INDICES = 1 << 24


class Plan(NamedTuple):
    """The static facts of one sweep call."""

    grid: Grid
    steps: int
    batch_size: int
    k: int  # steps per chunk
    n_chunks: int
    whole: bool  # one chunk, nothing between chunks: init + training are ONE program
    in_memory: bool  # data is arrays (else an iterable of batches)
    n: int | None  # examples in memory (None for an iterable)
    batches: Iterator[chex.ArrayTree] | None  # the iterator of batches (None in memory)
    eval_every: int | None
    cols: dict[str, np.ndarray]  # [M] hyperparameter columns, "seed" and "_seed_pos"
    seeds: np.ndarray  # [S] the distinct seeds, int32
    rule: DivergenceRule
    divergence: float | str  # the divergence factor, or "custom" (the checkpoint's fingerprint)
    policy: Policy | None  # a layout policy (successive halving, population-based training)
    checkpoint: str | os.PathLike | None
    progress: bool | str  # a string labels the bar
    categories: list[dict[str, str]] | None = None  # the categories' values, in order
    groups: np.ndarray | None = None  # [M] each member's category (its index in categories)

    @property
    def m(self) -> int:
        """The number of members."""
        return len(self.grid)

    def hp(self, i: int) -> dict[str, Any]:
        """Member ``i``'s traced hyperparameters (the numeric columns; for the abstract
        check)."""
        return {kk: v[i] for kk, v in self.cols.items()
                if kk != "_seed_pos" and v.dtype.kind not in "US"}

    def rows(self, n_devices: int) -> Rows:
        """The first layout: every member, in one block per category."""
        return Rows(np.arange(self.m), n_devices, self.groups,
                    1 if self.categories is None else len(self.categories))

    def config(self, n_devices: int) -> dict[str, Any]:
        """The settings a checkpoint's fingerprint covers."""
        return {"grid": {kk: v.tolist() for kk, v in self.cols.items()}, "steps": self.steps,
                "batch_size": self.batch_size, "chunk": self.k, "eval_every": self.eval_every,
                "examples": self.n, "divergence": self.divergence, "devices": n_devices,
                "prune": _describe(self.policy)}


def make_plan(loss_fn: Callable, data: chex.ArrayTree | Iterable[chex.ArrayTree],
              optimizer: Callable, grid_: Grid | Mapping, *, steps: int, batch_size: int,
              eval_data: chex.ArrayTree | None, eval_every: int | None,
              checkpoint: str | os.PathLike | None, progress: bool | str, chunk_size: int | None,
              divergence_factor: float, divergence: DivergenceRule | None,
              policy: Policy | None, logged: bool = False) -> Plan:
    """Check ``sweep``'s arguments (eagerly, before anything is traced) and plan the run."""
    steps = int(hparam("steps", steps, gt=0, integer=True))
    batch_size = int(hparam("batch_size", batch_size, gt=0, integer=True))
    rule = blowup_rule(divergence_factor) if divergence is None else divergence
    g = grid_ if isinstance(grid_, Grid) else grid(**grid_)
    if not callable(optimizer):
        raise ValueError(f"optimizer must be a function hp -> optax transform, got {optimizer!r}")
    if eval_every is not None:
        eval_every = int(hparam("eval_every", eval_every, gt=0, integer=True))
    if policy is not None and not (isinstance(policy, Policy) and policy.changes_layout):
        raise ValueError(f"policy must be jaxlr.successive_halving(...) or "
                         f"jaxlr.population_based(...), got {policy!r}")

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

    cols = dict(g.columns)  # float32 / int32 columns (Grid), with or without x64
    if "seed" not in cols:
        cols["seed"] = np.zeros(len(g), np.int32)
    seeds, seed_pos = np.unique(cols["seed"], return_inverse=True)
    cols["_seed_pos"] = seed_pos.astype(np.int32)
    # with nothing to do between chunks, the default is the whole run: one program (below)
    quiet = (in_memory and not progress and not logged and checkpoint is None and policy is None
             and len(seeds) * steps * batch_size <= WHOLE_RUN_INDICES)
    k = (default_chunk(steps, eval_every, policy, quiet) if chunk_size is None else
         int(hparam("chunk_size", chunk_size, gt=0, integer=True)))
    if eval_every is not None and eval_every % k:
        raise ValueError(f"eval_every must be a multiple of chunk_size, got eval_every="
                         f"{eval_every}, chunk_size={k}")
    n_chunks = -(-steps // k)
    # A run of one chunk without a checkpoint is ONE program (init and training), that returns
    # the members' params, model state and status but not the optimizer state: on CPU, a loop
    # whose optimizer state comes from and goes back to the caller ran ~3% slower per step than
    # one that keeps it inside (benchmarks/results/cpu-index-ab.md).
    whole = n_chunks == 1 and checkpoint is None and policy is None
    categories, groups = None, None
    if g.categorical:
        parts = split(g)
        categories, groups = [values for values, _ in parts], np.zeros(len(g), np.int64)
        for index, (_, members) in enumerate(parts):
            groups[members] = index
    return Plan(grid=g, steps=steps, batch_size=batch_size, k=k, n_chunks=n_chunks, whole=whole,
                in_memory=in_memory, n=n, batches=batches, eval_every=eval_every, cols=cols,
                seeds=np.asarray(seeds, np.int32), rule=rule,
                divergence="custom" if divergence else float(divergence_factor), policy=policy,
                checkpoint=checkpoint, progress=progress, categories=categories,
                groups=groups)


def default_chunk(steps: int, eval_every: int | None, policy: Policy | None,
                  quiet: bool = False) -> int:
    """The whole run when ``quiet`` (nothing happens between chunks) and there is no
    ``eval_every``; else ``eval_every``, or chunks of <= 200 steps that divide the run evenly
    (the padded tail stays tiny); with a layout policy, the largest divisor <= 200 of every
    step it acts at (and eval_every)."""
    if quiet and eval_every is None:
        return steps
    if policy is not None and policy.boundaries(steps):
        base = math.gcd(_period(policy)[1], eval_every or 0)
        return max(d for d in range(1, min(base, 200) + 1) if base % d == 0)
    if eval_every is not None:
        return min(steps, eval_every)
    return -(-steps // -(-steps // 200))


def check_policy(policy: Policy, k: int, eval_data: chex.ArrayTree | None,
                 eval_every: int | None,
                 aux_names: list[str]) -> None:
    """A layout policy the plan can serve: the steps it acts at end chunks, the metric it
    ranks by is recorded there."""
    name, period = _period(policy)
    who = "prune" if isinstance(policy, SuccessiveHalving) else "policy"
    if period % k:
        raise ValueError(f"chunk_size must divide {who}'s {name} (it acts at chunk ends), got "
                         f"chunk_size={k}, {name}={period}")
    if policy.by == "loss":
        return
    if eval_data is None or eval_every is None or period % eval_every:
        raise ValueError(f"{who} by={policy.by!r} ranks members at the evaluation of each "
                         f"step it acts at: pass eval_data= and an eval_every that divides "
                         f"{name}, got eval_every={eval_every}, {name}={period}")
    if policy.by != "eval" and policy.by not in aux_names:
        raise ValueError(f"by must be 'loss', 'eval' or one of loss_fn's aux metrics "
                         f"{aux_names}, got by={policy.by!r}")


def _period(policy: Policy) -> tuple[str, int]:
    """The argument every step a layout policy acts at is a multiple of, and its value."""
    if isinstance(policy, SuccessiveHalving):
        return "min_steps", policy.min_steps
    return "interval", policy.interval


def _describe(policy: Policy | None) -> list | None:
    """A layout policy's settings, for a checkpoint's fingerprint."""
    if policy is None or isinstance(policy, SuccessiveHalving):
        return None if policy is None else list(policy)
    return [type(policy).__name__, *policy]
