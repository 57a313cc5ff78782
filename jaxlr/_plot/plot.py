"""Figures of a sweep and of an LR range test (the optional ``jaxlr[plot]`` extra).

matplotlib is imported inside the functions only, so ``import jaxlr`` never needs it, and only
its object API is used (``matplotlib.figure.Figure``; no pyplot state, no current figure): the
figures render headless, in threads and in notebooks alike. Each function returns the
``Figure`` and, given ``path``, saves it as PNG.

Why one file of ~650 lines: the sweep figure and the finder figure share their axes, colour
and legend helpers; each panel is a small function.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure

    from jaxlr._sweep import SweepResult

_INSTALL = ("jaxlr's plots need matplotlib, which is not installed; install the extra: "
            "pip install jaxlr[plot]")
_DPI = 120
_CMAP = "viridis"
# one colour family per category of a categorical axis (hue: the category; shade: the LR)
_FAMILIES = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys", "YlOrBr", "PuRd")
_SHADES = (0.35, 0.95)  # the part of a family's map used (its lightest end is too pale)
_DIVERGED = "#d62728"


def _pyplot() -> ModuleType:
    """The ``matplotlib`` package with the submodules the plots use (imported on first call).

    Raises an ``ImportError`` that says ``pip install jaxlr[plot]`` when matplotlib is missing.
    """
    try:
        import matplotlib
        import matplotlib.cm
        import matplotlib.colors
        import matplotlib.figure
        import matplotlib.lines
        import matplotlib.ticker
    except ImportError as err:
        raise ImportError(_INSTALL) from err
    return matplotlib


def _finish(fig: Figure, path: str | os.PathLike | IO[bytes] | None) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=_DPI, format="png")
    return fig


def _fmt(v: float | str) -> str:
    """A compact number as the grid prints it: 0.01, 3e-05, 120 (a category as itself)."""
    return v if isinstance(v, str) else f"{float(v):.3g}"


def _use_log(values: np.ndarray, always: bool = False) -> bool:
    """Log scale for positive values spanning >= a decade (or any positive values if always)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0 or v.min() <= 0:
        return False
    return always or v.max() / v.min() >= 10.0


def _colour_axis(result: SweepResult) -> tuple[str | None, np.ndarray, str]:
    """(axis name, [M] values, label) of the hyperparameter the curves are coloured by:
    "lr" when swept, else the first numeric axis (seed last), else the member index."""
    hp = result.hparams
    if "lr" in hp:
        return "lr", np.asarray(hp["lr"], np.float64), "learning rate"
    numeric = [k for k, v in hp.items() if k != "seed" and np.asarray(v).dtype != np.bool_
               and np.issubdtype(np.asarray(v).dtype, np.number)]
    if "seed" in hp:
        numeric.append("seed")
    if numeric:
        k = numeric[0]
        return k, np.asarray(hp[k], np.float64), f"{k} (the grid has no lr axis)"
    return None, np.arange(len(result.loss), dtype=np.float64), "member (the grid has no lr axis)"


def _categories(hparams: dict) -> tuple[list[str], list[tuple]]:
    """The categorical axes (strings) and each member's category (their values)."""
    names = [k for k, v in hparams.items() if np.asarray(v).dtype.kind in "US"]
    m = len(next(iter(hparams.values()))) if hparams else 0
    return names, [tuple(str(hparams[k][i]) for k in names) for i in range(m)]


def _family_maps(mpl: ModuleType, keys: list[tuple]) -> dict[tuple, Colormap]:
    """A sequential colour map per category, in order of first appearance (cycling)."""
    order = list(dict.fromkeys(keys))
    return {key: mpl.colormaps[_FAMILIES[j % len(_FAMILIES)]] for j, key in enumerate(order)}


def _shade(cmap: Colormap, x: float) -> tuple:
    """``cmap`` at ``x`` in [0, 1], within ``_SHADES``."""
    lo, hi = _SHADES
    return cmap(lo + (hi - lo) * float(np.clip(x, 0.0, 1.0)))


def _norm(mpl: ModuleType, values: np.ndarray, log: bool) -> Normalize:
    lo, hi = float(np.min(values)), float(np.max(values))
    if log:
        if lo == hi:
            lo, hi = lo / 2, hi * 2
        return mpl.colors.LogNorm(vmin=lo, vmax=hi)
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    return mpl.colors.Normalize(vmin=lo, vmax=hi)


