"""Population-based training, a layout policy: at intervals the worst members copy the best
ones' state and hyperparameters (exploit), then perturb or redraw those hyperparameters
(explore), so the sweep discovers a hyperparameter *trajectory* (e.g. an LR schedule).

The decisions are made on the host from the recorded curves (a few numbers per member); the
copy is the loop's on-device gather of the member rows (``Layout``), so no parameter leaves
the devices and nothing recompiles: the hyperparameters are traced [M] inputs already.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from jaxlr._optim import hparam
from jaxlr._sweep.categories import split
from jaxlr._sweep.curves import tail_mean
from jaxlr._sweep.policies import ChunkEnd, Layout, Policy, ranking

if TYPE_CHECKING:
    from jaxlr._sweep.grid import Grid


class _Rule(NamedTuple):
    interval: int  # steps between two exploit/explore rounds
    fraction: float  # the top and bottom quantile
    perturb: tuple[float, ...]  # the factors an explored value is multiplied by
    resample: float  # the probability of redrawing a value from the axis' grid values
    by: str  # "loss" (smoothed training loss of the interval), "eval" or an aux metric
    mode: str  # "min" or "max"
    burn_in: int  # no round before this step
    axes: tuple[str, ...] | None  # the explored axes (None: every numeric axis but seed)
    seed: int  # the host RNG's seed (decisions are a function of (seed, step))


class PopulationBased(_Rule, Policy):
    """The rule of :func:`population_based`, passed as ``jaxlr.sweep(policy=...)``.

    A between-chunk :class:`Policy` that copies rows with new hyperparameters.

    Attributes:
        interval, fraction, perturb, resample, by, mode, burn_in, axes, seed: the arguments
            of :func:`population_based` (checked there).

    Example:
        >>> import jaxlr
        >>> jaxlr.population_based(25, burn_in=40).rounds(120)
        [50, 75, 100]
    """

    __slots__ = ()
    changes_layout = True

    def boundaries(self, steps: int) -> list[int]:
        return self.rounds(steps)

    def rounds(self, steps: int) -> list[int]:
        """The steps of the exploit/explore rounds: the multiples of ``interval`` that are at
        least ``burn_in`` and strictly below ``steps``."""
        return [s for s in range(self.interval, steps, self.interval) if s >= self.burn_in]

    def explored(self, grid: Grid) -> list[str]:
        """The axes explored: ``axes``, or every numeric grid axis but ``seed`` and labels."""
        if self.axes is not None:
            return list(self.axes)
        return [k for k, v in grid.columns.items() if k != "seed" and not k.startswith("_")
                and np.issubdtype(v.dtype, np.number) and v.dtype != np.bool_]

    def scores(self, end: ChunkEnd) -> np.ndarray:
        """[n] the active members' scores, lower is better (inf: diverged or non-finite): the
        training loss averaged over the last 10% of the interval just run, or the metric of
        the evaluation at this step."""
        def interval_loss() -> np.ndarray:
            loss = np.concatenate(end.curves.loss, axis=1)[end.active]
            return tail_mean(loss[:, end.step - self.interval: end.step])

        return ranking(end, self.by, self.mode, interval_loss)

    def after_chunk(self, end: ChunkEnd) -> Layout | None:
        """At a round: the bottom rows copy the top rows' state, with explored hparams."""
        if end.step not in self.rounds(end.steps):
            return None
        names = self.explored(end.grid)
        rng = np.random.default_rng([self.seed, end.step])
        scores = self.scores(end)
        parents = np.arange(len(end.active))
        new = {k: np.array(end.hparams[k][end.active]) for k in names}
        # within each category (categorical axes): a member copies one of its own category,
        # and explores that category's grid values (without categories: one group)
        for _, members in split(end.grid.select(end.active)):
            values = {k: end.hparams[k][end.active[members]] for k in names}
            own = end.active[members]
            choices = {k: np.unique(end.grid.columns[k][own]) for k in names}
            local, explored = exploit_explore(scores[members], values, choices, self, rng)
            parents[members] = members[local]
            for k in names:
                new[k][members] = explored[k]
        if (parents == np.arange(len(parents))).all():
            return None
        cols = dict(end.hparams)  # a slot keeps its seed (data order) and its labels
        for k, col in end.hparams.items():
            if k == "seed" or k.startswith("_"):
                continue
            col = np.array(col)
            col[end.active] = col[end.active[parents]]  # exploit copies every hparam...
            if k in new:
                col[end.active] = new[k]  # ...then explore changes the explored ones
            cols[k] = col
        return Layout(members=end.active, source=parents, hparams=cols)


