"""The result of a sweep: curves, divergence, the best member, trained models.

Why one file of ~580 lines: ``SweepResult`` is one public class whose methods (best, per-setting
views, params, lineage and schedule, the lazy façades to records, plot and diagnose) read the
same arrays; its pieces with logic of their own already live beside it (``compare.py``,
``lineage.py``, ``curves.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np

from jaxlr._sweep.compare import compare, format_comparison
from jaxlr._sweep.curves import tail_mean
from jaxlr._sweep.grid import LR_AXES, Grid
from jaxlr._sweep.lineage import Segment, lineage, trajectory

if TYPE_CHECKING:
    import os

    import chex
    import optax
    from flax import nnx

    from jaxlr._sweep.compare import Comparison


class Best(NamedTuple):
    """The best hyperparameter setting of a sweep (:meth:`SweepResult.best`).

    Attributes:
        index: the member index (ranked over seeds: the best seed of the best setting).
        hparams: that member's hyperparameters (without ``seed`` when ranked over seeds).
        value: the metric (the mean over the setting's seeds when ranked over seeds).
        std: its standard deviation over the seeds, ddof 0 (0.0 for a single member).
        params: the trained params / model of member ``index`` (None when a loaded result
            cannot restore them).

    Example:
        >>> import jax, jax.numpy as jnp, jaxlr
        >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
        >>> res = jaxlr.sweep(lambda k: jnp.zeros(1), lambda w, b: jnp.mean(
        ...     (b[0] @ w - 2.0 * b[0][:, 0]) ** 2), (x,), lambda hp: jaxlr.sgd(hp["lr"]),
        ...     jaxlr.grid(lr=[0.01, 0.5], seed=2), steps=20, batch_size=8, progress=False)
        >>> best = res.best(by="loss")  # the mean over the two seeds
        >>> best.hparams, best.params.shape
        ({'lr': 0.5}, (1,))
    """

    index: int  # member index (over seeds: the best seed of the best setting)
    hparams: dict  # that member's hyperparameters (without "seed" over seeds)
    value: float  # the metric (mean over seeds when ranked over seeds)
    std: float  # its standard deviation over seeds (0.0 for a single member)
    params: chex.ArrayTree | nnx.Module | None  # the trained params / model of member ``index``

    def __repr__(self) -> str:
        """One line: the params are summarised by their type and size, not printed."""
        return (f"Best(index={self.index}, hparams={self.hparams}, value={self.value:.6g}, "
                f"std={self.std:.3g}, params={_summary(self.params)})")


class SweepResult:
    """Everything a sweep measured, per member (axis 0 is the member axis, M rows).

    Example:
        >>> import jax, jax.numpy as jnp, jaxlr
        >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
        >>> res = jaxlr.sweep(lambda k: jnp.zeros(1), lambda w, b: jnp.mean(
        ...     (b[0] @ w - 2.0 * b[0][:, 0]) ** 2), (x,), lambda hp: jaxlr.sgd(hp["lr"]),
        ...     jaxlr.grid(lr=[0.1, 5.0]), steps=10, batch_size=8, progress=False)
        >>> res.loss.shape, res.diverged.tolist(), res.hparams["lr"].tolist()
        ((2, 10), [False, True], [0.10000000149011612, 5.0])

    Attributes:
        grid: the :class:`Grid` that was swept.
        hparams: dict name -> [M] array (the grid's columns, incl. ``seed`` when swept).
        loss: [M, steps] training loss of each step's batch (NaN after divergence).
        lr: [M, steps] the LR each update used (from :func:`jaxlr.current_lr`; NaN when the
            optimizer keeps no jaxlr LR state).
        eval: [M, E] loss on ``eval_data`` at ``eval_steps`` (None without eval data);
        eval_aux: dict name -> [M, E] of the aux metrics returned by ``loss_fn``.
        diverged: [M] bool; diverged_at: [M] step of divergence, -1 if never.
        pruned_at: [M] the rung at which successive halving stopped the member, -1 if never
            (its curves are NaN after it, it is never the best, its params are those at the
            rung).
        history: with a layout policy (``prune=``/``policy=``), the layouts it applied:
            ``history_steps`` [L], ``history_parents`` [L, M] (the slot each slot continued
            from at that step; itself when unchanged, -1 when it stopped), ``history_alive``
            [L, M] (alive just before: a copied diverged slot was revived) and
            ``history_hp_<name>`` [L, M] (the hyperparameters from that step on); None
            without a policy. See :meth:`lineage` and :meth:`schedule`.

    With population-based training a *slot* (row ``i``) changes hyperparameters and
    ancestry along the run: ``hparams`` is the grid a slot started from, the curves are the
    slot's, and :meth:`final_hparams`, :meth:`lineage` and :meth:`schedule` say what it
    became.

    The trained state is given (``state``, ``assemble``: what the sweep left) or loaded on
    first use by ``load_state() -> (state, assemble)`` (e.g. a run directory's checkpoint,
    read by ``jaxlr.load``); when that fails, :meth:`params` says why and :meth:`best`'s
    ``params`` is None.
    """

    def __init__(self, *, grid: Grid, loss, lr, eval, eval_aux, eval_steps, diverged,
                 diverged_at, state: chex.ArrayTree | None = None,
                 assemble: Callable[[optax.Params, chex.ArrayTree],
                                    chex.ArrayTree | nnx.Module] | None = None,
                 pruned_at=None,
                 load_state: Callable[[], tuple[chex.ArrayTree, Callable]] | None = None,
                 history: dict[str, np.ndarray] | None = None):
        self.grid = grid
        self.hparams = dict(grid.columns)
        self.loss, self.lr = loss, lr
        self.eval, self.eval_aux, self.eval_steps = eval, eval_aux, eval_steps
        self.diverged, self.diverged_at = diverged, diverged_at
        self.pruned_at = (np.full(len(grid), -1, np.int32) if pruned_at is None
                          else np.asarray(pruned_at))
        self.history = history
        self._state, self._assemble = state, assemble
        self._load_state, self._no_state = load_state, None if state is not None else (
            "this result holds no trained state")

    def _ensure_state(self) -> None:
        """Load the trained state once, or raise ValueError saying why there is none."""
        if self._state is None and self._load_state is not None:
            load, self._load_state = self._load_state, None
            try:
                self._state, self._assemble = load()
            except Exception as e:  # noqa: BLE001 - any failure: said, with its cause
                self._no_state = str(e) if isinstance(e, ValueError) else (
                    f"{type(e).__name__}: {e}")
        if self._state is None:
            raise ValueError(self._no_state)

    def __len__(self) -> int:
        return len(self.grid)

    def __repr__(self) -> str:
        has_eval = "yes" if self.eval is not None else "no"
        return (f"SweepResult(M={len(self)}, steps={self.loss.shape[1]}, "
                f"diverged={int(self.diverged.sum())}, eval={has_eval})")

    def final_hparams(self) -> dict[str, np.ndarray]:
        """[M] each slot's hyperparameters at the end: the grid's, or after a policy's last
        layout (population-based training explores them)."""
        if not self.history or not len(self.history["history_steps"]):
            return dict(self.hparams)
        return {k: (self.history[f"history_hp_{k}"][-1] if f"history_hp_{k}" in self.history
                    else v) for k, v in self.hparams.items()}

    def copied(self) -> bool:
        """Whether a policy copied a slot's state into another (population-based training)."""
        if not self.history:
            return False
        parents = self.history["history_parents"]
        return bool(((parents >= 0) & (parents != np.arange(parents.shape[1]))).any())

    def lineage(self, i: int) -> list[Segment]:
        """Slot ``i``'s ancestry: the :class:`Segment` s (steps, slot, parent slot,
        hyperparameters), first to last, whose training led to its final state.

        Without a policy, or when nothing was copied into its line, one segment: the whole
        run in slot ``i`` with its grid values. With population-based training a segment
        starts at each exploit step where the line continued from another slot.

        Example:
            >>> import jax, jax.numpy as jnp, jaxlr
            >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
            >>> res = jaxlr.sweep(lambda k: jnp.zeros(1), lambda w, b: jnp.mean(
            ...     (b[0] @ w - 2.0 * b[0][:, 0]) ** 2), (x,), lambda hp: jaxlr.sgd(hp["lr"]),
            ...     jaxlr.grid(lr=[0.001, 0.3]), steps=20, batch_size=8, progress=False,
            ...     policy=jaxlr.population_based(10, fraction=0.5, resample=0.0))
            >>> [(s.start, s.end, s.slot) for s in res.lineage(0)]
            [(0, 10, 1), (10, 20, 0)]

        References:
            Jaderberg et al. 2017, the lineages of PBT's Fig. 5:
            https://arxiv.org/abs/1711.09846
        """
        if not 0 <= i < len(self):
            raise ValueError(f"member index must be in [0, {len(self)}), got {i}")
        return lineage(self.history, self.hparams, self.loss.shape[1], i)

    def schedule(self, i: int, axis: str = "lr"):
        r"""The trajectory of ``axis`` that slot ``i``'s lineage followed, as a schedule.

        For an LR axis (``lr``, ``learning_rate``) it is the LR each update of the lineage
        used, as recorded (``self.lr`` of each segment's slot): so a grid axis that scales a
        schedule gives that schedule's shape times the explored values; when the optimizer
        recorded no LR, and for other axes, it is the axis' value, piecewise constant over the
        segments. Retraining one member with it as a fixed schedule replays the lineage
        (exactly so when every slot shared one seed, hence one data order).

        Args:
            i: the slot.
            axis: a grid axis.

        Returns:
            A :func:`jaxlr.tabulated` schedule ``step -> value`` over the run's steps.

        Example:
            >>> import jax, jax.numpy as jnp, jaxlr
            >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
            >>> res = jaxlr.sweep(lambda k: jnp.zeros(1), lambda w, b: jnp.mean(
            ...     (b[0] @ w - 2.0 * b[0][:, 0]) ** 2), (x,), lambda hp: jaxlr.sgd(hp["lr"]),
            ...     jaxlr.grid(lr=[0.001, 0.3]), steps=20, batch_size=8, progress=False,
            ...     policy=jaxlr.population_based(10, fraction=0.5, resample=0.0))
            >>> res.lineage(0)[1].parent  # slot 0 (lr 0.001) copied slot 1 (lr 0.3) at step 10
            1
            >>> lr = res.schedule(0)  # 0.3 x 1.25 is clipped to the grid's largest LR, 0.3
            >>> round(float(lr(0)), 6), round(float(lr(15)), 6)
            (0.3, 0.3)

        References:
            Jaderberg et al. 2017 (PBT discovers hyperparameter schedules):
            https://arxiv.org/abs/1711.09846
        """
        from jaxlr._optim import tabulated

        if axis not in self.hparams or axis == "seed":
            raise ValueError(f"axis must be one of the grid's axes "
                             f"{[k for k in self.hparams if k != 'seed']}, got axis={axis!r}")
        segments, steps = self.lineage(i), self.loss.shape[1]
        values = None
        if axis in LR_AXES:
            values = trajectory(segments, axis, self.lr, steps)
            if not np.isfinite(values).all():  # no recorded LR (or after a divergence)
                values = None
        if values is None:
            values = trajectory(segments, axis, None, steps)
        return tabulated(values)

    def final_loss(self) -> np.ndarray:
        """[M] mean training loss over the last 10% of steps (inf for diverged members)."""
        value = tail_mean(self.loss)
        return np.where(self.diverged | ~np.isfinite(value), np.inf, value)

    def metric(self, by: str = "loss") -> np.ndarray:
        """[M] final value of ``by``: "loss" (see :meth:`final_loss`), "eval" (last eval loss)
        or the name of an aux metric recorded at eval (e.g. "accuracy")."""
        if by == "loss":
            return self.final_loss()
        if self.eval is None:
            raise ValueError(f"by={by!r} needs evaluations: pass eval_data= to jaxlr.sweep, or "
                             "use by='loss'")
        if by == "eval":
            return self.eval[:, -1]
        if by not in self.eval_aux:
            raise ValueError(f"by must be 'loss', 'eval' or one of the aux metrics "
                             f"{sorted(self.eval_aux)}, got by={by!r}")
        return self.eval_aux[by][:, -1]

    def at_stop(self, by: str = "loss") -> np.ndarray:
        """Each member's final ``by``, or where successive halving stopped it, its value there.

        :meth:`metric`, except that a member pruned at step :math:`r` (``pruned_at``) gets the
        value it had at its rung: for "eval" or an aux metric its evaluation at step
        :math:`r` (the one it was ranked by), for "loss" the mean of the last 10% of its
        :math:`r` steps. What ``table()`` and ``plot()`` show for a pruned member (marked as
        pruned); never used to rank: a pruned member is never :meth:`best`.

        Args:
            by: "loss", "eval" or an aux metric name, as :meth:`metric`.

        Returns:
            [M] float64 array.

        Example:
            >>> import numpy as np, jaxlr
            >>> res = jaxlr.SweepResult(
            ...     grid=jaxlr.grid(lr=[0.1, 1.0]), loss=np.ones((2, 20), np.float32),
            ...     lr=np.full((2, 20), np.nan, np.float32),
            ...     eval=np.array([[0.9, np.nan], [0.5, 0.2]], np.float32), eval_aux={},
            ...     eval_steps=np.array([10, 20]), diverged=np.zeros(2, bool),
            ...     diverged_at=np.full(2, -1), pruned_at=np.array([10, -1]))
            >>> final, shown = res.metric("eval"), res.at_stop("eval")
            >>> np.round(final.astype(float), 3).tolist(), np.round(shown, 3).tolist()
            ([nan, 0.2], [0.9, 0.2])

        References:
            Successive halving's rungs: Jamieson & Talwalkar 2016,
            https://arxiv.org/abs/1502.07943
        """
        value = np.array(self.metric(by), dtype=np.float64)
        for i in np.flatnonzero(np.asarray(self.pruned_at) >= 0):
            stop = int(self.pruned_at[i])
            if by == "loss":
                value[i] = tail_mean(self.loss[i:i + 1, :stop])[0]
            else:
                curve = self.eval if by == "eval" else self.eval_aux[by]
                at = np.flatnonzero(np.asarray(self.eval_steps) == stop)
                value[i] = curve[i, at[0]] if at.size else np.nan
        return value

    def best(self, by: str | None = None, over: str | None = None, mode: str = "min") -> Best:
        """The recommended setting: the best by ``by``, ignoring diverged members.

        With seeds in the grid (a ``seed`` axis), the default ranks each setting by its mean
        over its seeds (``over="seed"``; a setting with a diverged seed is never the best):
        the setting a reproduction would get, not the luckiest seed. It is the same setting
        the CLI recommends, ``table()`` and the plots mark and ``summary.json`` records.
        ``over="member"`` ranks single members instead. After population-based training the
        slots are ranked alone (their hyperparameters changed along the run).

        Args:
            by: "eval" (default when eval data was given), "loss", or an aux metric name.
            over: None (default: "seed" when the grid has a seed axis and no slot was copied
                by population-based training, else "member"), "seed" or "member".
            mode: "min" or "max" (e.g. ``by="accuracy", mode="max"``).

        Returns:
            A :class:`Best` (index, hparams, value, std, params); ranked over seeds: the best
            seed of the best setting, the mean and std over its seeds, hparams without
            ``seed``. After population-based training, ``hparams`` are the slot's final ones
            (:meth:`final_hparams`).
        """
        by = by or ("eval" if self.eval is not None else "loss")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got mode={mode!r}")
        if over not in (None, "seed", "member"):
            raise ValueError(f"over must be None, 'seed' or 'member', got over={over!r}")
        if over is None:
            over = "seed" if "seed" in self.hparams and not self.copied() else "member"
        sign = 1.0 if mode == "min" else -1.0
        score = sign * self.metric(by).astype(np.float64)
        score = np.where(self.diverged | ~np.isfinite(score), np.inf, score)
        if np.all(np.isinf(score)):
            raise ValueError("every member diverged (or has no finite metric): there is no best; "
                             "lower the learning rates")
        if over == "member":
            i = int(np.argmin(score))
            return Best(i, Grid(self.final_hparams())[i], float(sign * score[i]), 0.0,
                        self._params_or_none(i))
        if self.copied():
            raise ValueError("over='seed' groups members by their grid setting, but population-"
                             "based training changed the slots' hyperparameters: use over=None "
                             "(the best slot, with its final hparams and its lineage)")
        groups = self.by_setting()
        means = [np.mean(score[idx]) for idx in groups.values()]
        g = int(np.argmin(means))
        idx = list(groups.values())[g]
        i = int(idx[np.argmin(score[idx])])
        hp = {k: v for k, v in self.grid[i].items() if k != "seed"}
        return Best(i, hp, float(sign * means[g]), float(np.std(score[idx])),
                    self._params_or_none(i))

    def _params_or_none(self, i: int) -> chex.ArrayTree | nnx.Module | None:
        try:
            return self.params(i)
        except ValueError:  # no trained state (e.g. a loaded run without a checkpoint)
            return None

    def by_setting(self) -> dict[tuple, np.ndarray]:
        """The members of each hyperparameter setting, to aggregate over seeds.

        A setting is a member's values of every grid column but ``seed``, in column order;
        settings come in grid order, members in index order (what :meth:`best` with
        ``over="seed"`` and :meth:`table` average over).

        Returns:
            dict setting tuple -> int array of member indices.

        Example:
            >>> import jax, jax.numpy as jnp, jaxlr
            >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
            >>> res = jaxlr.sweep(lambda k: jnp.zeros(1), lambda w, b: jnp.mean(
            ...     (b[0] @ w - 2.0 * b[0][:, 0]) ** 2), (x,), lambda hp: jaxlr.sgd(hp["lr"]),
            ...     jaxlr.grid(lr=[0.1, 0.5], seed=2), steps=5, batch_size=8, progress=False)
            >>> {round(lr, 3): idx.tolist() for (lr,), idx in res.by_setting().items()}
            {0.1: [0, 1], 0.5: [2, 3]}

        References:
            Seeds as repeated measurements of one setting: Bouthillier et al. 2021, "Accounting
            for variance in machine learning benchmarks", https://arxiv.org/abs/2103.03098
        """
        names = [k for k in self.hparams if k != "seed"]
        keys = [tuple(self.hparams[k][i].item() for k in names) for i in range(len(self))]
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        return {k: np.asarray(v) for k, v in groups.items()}

    def stacked(self) -> tuple[optax.Params, chex.ArrayTree]:
        """Every member's trained state, stacked on the member axis, as the sweep left it.

        Returns:
            ``(params, rest)``, every leaf [M, ...]. ``params`` are the trained leaves (the
            pytree ``init`` returned; linen's ``"params"`` collection; an ``nnx.State`` of the
            ``nnx.Param`` variables). ``rest`` is the rest of the model's state (linen's other
            collections; NNX BatchNorm statistics and RNG streams; ``()`` for a params pytree).
            The arrays stay on the sweep's devices, sharded over the member axis when it ran
            on several (when M is not a multiple of the device count, dropping the padding
            rows gathers them onto every device). A diverged member holds its last good
            state, a pruned one its state at the rung. :meth:`params` assembles one member
            into a usable model.

        Example:
            >>> import jax, jax.numpy as jnp, jaxlr
            >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
            >>> res = jaxlr.sweep(lambda k: {"w": jnp.zeros(1)}, lambda p, b: jnp.mean(
            ...     (b[0] @ p["w"] - 2.0 * b[0][:, 0]) ** 2), (x,),
            ...     lambda hp: jaxlr.sgd(hp["lr"]), jaxlr.grid(lr=[0.1, 0.5, 1.0]), steps=5,
            ...     batch_size=8, progress=False)
            >>> params, rest = res.stacked()
            >>> params["w"].shape, rest
            ((3, 1), ())

        References:
            The stacked ("batched") pytree layout of ``jax.vmap``:
            https://docs.jax.dev/en/latest/automatic-vectorization.html
        """
        self._ensure_state()
        m = len(self)  # the sweep pads the member axis to a multiple of the device count
        return jax.tree.map(lambda x: x if x.shape[0] == m else x[:m], self._state)

    def params(self, i: int) -> chex.ArrayTree | nnx.Module:
        """The trained params (or NNX module / linen variables) of member ``i``, usable as an
        ordinary model (a diverged member's last good state)."""
        if not 0 <= i < len(self):
            raise ValueError(f"member index must be in [0, {len(self)}), got {i}")
        self._ensure_state()
        params, rest = jax.tree.map(lambda x: x[i], self._state)
        return self._assemble(params, rest)

    def table(self) -> str:
        """A printable summary, the same text ``jaxlr sweep`` prints: one row per setting
        (mean ± std over its seeds that did not diverge, its diagnosis; ``*`` marks the
        recommended setting, :meth:`best`'s), then the recommendation with its grid edge and
        its LR sweep's sensitivity (:meth:`sensitivity`). After population-based training,
        one row per slot with its start and end hyperparameters.

        Returns:
            The text (``jaxlr._records.format_table`` and ``format_recommendation`` of
            ``jaxlr._records.summarize``: one renderer for the API and the CLI).

        Example:
            >>> import jax.numpy as jnp, jaxlr
            >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
            >>> res = jaxlr.sweep(lambda k: jnp.zeros(1), lambda w, b: jnp.mean(
            ...     (b[0] @ w - 2.0 * b[0][:, 0]) ** 2), (x,), lambda hp: jaxlr.sgd(hp["lr"]),
            ...     jaxlr.grid(lr=[0.01, 0.1, 0.5]), steps=20, batch_size=8, progress=False)
            >>> print(res.table().splitlines()[0].split())
            ['lr', 'final', 'loss', 'diverged', 'diagnosis']
        """
        from jaxlr import _records

        return _records.result_table(self)

    def compare(self, axis: str = "optimizer", by: str | None = None, mode: str = "min",
                text: bool = False) -> list[Comparison] | str:
        r"""Each category of ``axis`` side by side: tuned optimizers and LR-free methods.

        Per category (e.g. each optimizer of ``grid(optimizer=[...], lr=[...])``): its best
        setting by the mean over seeds of ``by`` (a diverged seed counts as inf), the LR its
        updates used at the end (for an LR-free method its effective step size, e.g.
        Prodigy's :math:`d\,\eta`), its basin (the ``lr`` values whose mean is within 10% of
        its best) and its gap to the best category, :math:`v/v^\star - 1`.

        Args:
            axis: the categorical (or any) grid axis to compare along.
            by: "eval" (default when there is eval data), "loss" or an aux metric.
            mode: "min" or "max".
            text: return the printable lines instead of the rows.

        Returns:
            A list of ``jaxlr._sweep.compare.Comparison`` (or the text).

        Example:
            >>> import jax, jax.numpy as jnp, jaxlr
            >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
            >>> opt = lambda hp: {"sgd": jaxlr.sgd, "adam": jaxlr.adam}[hp["optimizer"]](
            ...     hp["lr"])
            >>> res = jaxlr.sweep(lambda k: jnp.zeros(1), lambda w, b: jnp.mean(
            ...     (b[0] @ w - 2.0 * b[0][:, 0]) ** 2), (x,), opt,
            ...     jaxlr.grid(optimizer=["sgd", "adam"], lr=[0.1, 0.5]), steps=20,
            ...     batch_size=8, progress=False)
            >>> [(c.category, c.setting["lr"], c.basin) for c in res.compare(by="loss")]
            [('sgd', 0.5, (0.5, 0.5)), ('adam', 0.5, (0.5, 0.5))]

        References:
            Defazio & Mishchenko 2023 (D-Adaptation) and Mishchenko & Defazio 2023 (Prodigy)
            compare LR-free methods with tuned baselines this way:
            https://arxiv.org/abs/2301.07733, https://arxiv.org/abs/2306.06101
        """
        by = by or ("eval" if self.eval is not None else "loss")
        rows = compare(self, axis, by, mode)
        return format_comparison(rows, by) if text else rows

    def diagnose(self) -> list:
        """One :class:`jaxlr.Diagnosis` per member (diverged, oscillating, too_slow,
        schedule_too_aggressive or healthy, with the evidence and the fix), judged with the
        sweep's context: members differing only in LR and seed are compared. See
        :func:`jaxlr._diagnose.diagnose_sweep`."""
        from jaxlr._diagnose import diagnose_sweep

        return diagnose_sweep(self)

    def plot(self, **kwargs: Any):
        """The sweep's figure (loss curves by LR, final metric vs LR, LR schedules): see
        :func:`jaxlr._plot.plot_sweep` (needs ``pip install jaxlr[plot]``)."""
        from jaxlr._plot import plot_sweep

        return plot_sweep(self, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain numpy arrays of everything measured (no trained params)."""
        out = {"hparams": dict(self.hparams), "loss": self.loss, "lr": self.lr,
               "diverged": self.diverged, "diverged_at": self.diverged_at,
               "pruned_at": self.pruned_at, "eval_steps": self.eval_steps}
        if self.eval is not None:
            out["eval"] = self.eval
            out.update({f"eval_{k}": v for k, v in self.eval_aux.items()})
        return out

    def save(self, directory: str | os.PathLike) -> dict[str, Any]:
        """Write ``results.npz`` (every curve, evaluation and divergence; no trained params)
        and ``summary.json`` (the table rows, the best setting, each member's diagnosis) into
        ``directory``, plus ``sweep.png`` when matplotlib is installed; read it back with
        :func:`jaxlr.load`. Returns the summary (see :func:`jaxlr._records.save`)."""
        from jaxlr._records import save

        return save(self, directory)

    def sensitivity(self, by: str | None = None, *, within: float = 0.1, level: float = 0.9,
                    n_boot: int = 1000, seed: int = 0) -> list:
        r"""How much the result depends on the LR, per setting of the other grid axes.

        For each setting (``seed`` and the LR aside): the LR sensitivity of Wortsman et al.
        2023 (§2.2), :math:`\mathbb{E}_\eta[\min(\ell(\eta), \ell_0)] - \ell^*` over the LRs
        tried (:math:`\ell` the mean final metric over seeds, a diverged seed counting
        :math:`\ell_0`, the loss at initialization); the best LR (``best(over="seed")``'s) and
        whether it is the smallest or largest tried; the basin (the contiguous LRs whose mean
        is within ``within`` of the best, and its width in decades); the divergence boundary
        (the smallest LR at which a seed diverged); and a seeded bootstrap interval over seeds
        of the best LR. See :func:`jaxlr._diagnose.lr_sensitivity` for the exact rules.

        Args:
            by: "eval" (default with eval data) or "loss".
            within: the basin's relative tolerance (0.1: within 10% of the best).
            level: the bootstrap interval's nominal coverage.
            n_boot: bootstrap draws.
            seed: the bootstrap's RNG seed (the result is deterministic).

        Returns:
            A list of :class:`jaxlr._diagnose.Sensitivity` (``setting``, ``lrs``, ``loss``,
            ``sensitivity``, ``best_lr``, ``edge``, ``basin``, ``basin_decades``,
            ``boundary``, ``interval``, ...), one per setting of the other axes, in grid order.

        Example:
            >>> import jax, jax.numpy as jnp, jaxlr
            >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
            >>> res = jaxlr.sweep(lambda k: jnp.zeros(1), lambda w, b: jnp.mean(
            ...     (b[0] @ w - 2.0 * b[0][:, 0]) ** 2), (x,), lambda hp: jaxlr.sgd(hp["lr"]),
            ...     jaxlr.grid(lr=[0.01, 0.1, 1.0, 10.0], seed=2), steps=30, batch_size=8,
            ...     progress=False)
            >>> s, = res.sensitivity()
            >>> s.best_lr, s.edge, s.boundary  # 10.0 diverges; 1.0 is the largest that does not
            (1.0, 0, 10.0)

        References:
            M. Wortsman et al., Small-scale proxies for large-scale Transformer training
            instabilities (2023), §2.2: https://arxiv.org/abs/2309.14322 ; the Deep Learning
            Tuning Playbook (the best LR not at the grid's edge):
            https://github.com/google-research/tuning_playbook
        """
        from jaxlr._diagnose import lr_sensitivity

        return lr_sensitivity(self, by=by, within=within, level=level, n_boot=n_boot, seed=seed)


def _summary(params: chex.ArrayTree | nnx.Module | None) -> str:
    """``<type: n leaves, k values>`` of a params pytree or model (None stays None)."""
    if params is None:
        return "None"
    leaves = [x for x in jax.tree.leaves(params) if hasattr(x, "size")]
    size = sum(int(x.size) for x in leaves)
    return f"<{type(params).__name__}: {len(leaves)} arrays, {size} values>"


