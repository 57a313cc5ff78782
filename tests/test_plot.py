"""Figures rendered to PNG headless: artists (lines, markers, labels) are checked, not pixels."""

import os
import subprocess
import sys
import textwrap
import types
import warnings

import numpy as np
import pytest

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import jaxlr  # noqa: E402
from jaxlr._plot import plot_finder, plot_sweep  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# tiny regression data: 96 examples, 4 features (as in test_sweep)
X = jax.random.normal(jax.random.key(0), (96, 4))
Y = X @ jnp.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * jax.random.normal(jax.random.key(1), (96,))
DATA = (X, Y)


def init_linear(key):
    return {"w": 0.1 * jax.random.normal(key, (4,)), "b": jnp.zeros(())}


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def run(grid, optimizer, **kw):
    return jaxlr.sweep(init_linear, mse, DATA, optimizer, grid, steps=20, batch_size=16,
                       progress=False, **kw)


LRS = [0.01, 0.1, 3.0]  # 3.0 diverges (at step 2) for plain SGD here


@pytest.fixture(scope="module")
def constant_lr():
    """M = 6: three constant LRs x two seeds, the largest diverges."""
    res = run(jaxlr.grid(lr=LRS, seed=2), lambda hp: jaxlr.sgd(hp["lr"]))
    assert res.diverged.tolist() == [False] * 4 + [True] * 2
    return res


@pytest.fixture(scope="module")
def warmup_lr():
    """M = 4: two LRs x warm-up 0 or 10 steps: the LR curves differ in shape."""
    opt = lambda hp: jaxlr.sgd(jaxlr.warmup(jaxlr.constant(hp["lr"]), hp["warmup_steps"]))
    return run(jaxlr.grid(lr=[0.03, 0.3], warmup_steps=[0, 10]), opt)


def panels(fig):
    return [a for a in fig.axes if a.get_label() != "<colorbar>"]


def colorbar_axes(fig):
    return [a for a in fig.axes if a.get_label() == "<colorbar>"]


def by_gid(ax, gid):
    return [line for line in ax.lines if line.get_gid() == gid]


def check_png(path, width_px):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 20_000, f"suspiciously small PNG: {len(data)} bytes"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert abs(width - width_px) <= 2 and height > 300


# --- sweep figure -----------------------------------------------------------------------------
def test_sweep_figure_saves_a_png(constant_lr, tmp_path):
    path = tmp_path / "sweep.png"
    fig = plot_sweep(constant_lr, path=path)
    assert isinstance(fig, Figure)
    check_png(path, width_px=round(fig.get_figwidth() * 120))


def test_loss_lines_one_per_member_diverged_dashed_and_marked(constant_lr):
    res = constant_lr
    ax = panels(plot_sweep(res))[0]
    lines = by_gid(ax, "loss")
    assert len(lines) == len(res) == 6
    assert len([ln for ln in ax.lines if ln.get_marker() in ("None", "", None)]) == len(res)
    for i, line in enumerate(lines):
        assert line.get_linestyle() == ("--" if res.diverged[i] else "-")
        np.testing.assert_array_equal(line.get_ydata(), res.loss[i])
    (marks,) = by_gid(ax, "diverged")
    assert marks.get_marker() == "x" and marks.get_linestyle() == "None"
    top = ax.get_ylim()[1]
    want = []
    for i in np.flatnonzero(res.diverged):
        d = int(res.diverged_at[i])
        y = res.loss[i, d] if np.isfinite(res.loss[i, d]) else res.loss[i, :d][-1]
        want.append((d, min(float(y), top)))
    got = list(zip(marks.get_xdata(), marks.get_ydata()))
    np.testing.assert_allclose(sorted(got), sorted(want), rtol=1e-6)
    assert [x for x, _ in got] == [2, 2]
    assert ax.get_xlabel() == "step" and ax.get_yscale() == "log"
    # the cap keeps the blow-up from flattening the healthy curves: < 4 decades shown
    lo, hi = ax.get_ylim()
    assert hi / lo < 1e7


def test_colorbar_is_learning_rate_on_a_log_scale(constant_lr):
    fig = plot_sweep(constant_lr)
    (cax,) = colorbar_axes(fig)
    assert cax.get_ylabel() == "learning rate"
    assert cax.get_yscale() == "log"
    # line colours follow the LR: equal LR -> equal colour, different LR -> different colour
    colours = [line.get_color() for line in by_gid(panels(fig)[0], "loss")]
    assert colours[0] == colours[1] and colours[0] != colours[2] != colours[4]


