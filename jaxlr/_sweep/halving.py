"""Successive halving, the first layout policy: rank the settings at rungs, keep the best
1/eta, compact the survivors into a smaller batch."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from jaxlr._optim import hparam
from jaxlr._sweep.policies import ChunkEnd, Layout, Policy, ranking

if TYPE_CHECKING:
    from jaxlr._sweep.grid import Grid


class _Rule(NamedTuple):
    min_steps: int  # the first rung
    reduction_factor: int  # eta: keep the best 1/eta at each rung
    by: str  # "loss" (smoothed training loss), "eval", or an aux metric recorded at eval
    mode: str  # "min" or "max"


class SuccessiveHalving(_Rule, Policy):
    """The pruning rule of :func:`successive_halving`, passed as ``jaxlr.sweep(prune=...)``.

    A between-chunk :class:`Policy` that drops the losing settings' rows at rungs.

    Attributes:
        min_steps: the first rung; reduction_factor: eta (keep the best 1/eta at a rung);
        by: ``"loss"``, ``"eval"`` or an aux metric; mode: ``"min"`` or ``"max"``.

    Example:
        >>> import jaxlr
        >>> jaxlr.successive_halving(min_steps=10, reduction_factor=3).rungs(100)
        [10, 30, 90]
    """

    __slots__ = ()
    changes_layout = True
    stops_members = True

    def boundaries(self, steps: int) -> list[int]:
        return self.rungs(steps)

    def batch_sizes(self, grid: Grid, steps: int, n_devices: int) -> list[int]:
        """The rows after each rung, padded to the devices, when every setting has the same
        number of seeds (then they do not depend on the ranking); [] otherwise."""
        counts = np.bincount(grid.settings())
        if len(set(counts.tolist())) != 1:
            return []
        n, per, out = len(counts), int(counts[0]), []
        for _ in self.rungs(steps):
            n = max(1, n // self.reduction_factor)
            out.append(-(-n * per // n_devices) * n_devices)
        return out

    def scores(self, end: ChunkEnd) -> np.ndarray:
        """[n] the active members' scores at a rung (lower is better; inf when diverged)."""
        return ranking(end, self.by, self.mode,
                       lambda: end.curves.loss_window_mean(end.active, end.step))

    def after_chunk(self, end: ChunkEnd) -> Layout | None:
        """At a rung: the survivors' rows (:meth:`survivors`), or None when all survive."""
        if end.step not in self.rungs(end.steps):
            return None
        keep = self.survivors(end.active, self.scores(end), end.grid.settings()[end.active])
        if len(keep) == len(end.active):
            return None
        position = {int(member): i for i, member in enumerate(end.active)}
        return Layout(members=keep, source=np.array([position[int(i)] for i in keep], np.int64))

    def rungs(self, steps: int) -> list[int]:
        """The rung steps ``min_steps * eta**k`` strictly below ``steps``."""
        out, r = [], self.min_steps
        while r < steps:
            out.append(r)
            r *= self.reduction_factor
        return out

    def survivors(self, members: np.ndarray, scores: np.ndarray,
                  settings: np.ndarray) -> np.ndarray:
        """The members that go on past a rung.

        Args:
            members: [n] the active member indices (grid order).
            scores: [n] each member's score at the rung, lower is better (``inf`` for a
                diverged member or a non-finite metric).
            settings: [n] the hyperparameter setting of each member (members differing only in
                ``seed`` share one): a setting is ranked by the mean score of its seeds.

        Returns:
            The surviving member indices, sorted: every seed of the best
            ``max(1, n_settings // eta)`` settings. Ties keep grid order.
        """
        keys, first, inverse = np.unique(settings, return_index=True, return_inverse=True)
        sums = np.zeros(len(keys))
        np.add.at(sums, inverse, scores)
        means = sums / np.bincount(inverse, minlength=len(keys))  # inf if any seed is inf
        means = np.where(np.isnan(means), np.inf, means)
        order = np.lexsort((first, means))  # by mean, ties by the first member (grid order)
        kept = order[: max(1, len(keys) // self.reduction_factor)]
        return np.sort(members[np.isin(inverse, kept)])


def successive_halving(min_steps: int = 100, reduction_factor: int = 3, *, by: str = "loss",
                       mode: str = "min") -> SuccessiveHalving:
    r"""Prune a sweep's losing members at rungs, inside the sweep (no extra processes).

    At each rung :math:`r_k = \text{min\_steps}\cdot\eta^k < \text{steps}` (k = 0, 1, ...) the
    remaining hyperparameter settings are ranked and the best
    :math:`\max(1, \lfloor n/\eta \rfloor)` of the :math:`n` go on; the others stop there, keep
    their curves up to the rung (NaN after it) and their state at the rung, and are marked in
    ``SweepResult.pruned_at``. With ``steps=500, min_steps=50, eta=3`` the rungs are 50, 150 and
    450, and 81 settings become 27, 9, 3.

    Ranking, per setting (members differing only in ``seed`` are one setting, ranked by the
    mean over its seeds, and kept or pruned together):

    - ``by="loss"``: the mean training loss over the last :math:`\max(1, r_k/10)` steps before
      the rung (the smoothing of :meth:`SweepResult.final_loss`);
    - ``by="eval"`` or an aux metric name: the value at the rung's evaluation (``eval_every``
      must divide ``min_steps``);
    - a diverged member (or a non-finite score) ranks last, so it goes first; ties keep grid
      order, so pruning is deterministic.

    The survivors are compacted into a smaller vmapped batch (padded to a multiple of the
    device count), so pruned members cost nothing after their rung: a sweep compiles its chunk
    once per distinct batch size, i.e. at most once per rung plus once. A survivor's results
    are those of the unpruned sweep (and of a solo run) to float tolerance.

    Args:
        min_steps: the first rung, in steps (> 0); ``jaxlr.sweep``'s ``chunk_size`` must divide
            it (the default chunk size does).
        reduction_factor: :math:`\eta`, an integer >= 2.
        by: ``"loss"``, ``"eval"``, or the name of an aux metric returned by ``loss_fn``.
        mode: ``"min"`` or ``"max"`` (e.g. ``by="accuracy", mode="max"``).

    Returns:
        A :class:`SuccessiveHalving` rule for ``jaxlr.sweep(..., prune=...)``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxlr
        >>> x = jax.random.normal(jax.random.key(0), (64, 3)); y = x @ jnp.array([1., -2., .5])
        >>> res = jaxlr.sweep(lambda key: jnp.zeros(3),
        ...                   lambda w, b: jnp.mean((b[0] @ w - b[1]) ** 2), (x, y),
        ...                   lambda hp: jaxlr.sgd(hp["lr"]),
        ...                   jaxlr.grid(lr=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]), steps=90,
        ...                   batch_size=16, progress=False,
        ...                   prune=jaxlr.successive_halving(min_steps=10, reduction_factor=3))
        >>> res.pruned_at.tolist()
        [10, 10, 10, 10, 30, -1]

    References:
        Jamieson & Talwalkar 2016, successive halving: https://arxiv.org/abs/1502.07943;
        Li et al. 2018, Hyperband: https://jmlr.org/papers/v18/16-558.html
    """
    min_steps = int(hparam("min_steps", min_steps, gt=0, integer=True))
    try:
        eta = float(reduction_factor)
    except (TypeError, ValueError):
        eta = float("nan")
    if isinstance(reduction_factor, bool) or not (eta >= 2 and eta.is_integer()):
        raise ValueError(f"reduction_factor must be an integer >= 2, got reduction_factor="
                         f"{reduction_factor!r}; 3 keeps the best third at each rung")
    if not isinstance(by, str):
        raise ValueError(f"by must be 'loss', 'eval' or an aux metric name, got by={by!r}")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got mode={mode!r}")
    return SuccessiveHalving(min_steps, int(eta), by, mode)