def _divergence_points(loss: np.ndarray, diverged_at: np.ndarray) -> tuple[list, list, list]:
    """(members, steps, losses) where each diverged member blew up: the loss recorded at
    ``diverged_at`` if finite, else the last finite loss before it (NaN if there is none)."""
    members, xs, ys = [], [], []
    for i, d in enumerate(np.asarray(diverged_at)):
        if d < 0:
            continue
        d = int(d)
        y = loss[i, d]
        if not np.isfinite(y):
            before = loss[i, :d][np.isfinite(loss[i, :d])]
            y = before[-1] if before.size else np.nan
        members.append(i)
        xs.append(d)
        ys.append(float(y))
    return members, xs, ys


def _loss_limits(loss: np.ndarray, diverged: np.ndarray, log: bool) -> tuple[float, float] | None:
    """y-limits of the loss panel: every finite value, but the top capped (1000x the largest
    first loss on a log axis; the healthy members' max + 2x their range on a linear one) so a
    blow-up does not flatten the other curves."""
    finite = loss[np.isfinite(loss)]
    if finite.size == 0:
        return None
    healthy = loss[~diverged] if (~diverged).any() else loss
    ok = healthy[np.isfinite(healthy)]
    lo, hi = float(finite.min()), float(finite.max())
    if log:
        first = loss[:, 0][np.isfinite(loss[:, 0])]
        cap = 1e3 * float(first.max() if first.size else ok.max())
        return lo / 1.5, min(hi, cap) * 1.5
    span = max(float(ok.max() - ok.min()), 1e-12 * max(1.0, abs(float(ok.max()))))
    top = min(hi, float(ok.max()) + 2.0 * span)
    return lo - 0.05 * (top - lo), top + 0.05 * (top - lo)


def _schedules_differ(lr: np.ndarray, rtol: float = 1e-3) -> bool:
    """True when the members' LR curves differ in shape (not only by a constant factor): each
    curve is divided by its largest |value| and compared, on the steps where both are finite,
    with the member that has the most finite steps. NaN curves (no jaxlr LR state) never differ.
    """
    lr = np.asarray(lr, np.float64)
    finite = np.isfinite(lr)
    if lr.shape[0] < 2 or not finite.any():
        return False
    scale = np.max(np.where(finite, np.abs(lr), 0.0), axis=1)
    shape = lr / np.where(scale > 0, scale, 1.0)[:, None]
    ref = int(np.argmax(finite.sum(axis=1)))
    for i in range(lr.shape[0]):
        both = finite[i] & finite[ref]
        if both.any() and not np.allclose(shape[i, both], shape[ref, both], rtol=rtol, atol=1e-7):
            return True
    return False


def _ticks_at(mpl: ModuleType, axis: Axis, values: np.ndarray, most: int = 8) -> None:
    """Major ticks at the swept values (when there are few), labelled compactly, no minor
    labels: the grid's own values are easier to read than 3x10^-2, 4x10^-2, ..."""
    if 0 < len(values) <= most:
        axis.set_major_locator(mpl.ticker.FixedLocator(values))
        axis.set_major_formatter(mpl.ticker.FixedFormatter([_fmt(v) for v in values]))
        axis.set_minor_formatter(mpl.ticker.NullFormatter())


def _metric_label(by: str) -> str:
    return {"loss": "final training loss (mean of the last 10% of steps)",
            "eval": "final eval loss"}.get(by, f"final {by}")