def test_each_category_has_a_colour_family_shaded_by_the_lr():
    """optimizer=[sgd, adam] x 3 LRs: sgd's lines are Blues, adam's Oranges, at the shade of
    their LR on the log colour scale (written out: lowest LR 0.35, highest 0.95 of the map);
    the legend names the families; the metric panel draws each category's series in its
    family."""
    opt = lambda hp: {"sgd": jaxlr.sgd, "adam": jaxlr.adam}[hp["optimizer"]](hp["lr"])
    res = run(jaxlr.grid(optimizer=["sgd", "adam"], lr=[0.001, 0.01, 0.1]), opt)
    fig = plot_sweep(res)
    loss_ax, metric_ax = panels(fig)[:2]
    colours = [line.get_color() for line in by_gid(loss_ax, "loss")]
    for i, (family, x) in enumerate([("Blues", 0.35), ("Blues", 0.65), ("Blues", 0.95),
                                     ("Oranges", 0.35), ("Oranges", 0.65), ("Oranges", 0.95)]):
        np.testing.assert_allclose(mpl.colors.to_rgba(colours[i]), mpl.colormaps[family](x),
                                   atol=1e-6)
    legend = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert legend == ["optimizer=sgd", "optimizer=adam"]
    (cax,) = colorbar_axes(fig)
    assert cax.get_ylabel() == "learning rate (shade; colour: optimizer)"
    series = [c for c in metric_ax.containers if isinstance(c, ErrorbarContainer)]
    got = [mpl.colors.to_rgba(c.lines[0].get_color()) for c in series]
    want = [mpl.colormaps[f](0.35 + 0.6 * 0.75) for f in ("Blues", "Oranges")]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_metric_panel_log_x_errorbar_per_lr_and_diverged_on_top(constant_lr):
    res = constant_lr
    ax = panels(plot_sweep(res))[1]
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "learning rate"
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1 and bars[0].has_yerr
    data_line = bars[0].lines[0]
    np.testing.assert_allclose(data_line.get_xdata(), LRS, rtol=1e-6)  # one point per LR
    metric = res.metric("loss")
    want = [metric[:2].mean(), metric[2:4].mean(), np.nan]  # the diverged LR has no point
    np.testing.assert_allclose(data_line.get_ydata(), want, rtol=1e-6)
    # all seeds of lr=3 diverged: a marker on the top edge (axes coordinates) at x=3
    (top,) = by_gid(ax, "diverged")
    np.testing.assert_allclose(top.get_xdata(), [3.0])
    assert 0.95 <= top.get_ydata()[0] <= 1.0 and top.get_transform() == ax.get_xaxis_transform()
    assert "mean ± std over 2 seeds" in ax.get_title()


@pytest.mark.parametrize("by", ["loss", None])
def test_best_point_is_where_best_says(constant_lr, by):
    res = constant_lr
    ax = panels(plot_sweep(res, by=by))[1]
    best = res.best(by="loss", over="seed")  # no eval data: the default is "loss"
    (star,) = by_gid(ax, "best")
    assert star.get_marker() == "*"
    np.testing.assert_allclose(star.get_xdata(), [best.hparams["lr"]], rtol=1e-6)
    np.testing.assert_allclose(star.get_ydata(), [best.value], rtol=1e-6)
    notes = [t.get_text() for t in ax.texts]
    assert any(f"lr={best.hparams['lr']:.3g}" in t and "best" in t for t in notes)