def exploit_explore(scores: np.ndarray, values: dict[str, np.ndarray],
                    choices: dict[str, np.ndarray], rule: PopulationBased,
                    rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One round of exploit/explore over n members (pure: numpy in, numpy out).

    Members are sorted by score (ties by index). ``q = ceil(n * fraction)``, at most
    ``floor(n / 2)`` (the quantile rule of Ray Tune's PBT scheduler); the top ``q`` finite
    scores are the donors; the bottom ``q`` members, plus every member with a non-finite score
    (diverged) that is not a donor, each copy a donor drawn uniformly. A copied member's value
    of each explored axis is then, with probability ``resample``, redrawn uniformly from that
    axis' grid values, else multiplied by a factor drawn uniformly from ``perturb``; the result
    is clipped to the grid's range and, for an integer axis, rounded. Members that are not
    copied keep their values.

    Args:
        scores: [n] lower is better; ``inf`` for a diverged member.
        values: axis -> [n] the members' current values.
        choices: axis -> the axis' distinct grid values (its range and its resampling set).
        rule: a :class:`PopulationBased` (``fraction``, ``perturb``, ``resample``).
        rng: the round's random generator.

    Returns:
        ``(parents, new_values)``: [n] the member each one continues from (itself when not
        copied) and axis -> [n] the values after the round.
    """
    n = len(scores)
    order = np.lexsort((np.arange(n), scores))
    finite = int(np.isfinite(scores).sum())
    q = min(math.ceil(n * rule.fraction), n // 2)
    donors = order[: min(q, finite)]
    parents = np.arange(n)
    if q == 0 or len(donors) == 0:
        return parents, {k: np.array(v) for k, v in values.items()}
    bottom = set(order[n - q:].tolist()) | set(np.flatnonzero(~np.isfinite(scores)).tolist())
    copied = np.array(sorted(bottom - set(donors.tolist())), np.int64)
    parents[copied] = rng.choice(donors, size=len(copied))
    new = {}
    for k, v in values.items():
        out = np.array(v)[parents]
        grid_values = choices[k]
        lo, hi = grid_values.min(), grid_values.max()
        for i in copied:
            if rng.random() < rule.resample:
                x = grid_values[rng.integers(len(grid_values))]
            else:
                x = out[i] * rule.perturb[rng.integers(len(rule.perturb))]
            x = np.clip(x, lo, hi)
            out[i] = np.rint(x) if np.issubdtype(out.dtype, np.integer) else x
        new[k] = out.astype(np.asarray(v).dtype)
    return parents, new


def population_based(interval: int, *, fraction: float = 0.25,
                     perturb: tuple[float, ...] = (0.8, 1.25), resample: float = 0.25,
                     by: str = "loss", mode: str = "min", burn_in: int = 0,
                     axes: str | Iterable[str] | None = None, seed: int = 0) -> PopulationBased:
    r"""Population-based training inside the sweep: the members' hyperparameters become
    trajectories (e.g. an LR schedule) discovered while training, with no extra process.

    Every ``interval`` steps (from ``burn_in`` on) the members are ranked by ``by`` and, with
    :math:`q = \min(\lceil n\,\text{fraction}\rceil, \lfloor n/2 \rfloor)` (Ray Tune's
    quantile rule):

    - **exploit**: each of the bottom :math:`q` members (and every diverged member) copies the
      params, model state, optimizer state, divergence status AND hyperparameters of a member
      drawn uniformly from the top :math:`q`; a diverged member is revived that way (its
      quarantine ends; ``SweepResult.history`` records it);
    - **explore**: each copied value of the explored ``axes`` is multiplied by a factor drawn
      from ``perturb`` or, with probability ``resample``, redrawn from the axis' grid values;
      it is clipped to the grid's range, and an integer axis stays an integer.

    The copy is an on-device gather on the sharded member axis (a collective between devices,
    no host round trip of parameters), the decisions are a function of ``(seed, step)`` and
    the recorded curves (so a resumed sweep makes the same ones), and nothing recompiles: the
    hyperparameters are traced inputs. A member *slot* keeps its own ``seed``: after a copy it
    goes on with its slot's data order (with one seed, every slot sees the same batches, so a
    lineage is exactly a run with the LR trajectory it followed). ``SweepResult.lineage(i)``
    and ``SweepResult.schedule(i)`` give slot i's ancestry and the trajectory it followed.

    When it helps: PBT learns a schedule, so it beats the grid of its starting points where
    some schedule beats the best constant value, and can lose where none does. Its rounds are
    greedy: early on they copy the members that are best *now*, the fast learners, a short
    horizon. ``benchmarks/pbt.py`` measures both (best held-out loss, PBT / grid, four
    seeds): the digits MLP with SGD at 500 steps, where cosine decay from the grid's LRs
    beats the best constant, 0.77-0.93; noisy least squares 0.99; the same MLP with Adam at
    1,500 steps, which overfits and where no decay beats the best constant, 1.00-1.08. To
    check a task first, sweep the grid's values as the peaks of a decay (e.g.
    ``optax.cosine_decay_schedule``) beside the constants.

    Args:
        interval: steps between rounds (> 0); ``chunk_size`` must divide it (the default does).
        fraction: the quantile, in (0, 0.5].
        perturb: the factors (each > 0) an explored value is multiplied by.
        resample: the probability, in [0, 1], of redrawing a value from the grid instead.
        by: ``"loss"`` (the training loss averaged over the last 10% of the interval),
            ``"eval"`` or an aux metric name (``eval_every`` must divide ``interval``).
        mode: ``"min"`` or ``"max"``.
        burn_in: no round before this step (>= 0).
        axes: the explored axes (default: every numeric grid axis but ``seed`` and ``_``
            labels).
        seed: the seed of the decisions' random generator.

    Returns:
        A :class:`PopulationBased` policy for ``jaxlr.sweep(..., policy=...)``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxlr
        >>> x = jax.random.normal(jax.random.key(0), (64, 3)); y = x @ jnp.array([1., -2., .5])
        >>> res = jaxlr.sweep(lambda key: jnp.zeros(3),
        ...                   lambda w, b: jnp.mean((b[0] @ w - b[1]) ** 2), (x, y),
        ...                   lambda hp: jaxlr.sgd(hp["lr"]),
        ...                   jaxlr.grid(lr=[1e-4, 1e-3, 1e-2, 3e-2]), steps=60,
        ...                   batch_size=16, progress=False,
        ...                   policy=jaxlr.population_based(20, fraction=0.25))
        >>> res.history["history_steps"].tolist()  # the rounds
        [20, 40]
        >>> [(s.start, s.end, s.slot, s.hparams["lr"]) for s in res.lineage(0)]
        [(0, 20, 3, 0.03), (20, 60, 0, 0.024)]

    References:
        Jaderberg et al. 2017, Population Based Training of Neural Networks:
        https://arxiv.org/abs/1711.09846;
        Ray Tune's PBT scheduler (quantiles, explore):
        https://docs.ray.io/en/latest/tune/api/doc/ray.tune.schedulers.PopulationBasedTraining.html
    """
    interval = int(hparam("interval", interval, gt=0, integer=True))
    burn_in = int(hparam("burn_in", burn_in, ge=0, integer=True))
    fraction = float(hparam("fraction", fraction, gt=0, le=0.5))
    resample = float(hparam("resample", resample, ge=0, le=1))
    try:
        factors = tuple(float(f) for f in perturb)
    except (TypeError, ValueError):
        factors = ()
    if not factors or not all(f > 0 and math.isfinite(f) for f in factors):
        raise ValueError(f"perturb must be a non-empty tuple of positive factors, got "
                         f"perturb={perturb!r}; e.g. (0.8, 1.25)")
    if not isinstance(by, str):
        raise ValueError(f"by must be 'loss', 'eval' or an aux metric name, got by={by!r}")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got mode={mode!r}")
    if axes is not None:
        axes = (axes,) if isinstance(axes, str) else tuple(axes)
        if "seed" in axes:
            raise ValueError("axes must not hold 'seed': a slot keeps its seed (data order)")
    return PopulationBased(interval, fraction, factors, resample, by, mode, burn_in, axes,
                           int(seed))