def plot_sweep(result: SweepResult, *, by: str | None = None, mode: str = "min",
               path: str | os.PathLike | IO[bytes] | None = None) -> Figure:
    """Plot a sweep: loss curves coloured by LR, the final metric vs LR, and the LR schedules.

    Panels, left to right:

    1. **Training loss vs step**, one line per member, coloured by its learning rate on a log
       colour scale (colour bar "learning rate"). Diverged members are dashed and marked with a
       red ``x`` at the step where they diverged (at the loss recorded there, or the last finite
       one); the y-axis (log when every loss is positive) is capped so that a blow-up does not
       flatten the other curves (a marker above the cap sits on the top edge). With a
       categorical axis (e.g. ``optimizer=["adam", "sgd"]``) each category has a colour family
       (Blues, Oranges, Greens, ...: the legend names them) and the LR sets the shade within
       it (the colour bar in grey).
    2. **Final metric vs learning rate** (log x): ``result.metric(by)`` for each setting, the
       mean ± std over seeds as error bars when the grid has a seed axis (diverged seeds left
       out), one series per value of the other grid axes (in its category's colour family).
       The best setting
       (``result.best(by, mode=mode)``: the mean over seeds when seeded) is a gold star,
       annotated with its hyperparameters and value (± std over seeds). Settings whose seeds
       all diverged are red triangles on the top edge (hollow: only some seeds diverged);
       settings successive halving stopped are hollow squares at their value at the rung
       (``result.at_stop(by)``), off the line that joins the settings that ran to the end.
    3. **Learning rate vs step** (log y when the LRs span a decade), only when the members' LR
       curves differ in shape (e.g. a grid over ``warmup_steps``, or a plateau controller); LR
       curves that differ only by the swept factor are already told by the colour.

    After population-based training (``result.copied()``) panel 2 is instead each slot's
    lineage's trajectory of the LR (:meth:`SweepResult.schedule`) vs step, coloured by the
    slot's final metric, the best slot's lineage thick and black, the exploit steps as grey
    vertical lines (and there is no panel 3).

    Without an ``lr`` axis the curves are coloured (and panel 2 is drawn) by the first numeric
    axis, and the colour bar's label says so.

    Args:
        result: a :class:`jaxlr.SweepResult`.
        by: the metric of panel 2: "eval" (the default when the sweep had eval data), "loss"
            (the default otherwise), or the name of an aux metric recorded at eval.
        mode: "min" or "max": what "best" means for ``by`` (e.g. "max" for accuracy).
        path: where to save a PNG (dpi 120); None saves nothing.

    Returns:
        The ``matplotlib.figure.Figure`` (2 or 3 panels and a colour bar).

    Example:
        >>> res = jaxlr.sweep(init, loss_fn, data, lambda hp: jaxlr.adam(hp["lr"]),
        ...                   jaxlr.grid(lr=jnp.logspace(-4, 0, 9), seed=3),
        ...                   steps=500, batch_size=64)  # doctest: +SKIP
        >>> fig = res.plot(path="sweep.png")  # calls plot_sweep(res, path=...)  # doctest: +SKIP
        >>> fig.axes[1].get_xscale()  # doctest: +SKIP
        'log'

    References:
        matplotlib's object API (``Figure``, no pyplot):
        https://matplotlib.org/stable/api/figure_api.html ;
        error bars: https://matplotlib.org/stable/api/_as_gen/matplotlib.axes.Axes.errorbar.html
    """
    mpl = _pyplot()
    by = by or ("eval" if getattr(result, "eval", None) is not None else "loss")
    loss = np.asarray(result.loss, np.float64)
    lr = np.asarray(result.lr, np.float64)
    diverged = np.asarray(result.diverged, bool)
    m, steps = loss.shape
    name, cvalues, clabel = _colour_axis(result)
    log_c = _use_log(cvalues, always=name == "lr")
    norm = _norm(mpl, cvalues, log_c)
    cats, keys = _categories(result.hparams)
    families = _family_maps(mpl, keys) if cats else None
    if families is None:  # viridis without its top 10% (pale yellow is hard to see on white)
        cmap = mpl.colors.ListedColormap(mpl.colormaps[_CMAP](np.linspace(0.0, 0.9, 256)))
        colours = [cmap(norm(v)) for v in cvalues]
    else:  # a colour family per category, shaded by the colour axis (the colour bar: grey)
        cmap = mpl.colors.ListedColormap([_shade(mpl.colormaps["Greys"], x)
                                          for x in np.linspace(0.0, 1.0, 256)])
        colours = [_shade(families[keys[i]], norm(v)) for i, v in enumerate(cvalues)]
        clabel += f" (shade; colour: {', '.join(cats)})"
    copied = bool(getattr(result, "copied", lambda: False)())  # population-based training
    differ = _schedules_differ(lr) and not copied

    n_panels = 3 if differ else 2
    fig = mpl.figure.Figure(figsize=(5.6 * n_panels + 0.8, 4.6), layout="constrained")
    axes = fig.subplots(1, n_panels)
    ax_loss, ax_metric = axes[0], axes[1]
    n_div = int(diverged.sum())
    fig.suptitle(f"jaxlr sweep: {m} member{'s' * (m != 1)}, {steps} steps, {n_div} diverged",
                 fontsize=13)

    # 1. loss curves
    x = np.arange(steps)
    for i in range(m):
        ax_loss.plot(x, loss[i], color=colours[i], lw=1.4, alpha=0.9,
                     ls="--" if diverged[i] else "-", gid="loss", label=f"_member {i}")
    log_loss = _use_log(loss, always=True)
    if log_loss:
        ax_loss.set_yscale("log")
    limits = _loss_limits(loss, diverged, log_loss)
    if limits is not None:
        ax_loss.set_ylim(*limits)
    members, dx, dy = _divergence_points(loss, result.diverged_at)
    if members:
        top = ax_loss.get_ylim()[1]
        dy = [top if not np.isfinite(y) else min(y, top) for y in dy]
        ax_loss.plot(dx, dy, ls="none", marker="x", ms=10, mew=2.2, color=_DIVERGED,
                     clip_on=False, zorder=5, gid="diverged", label="diverged here")
    handles = [] if families is None else [
        mpl.lines.Line2D([], [], color=_shade(f, 0.75), lw=2.5,
                         label=", ".join(f"{n}={v}" for n, v in zip(cats, key, strict=True)))
        for key, f in families.items()]
    if members:
        handles += [mpl.lines.Line2D([], [], color="0.4", ls="--", label="diverged member"),
                    ax_loss.lines[-1]]
    if handles:
        ax_loss.legend(handles=handles, loc="best", fontsize=9)
    ax_loss.set(xlabel="step", ylabel="training loss" + (" (log)" if log_loss else ""),
                title="training loss per member")
    ax_loss.grid(True, alpha=0.3, which="major")
    ax_loss.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    cbar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax_loss, label=clabel,
                        pad=0.02)
    _ticks_at(mpl, cbar.ax.yaxis, np.unique(cvalues))

    # 2. final metric vs the colour axis (population-based: the lineages' trajectories)
    if copied:
        _lineage_panel(mpl, fig, ax_metric, result, by, mode, name or "lr")
        return _finish(fig, path)
    _metric_panel(mpl, ax_metric, result, by, mode, name, clabel, log_c, families)

    # 3. LR schedules
    if differ:
        ax_lr = axes[2]
        for i in range(m):
            ax_lr.plot(x, lr[i], color=colours[i], lw=1.4, ls="--" if diverged[i] else "-",
                       gid="lr", label=f"_member {i}")
        if _use_log(lr[lr > 0]):  # a warm-up from 0 is left out of a log axis
            ax_lr.set_yscale("log", nonpositive="mask")
        ax_lr.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate per member")
        ax_lr.grid(True, alpha=0.3)
    return _finish(fig, path)