def test_lr_panel_only_when_schedules_differ(constant_lr, warmup_lr, tmp_path):
    assert len(panels(plot_sweep(constant_lr))) == 2  # constant LRs: the colour says it all
    fig = plot_sweep(warmup_lr, path=tmp_path / "warmup.png")
    check_png(tmp_path / "warmup.png", width_px=round(fig.get_figwidth() * 120))
    axes = panels(fig)
    assert len(axes) == 3
    lr_ax = axes[2]
    lines = by_gid(lr_ax, "lr")
    assert len(lines) == len(warmup_lr) == 4
    for i, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_ydata(), warmup_lr.lr[i])
    assert lr_ax.get_yscale() == "log" and lr_ax.get_ylabel() == "learning rate"
    # the metric panel has one series per warmup_steps value, each with one point per LR
    bars = [c for c in axes[1].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    assert all(len(b.lines[0].get_xdata()) == 2 for b in bars)
    labels = {t.get_text() for t in axes[1].get_legend().get_texts()}
    assert {"warmup_steps=0", "warmup_steps=10"} <= labels


def test_lr_scaled_copies_of_one_schedule_do_not_differ():
    from jaxlr._plot.plot import _schedules_differ

    base = np.concatenate([np.linspace(0, 1, 5, endpoint=False),  # warm-up, then cosine decay
                           0.5 * (1 + np.cos(np.pi * np.arange(15) / 15))])
    assert not _schedules_differ(np.stack([1e-3 * base, 1e-1 * base, 3.0 * base]))
    assert _schedules_differ(np.stack([base, np.roll(base, 3)]))
    assert not _schedules_differ(np.full((3, 20), np.nan))  # plain optax: no LR recorded
    cut = np.stack([base, base.copy()])
    cut[1, 8:] = np.nan  # a diverged member's LR stops: compared on its finite steps only
    assert not _schedules_differ(cut)


def test_without_lr_axis_colour_by_first_numeric_axis_and_default_to_eval(tmp_path):
    res = run(jaxlr.grid(momentum=[0.0, 0.5, 0.9]),
              lambda hp: jaxlr.sgd(0.05, momentum=hp["momentum"]), eval_data=DATA)
    fig = plot_sweep(res, path=tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:8] == PNG_MAGIC
    (cax,) = colorbar_axes(fig)
    assert "momentum" in cax.get_ylabel() and "no lr axis" in cax.get_ylabel()
    ax = panels(fig)[1]
    assert "eval" in ax.get_ylabel()
    assert ax.get_xscale() == "linear"  # momentum 0 cannot go on a log axis
    (star,) = by_gid(ax, "best")
    best = res.best()  # eval by default
    np.testing.assert_allclose(star.get_xdata(), [best.hparams["momentum"]], rtol=1e-6)
    np.testing.assert_allclose(star.get_ydata(), [res.eval[best.index, -1]], rtol=1e-6)


# --- finder figure ----------------------------------------------------------------------------
def finder_standin(seeds=3, steps=80):
    """A FinderResult-like object: loss falls, has a valley near 1e-2, then blows up."""
    lrs = np.geomspace(1e-6, 10.0, steps)
    u = np.log10(lrs)
    curve = 2.0 - 1.5 / (1.0 + np.exp(-2.5 * (u + 3.5))) + np.exp(3.0 * (u + 1.0))
    rng = np.random.default_rng(0)
    losses = curve + 0.05 * rng.standard_normal((seeds, steps))
    beta = 0.9
    smoothed = np.empty_like(losses)
    avg = np.zeros(seeds)
    for t in range(steps):
        avg = beta * avg + (1 - beta) * losses[:, t]
        smoothed[:, t] = avg / (1 - beta ** (t + 1))
    diverged_at = np.full(seeds, -1)
    for s in range(seeds):
        blown = np.flatnonzero(losses[s] > 30 * smoothed[s].min())
        if blown.size:
            diverged_at[s] = blown[0] + s  # seeds stop at different steps
            losses[s, diverged_at[s] + 1:] = np.nan
            smoothed[s, diverged_at[s] + 1:] = np.nan
    # suggestions read off the mean smoothed curve (roughly as a finder would)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(smoothed, axis=0)
    i_min = int(np.nanargmin(mean))
    i_steep = int(np.argmin(np.gradient(mean[: i_min + 1], u[: i_min + 1])))
    suggestions = {"valley": float(np.sqrt(lrs[i_steep] * lrs[i_min])),
                   "steepest": float(lrs[i_steep]), "minimum": float(lrs[i_min] / 10)}
    return types.SimpleNamespace(lrs=lrs, losses=losses, smoothed=smoothed,
                                 diverged_at=diverged_at, suggestion=suggestions["valley"],
                                 suggestions=suggestions)


@pytest.mark.parametrize("seeds", [1, 3])
def test_finder_figure(tmp_path, seeds):
    found = finder_standin(seeds)
    path = tmp_path / "finder.png"
    fig = plot_finder(found, path=path)
    assert isinstance(fig, Figure)
    check_png(path, width_px=round(fig.get_figwidth() * 120))
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert "learning rate" in ax.get_xlabel()
    # one vertical line per suggestion, at the suggested value, its value in the legend
    vlines = by_gid(ax, "suggestion")
    assert len(vlines) == len(found.suggestions)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for (name, value), line in zip(found.suggestions.items(), vlines):
        np.testing.assert_allclose(line.get_xdata(), [value, value])
        assert any(name in t and f"{value:.2e}" in t for t in legend), legend
    assert any(f"suggestion: {found.suggestion:.2e}" in t for t in legend)
    # raw losses faint, one per seed; smoothed mean bold; band only with several seeds
    raw = by_gid(ax, "raw")
    assert len(raw) == seeds and all(line.get_alpha() < 0.5 for line in raw)
    (smooth,) = by_gid(ax, "smoothed")
    with warnings.catch_warnings():  # all-NaN columns after every seed stopped
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(smooth.get_ydata(), np.nanmean(found.smoothed, axis=0))
    bands = [c for c in ax.collections if c.get_gid() == "band"]
    assert len(bands) == (1 if seeds > 1 else 0)
    # divergence stops marked
    (stops,) = by_gid(ax, "diverged")
    assert len(stops.get_xdata()) == int((found.diverged_at >= 0).sum())


def test_finder_ylim_is_not_flattened_by_the_blow_up():
    found = finder_standin(3)
    ax = plot_finder(found).axes[0]
    lo, hi = ax.get_ylim()
    blow_up = np.nanmax(found.losses)
    start, low = np.nanmean(found.smoothed[:, 0]), np.nanmin(found.smoothed)
    assert lo < low and hi > start  # the whole descent is visible
    assert hi < low + 3 * (start - low) < blow_up  # but not the blow-up
    assert (hi - lo) < 0.25 * (blow_up - low)


# --- lazy import and the missing extra --------------------------------------------------------
def test_missing_matplotlib_says_pip_install_jaxlr_plot(monkeypatch, constant_lr):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    with pytest.raises(ImportError, match=r"pip install jaxlr\[plot\]"):
        plot_sweep(constant_lr)
    with pytest.raises(ImportError, match=r"pip install jaxlr\[plot\]"):
        plot_finder(finder_standin())


def test_matplotlib_imported_lazily_and_pyplot_never():
    code = textwrap.dedent("""
        import sys, types
        import numpy as np
        import jaxlr, jaxlr._plot
        assert "matplotlib" not in sys.modules, "importing jaxlr imported matplotlib"
        lrs = np.geomspace(1e-5, 1.0, 20)
        loss = np.stack([1 + (np.log10(lrs) + 2.5) ** 2])
        r = types.SimpleNamespace(lrs=lrs, losses=loss, smoothed=loss,
                                  diverged_at=np.array([-1]), suggestion=3e-3,
                                  suggestions={"valley": 3e-3, "steepest": 1e-3,
                                               "minimum": 3e-4})
        jaxlr._plot.plot_finder(r)
        assert "matplotlib" in sys.modules
        assert "matplotlib.pyplot" not in sys.modules, "pyplot (global state) was imported"
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr


def test_population_based_figure_shows_each_lineage_and_the_best_one(tmp_path):
    """Panel 2 of a PBT sweep: one LR trajectory per slot (its lineage's, as
    ``result.schedule`` gives it), coloured by the final loss; the best slot's thick and black;
    the exploit steps as vertical lines."""
    res = jaxlr.sweep(init_linear, mse, DATA, lambda hp: jaxlr.sgd(hp["lr"]),
                      jaxlr.grid(lr=[1e-3, 3e-3, 1e-2, 3e-2]), steps=30, batch_size=16,
                      progress=False, policy=jaxlr.population_based(10, seed=2))
    assert res.copied()
    fig = plot_sweep(res, path=tmp_path / "pbt.png")
    ax = panels(fig)[1]
    assert len(panels(fig)) == 2 and "population-based" in ax.get_title()
    best = res.best(by="loss").index
    (thick,) = by_gid(ax, "best_lineage")
    np.testing.assert_allclose(thick.get_ydata(), np.asarray(res.schedule(best)(np.arange(30))))
    others = by_gid(ax, "lineage")
    assert len(others) == 3 and all(line.get_linewidth() < thick.get_linewidth()
                                    for line in others)
    score = res.metric("loss")
    worst = int(np.argmax(score))  # the highest final loss: the top of plasma's scale
    worst_line = next(line for line in others if line.get_label() == f"_slot {worst}")
    assert worst_line.get_color() == mpl.colormaps["plasma"](1.0)
    assert [line.get_xdata()[0] for line in ax.lines if line.get_gid() is None] == [10, 20]
    check_png(tmp_path / "pbt.png", 1440)
