"""Between-chunk policies: what may change the members' layout between two compiled chunks.

The loop runs chunks; at the chunk ends a policy asks for (:meth:`Policy.boundaries`), it
shows the policy a :class:`ChunkEnd` (the step, the recorded curves, the members in the rows)
and the policy may return a :class:`Layout`: which member each row holds next and from which
old row its state (params, model state, optimizer state, status) is copied, with new
hyperparameter columns if it likes. Keep rows, drop rows (successive halving), copy rows with
new hyperparameters (population-based training's exploit/explore): the loop applies any of them
the same way (an on-device gather of the rows), so a new policy never touches the loop.

Successive halving is the first policy: rank the settings at rungs, keep the best 1/eta.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from jaxlr._optim import hparam


class ChunkEnd(NamedTuple):
    """What a policy sees at a chunk end it asked for."""

    step: int  # steps done by the rows (the chunk's end)
    steps: int  # the run's length
    active: np.ndarray  # [r] the member each row holds (padding rows excluded)
    alive: np.ndarray  # [r] bool: not diverged
    curves: Any  # the recorded curves (``curves.Curves``), complete up to ``step``
    grid: Any  # the sweep's Grid
    hparams: dict  # [M] the members' current hyperparameter columns


class Layout(NamedTuple):
    """A new member layout: row ``i`` holds member ``members[i]`` and starts from the state of
    the old row ``source[i]``; ``hparams`` (None: unchanged) holds new [M] hyperparameter
    columns. A member of the old rows that is in no new row stops at this step."""

    members: np.ndarray
    source: np.ndarray
    hparams: dict | None = None


class Policy:
    """The interface: a policy needs nothing but these three methods (defaults: do nothing)."""

    def boundaries(self, steps: int) -> list[int]:
        """The steps at which this policy must see the sweep (each ends a chunk)."""
        return []

    def batch_sizes(self, grid: Any, steps: int, n_devices: int) -> list[int]:
        """The row counts its layouts will have, when known ahead (compiled ahead)."""
        return []

    def after_chunk(self, end: ChunkEnd) -> Layout | None:
        """The new layout, or None to go on unchanged."""
        return None


class SuccessiveHalving(NamedTuple):
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

    min_steps: int  # the first rung
    reduction_factor: int  # eta: keep the best 1/eta at each rung
    by: str  # "loss" (smoothed training loss), "eval", or an aux metric recorded at eval
    mode: str  # "min" or "max"

    def boundaries(self, steps: int) -> list[int]:
        return self.rungs(steps)

    def batch_sizes(self, grid: Any, steps: int, n_devices: int) -> list[int]:
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
        if self.by == "loss":
            value = end.curves.loss_window_mean(end.active, end.step)
        else:
            value = end.curves.last_eval(self.by)[end.active]
        value = value.astype(np.float64) * (1.0 if self.mode == "min" else -1.0)
        return np.where(end.alive & np.isfinite(value), value, np.inf)

    def after_chunk(self, end: ChunkEnd) -> Layout | None:
        """At a rung: the survivors' rows (:meth:`survivors`), or None when all survive."""
        if end.step not in self.rungs(end.steps):
            return None
        keep = self.survivors(end.active, self.scores(end), end.grid.settings()[end.active])
        if len(keep) == len(end.active):
            return None
        return Layout(members=keep, source=np.searchsorted(end.active, keep))

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