def _lineage_panel(mpl: ModuleType, fig: Figure, ax: Axes, result: SweepResult, by: str, mode: str,
                   name: str) -> None:
    """Population-based training: each slot's lineage's trajectory of ``name`` (its
    :meth:`SweepResult.schedule`) vs step, coloured by the slot's final metric; the best
    slot's lineage thick and black."""
    steps = result.loss.shape[1]
    score = np.asarray(result.metric(by), np.float64)
    ok = np.isfinite(score) & ~np.asarray(result.diverged, bool)
    best = result.best(by=by, mode=mode).index
    finite = score[ok] if ok.any() else np.zeros(1)
    norm = mpl.colors.Normalize(float(finite.min()), float(finite.max()) + 1e-12)
    cmap = mpl.colormaps["plasma" if mode == "min" else "plasma_r"]
    x = np.arange(steps)
    paths = {i: np.asarray(result.schedule(i, name)(x), np.float64) for i in range(len(result))}
    for i, y in paths.items():
        if i != best:
            ax.plot(x, y, color=cmap(norm(score[i])) if ok[i] else "0.6", lw=1.2, alpha=0.85,
                    gid="lineage", label=f"_slot {i}")
    ax.plot(x, paths[best], color="black", lw=3.0, gid="best_lineage",
            label=f"best lineage (slot {best}, {_metric_label(by)} {_fmt(score[best])})")
    if _use_log(np.concatenate(list(paths.values())), always=name == "lr"):
        ax.set_yscale("log")
    for s in result.history["history_steps"]:
        ax.axvline(s, color="0.85", lw=0.8, zorder=0)
    ax.set(xlabel="step", ylabel=name, title=f"population-based training: {name} of each "
           "slot's lineage")
    ax.legend(loc="best", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                 label=f"final {_metric_label(by)}", pad=0.02)


def _metric_panel(mpl: ModuleType, ax: Axes, result: SweepResult, by: str, mode: str,
                  name: str | None, xlabel: str, log_x: bool,
                  families: dict | None = None) -> None:
    metric = np.asarray(result.at_stop(by), np.float64)  # pruned: the value at its rung
    pruned = np.asarray(result.pruned_at) >= 0
    bad = np.asarray(result.diverged, bool) | ~np.isfinite(metric)
    hp = result.hparams
    has_seed = "seed" in hp and len(np.unique(hp["seed"])) > 1
    groups = result.by_setting()
    others = [k for k in hp if k not in ("seed", name)]
    xs_all = (np.asarray(hp[name], np.float64) if name not in (None, "seed")
              else None)

    series: dict[tuple, list] = {}
    for g, idx in enumerate(groups.values()):
        key = tuple(hp[k][idx[0]].item() for k in others)
        xv = float(xs_all[idx[0]]) if xs_all is not None else float(g)
        ok = metric[idx][~bad[idx]]
        mean = float(ok.mean()) if ok.size else np.nan
        std = float(ok.std()) if ok.size > 1 else 0.0
        series.setdefault(key, []).append((xv, mean, std, int(bad[idx].sum()), len(idx),
                                           bool(pruned[idx].all())))

    shown: set[str] = set()
    cats = [k for k in others if np.asarray(hp[k]).dtype.kind in "US"]
    per_family: dict[tuple, int] = {}
    for s, (key, rows) in enumerate(series.items()):
        rows.sort()
        xv, mean, std, nbad, n, stopped = (np.asarray(c) for c in zip(*rows))
        label = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(others, key)) or None
        run = ~stopped  # the line joins the settings that ran to the end
        colour = f"C{s % 10}"
        if families is not None:  # its category's family, a darker shade per further series
            cat = tuple(str(key[others.index(k)]) for k in cats)
            nth = per_family[cat] = per_family.get(cat, -1) + 1
            colour = _shade(families[cat], 0.75 - 0.25 * (nth % 3))
        ax.errorbar(xv[run], mean[run], yerr=std[run] if has_seed else None, marker="o", ms=5,
                    capsize=3, lw=1.4, color=colour, label=label, gid="metric")
        cut = stopped & (nbad < n)  # pruned by successive halving: its value at its rung
        if cut.any():
            what = "pruned (value at its rung)"
            ax.plot(xv[cut], mean[cut], ls="none", marker="s", ms=6, mfc="none",
                    mec=colour, mew=1.3, zorder=4, gid="pruned",
                    label=what if what not in shown else f"_{what}")
            shown.add(what)
        for which, fill in ((nbad == n, _DIVERGED), ((nbad > 0) & (nbad < n), "none")):
            if which.any():  # on the top edge, in axes coordinates (y = 0.97)
                what = ("diverged" if not has_seed else "all seeds diverged"
                        if fill != "none" else "some seeds diverged")
                ax.plot(xv[which], np.full(int(which.sum()), 0.97), ls="none", marker="v",
                        ms=10, mfc=fill, mec=_DIVERGED, mew=1.5, clip_on=False, zorder=5,
                        transform=ax.get_xaxis_transform(), gid="diverged",
                        label=what if what not in shown else f"_{what}")
                shown.add(what)

    if log_x:
        ax.set_xscale("log")
    if xs_all is not None:
        _ticks_at(mpl, ax.xaxis, np.unique(xs_all))
    else:  # no numeric axis but seeds (or none): one tick per setting
        names = [", ".join(f"{k}={v}" for k, v in zip(others, key)) or "all members"
                 for key in groups]
        ax.set_xticks(np.arange(len(names)), names)
        ax.set_xlim(-0.5, len(names) - 0.5)
    finite = metric[~bad]
    if _use_log(finite[np.isfinite(finite)]):
        ax.set_yscale("log")
    try:
        best = result.best(by, mode=mode)  # the recommendation (over seeds when seeded)
    except ValueError:
        best = None
        ax.text(0.5, 0.5, "every member diverged:\nlower the learning rates", ha="center",
                va="center", transform=ax.transAxes, color=_DIVERGED, fontsize=11)
    if best is not None:
        bx = float(xs_all[best.index]) if xs_all is not None else float(
            [i for i, idx in enumerate(groups.values()) if best.index in idx][0])
        ax.plot([bx], [best.value], ls="none", marker="*", ms=18, color="gold", mec="black",
                mew=1.0, zorder=6, gid="best", label="_best")  # annotated instead
        spread = f" ± {best.std:.2g}" if has_seed else ""
        what = ", ".join(f"{k}={_fmt(v)}" for k, v in best.hparams.items() if k != "seed")
        # the text goes above a minimum (below a maximum), on the side with more room
        lo, hi = (np.log10(ax.get_xlim()) if log_x else ax.get_xlim())
        pos = ((np.log10(bx) if log_x else bx) - lo) / max(hi - lo, 1e-12)
        ha = "right" if pos > 0.7 else "left" if pos < 0.3 else "center"
        up = 1 if mode == "min" else -1
        ax.annotate(f"best: {what}\n{by} {best.value:.4g}{spread}", (bx, best.value),
                    xytext=(0, 26 * up), textcoords="offset points", ha=ha,
                    va="bottom" if up > 0 else "top", fontsize=9, zorder=7,
                    arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.8},
                    bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.6", "alpha": 0.9})
    seeds = f" (mean ± std over {len(np.unique(hp['seed']))} seeds)" if has_seed else ""
    versus = f" vs {name}" if xs_all is not None else ""
    ax.set(xlabel=xlabel if xs_all is not None else "setting", ylabel=_metric_label(by),
           title=f"final {by}{versus}{seeds}")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # loss vs LR is U-shaped: the top centre is usually free
        ax.legend(fontsize=9, loc="upper center" if mode == "min" else "lower center")


def plot_sensitivity(result: SweepResult, *, by: str | None = None, within: float = 0.1,
                     level: float = 0.9,
                     path: str | os.PathLike | IO[bytes] | None = None) -> Figure:
    r"""Plot a sweep's LR sensitivity: loss vs LR with the basin, the divergence boundary and
    the best LR's bootstrap interval, one series per setting of the other grid axes.

    Drawn on one log-x axes, from :meth:`SweepResult.sensitivity` (``by``, ``within``,
    ``level``), per setting (colour ``C0``, ``C1``, ...):

    - the curve the sensitivity statistic averages, :math:`\min(\ell, \ell_0)` (mean over
      seeds, a diverged seed at :math:`\ell_0`), vs LR: a line with markers (gid ``loss``);
    - :math:`\ell_0`, the loss at initialization: a dashed horizontal line (gid ``loss0``);
    - the basin (LRs whose mean loss is within ``within`` of the best): a shaded span from its
      lowest to its highest LR (gid ``basin``);
    - the best LR (``best(over="seed")``'s): a gold star at its mean loss (gid ``best``), and
      the bootstrap interval over seeds of the best LR: a thick horizontal segment through it
      (gid ``interval``; absent with one seed);
    - the divergence boundary (the smallest LR at which a seed diverged): a red dotted
      vertical line (gid ``boundary``).

    The legend gives each setting's sensitivity and basin width; the title the metric.

    Args:
        result: a :class:`jaxlr.SweepResult` with an ``lr`` axis.
        by: "eval" (default with eval data) or "loss".
        within: the basin's relative tolerance.
        level: the bootstrap interval's nominal coverage.
        path: where to save a PNG (dpi 120); None saves nothing.

    Returns:
        The ``matplotlib.figure.Figure``.

    Example:
        >>> res = jaxlr.sweep(init, loss_fn, data, lambda hp: jaxlr.adam(hp["lr"]),
        ...                   jaxlr.grid(lr=jnp.logspace(-4, 0, 9), seed=3),
        ...                   steps=500, batch_size=64)  # doctest: +SKIP
        >>> fig = plot_sensitivity(res, path="sensitivity.png")  # doctest: +SKIP

    References:
        M. Wortsman et al. 2023, §2.2 (LR vs loss curves, LR sensitivity):
        https://arxiv.org/abs/2309.14322 ; matplotlib's ``axvspan``:
        https://matplotlib.org/stable/api/_as_gen/matplotlib.axes.Axes.axvspan.html
    """
    mpl = _pyplot()
    found = result.sensitivity(by=by, within=within, level=level)
    fig = mpl.figure.Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    for g, s in enumerate(found):
        colour = f"C{g % 10}"
        name = ", ".join(f"{k}={_fmt(v)}" for k, v in s.setting.items())
        sens = "n/a" if not np.isfinite(s.sensitivity) else f"{s.sensitivity:.3g}"
        width = "" if not np.isfinite(s.basin_decades) else (
            f", basin {s.basin_decades:.2g} decades")
        ax.plot(s.lrs, s.loss, marker="o", ms=5, lw=1.6, color=colour, gid="loss",
                label=f"{name + ': ' if name else ''}sensitivity {sens}{width}")
        if np.isfinite(s.loss0):
            ax.axhline(s.loss0, color=colour, ls="--", lw=1.0, alpha=0.7, gid="loss0",
                       label="loss at initialization" if g == 0 else "_loss0")
        if np.isfinite(s.basin[0]):
            ax.axvspan(s.basin[0], s.basin[1], color=colour, alpha=0.15, lw=0, gid="basin",
                       label=(f"basin (within {100 * within:.0f}% of the best)" if g == 0
                              else "_basin"))
        if np.isfinite(s.best_lr):
            if np.isfinite(s.interval[0]):
                ax.plot(list(s.interval), [s.best_loss] * 2, color=colour, lw=4, alpha=0.6,
                        solid_capstyle="butt", gid="interval",
                        label=(f"best LR, {100 * level:.0f}% bootstrap over seeds" if g == 0
                               else "_interval"))
            ax.plot([s.best_lr], [s.best_loss], ls="none", marker="*", ms=16, color="gold",
                    mec="black", zorder=6, gid="best", label="_best")
        if np.isfinite(s.boundary):
            ax.axvline(s.boundary, color=_DIVERGED, ls=":", lw=2, gid="boundary",
                       label="diverges from here" if g == 0 else "_boundary")
    ax.set_xscale("log")
    metric = found[0].by if found else (by or "loss")
    ax.set(xlabel="learning rate (log scale)",
           ylabel=f"min({_metric_label(metric)}, loss at init), mean over seeds",
           title=f"LR sensitivity of the final {metric} (Wortsman et al. 2023)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _finish(fig, path)


def plot_finder(result: Any, *, path: str | os.PathLike | IO[bytes] | None = None) -> Figure:
    """Plot an LR range test: smoothed loss vs learning rate, seed spread, and suggestions.

    Drawn on one log-x axes: the raw loss of every seed (faint), the band between the min and
    max of ``result.smoothed`` over seeds (more than one seed), its mean over seeds (bold: for a
    :class:`jaxlr.FinderResult`, the lag-free smoothing the suggestions read, a centered running
    median then a 3-point mean, so its minimum sits where the raw loss has it; fastai's and
    Lightning's moving average would draw it 1-2 decades late on a 100-step ramp), a red ``x``
    where a seed's divergence stop fired, one dotted vertical line per entry of
    ``result.suggestions`` (``valley``, ``steepest``, ``minimum``; the legend gives each value)
    and a gold star on the curve at ``result.suggestion``. The y-limits show the descent and
    the start of the rise: the top is the smoothed minimum plus 2.5x the drop to it (from
    the 90th percentile of the smoothed curve before the minimum), so the blow-up at the end
    does not flatten the curve; the bottom reaches the lowest raw loss.

    Args:
        result: a :class:`jaxlr.FinderResult` (or any object with ``lrs`` [steps], ``losses``
            and ``smoothed`` [seeds, steps], ``diverged_at`` [seeds], ``suggestion`` and
            ``suggestions``).
        path: where to save a PNG (dpi 120); None saves nothing.

    Returns:
        The ``matplotlib.figure.Figure``.

    Example:
        >>> found = jaxlr.find_lr(model, loss_fn, data, batch_size=64, seeds=3)  # doctest: +SKIP
        >>> fig = found.plot(path="finder.png")  # doctest: +SKIP

    References:
        Smith 2017, LR range test: https://arxiv.org/abs/1506.01186 ;
        matplotlib's object API: https://matplotlib.org/stable/api/figure_api.html
    """
    mpl = _pyplot()
    lrs = np.asarray(result.lrs, np.float64)
    losses = np.atleast_2d(np.asarray(result.losses, np.float64))
    smoothed = np.atleast_2d(np.asarray(result.smoothed, np.float64))
    diverged_at = np.atleast_1d(np.asarray(result.diverged_at))
    seeds = smoothed.shape[0]
    with warnings.catch_warnings():  # all-NaN columns after every seed stopped
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(smoothed, axis=0)  # over the seeds still running (= result.mean)
        band_lo, band_hi = np.nanmin(smoothed, axis=0), np.nanmax(smoothed, axis=0)

    fig = mpl.figure.Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    for s in range(losses.shape[0]):
        ax.plot(lrs, losses[s], color="C0", lw=0.8, alpha=0.25, gid="raw",
                label="raw loss" if s == 0 else "_raw")
    if seeds > 1:
        ax.fill_between(lrs, band_lo, band_hi, color="C0", alpha=0.25, lw=0, gid="band",
                        label=f"min–max over {seeds} seeds")
    ax.plot(lrs, mean, color="C0", lw=2.2, gid="smoothed",
            label="smoothed loss, no lag" + (" (mean over seeds)" if seeds > 1 else ""))
    ax.set_xscale("log")
    limits = _finder_limits(mean, band_lo, losses)
    if limits is not None:
        ax.set_ylim(*limits)
    top = ax.get_ylim()[1]

    stops_x, stops_y = [], []
    for s, d in enumerate(diverged_at):
        if 0 <= d < len(lrs):
            ys = smoothed[s, : int(d) + 1]
            ys = ys[np.isfinite(ys)]
            stops_x.append(lrs[int(d)])
            stops_y.append(min(float(ys[-1]), top) if ys.size else top)
    if stops_x:
        ax.plot(stops_x, stops_y, ls="none", marker="x", ms=10, mew=2, color=_DIVERGED,
                clip_on=False, zorder=5, gid="diverged", label="divergence stop")

    styles = {"valley": "C2", "steepest": "C1", "minimum": "C4"}
    for j, (key, value) in enumerate(dict(result.suggestions).items()):
        if value is None or not np.isfinite(value):
            continue
        ax.axvline(float(value), color=styles.get(key, f"C{5 + j}"), ls=":", lw=2, gid="suggestion",
                   label=f"{key}: {float(value):.2e}")
    sug = getattr(result, "suggestion", None)
    ok = np.isfinite(mean)
    if sug is not None and np.isfinite(sug) and ok.any():
        y = float(np.interp(np.log(sug), np.log(lrs[ok]), mean[ok]))
        ax.plot([float(sug)], [y], ls="none", marker="*", ms=18, color="gold", mec="black",
                zorder=6, gid="suggestion_point", label=f"suggestion: {float(sug):.2e}")
    ax.set(xlabel="learning rate (log scale)", ylabel="loss",
           title="LR range test" + (f" ({seeds} seeds)" if seeds > 1 else ""))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=9, loc="lower left")  # low LRs: the loss is still high there
    return _finish(fig, path)


def _finder_limits(mean: np.ndarray, band_lo: np.ndarray,
                   losses: np.ndarray) -> tuple[float, float] | None:
    """(bottom, top): top = the smoothed minimum + 2.5x the drop to it from the level before
    it (the 90th percentile of the smoothed curve up to its minimum, so an early spike does not
    count); bottom = the lowest raw loss, unless it lies more than 3 drops below the minimum."""
    ok = np.isfinite(mean)
    if not ok.any():
        return None
    i_min = int(np.nanargmin(np.where(ok, mean, np.nan)))
    lo = float(np.nanmin(np.where(np.isfinite(band_lo), band_lo, np.nan)))
    before = mean[: i_min + 1]
    ref = float(np.percentile(before[np.isfinite(before)], 90))
    span = max(ref - lo, 0.05 * abs(lo), 1e-12)
    raw = losses[np.isfinite(losses)]
    bottom = max(min(float(raw.min()), lo), lo - 3 * span) if raw.size else lo
    top = lo + 2.5 * span
    return bottom - 0.04 * (top - bottom), top
