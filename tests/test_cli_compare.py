"""Comparing optimizers and schedules from the command line: ``--optimizer adam,sgd,prodigy``
and ``--schedule constant,cosine`` are categorical grid axes (blocks of one program); each
category gets its own defaults, the LR-free methods run at multiplier 1 beside
the tuned ones, the report compares the categories, and a misuse is one line (exit 2)."""

import contextlib
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlr
from jaxlr._cli import commands as _cli
from jaxlr._cli import main
from jaxlr._cli import tasks as _tasks


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def settings(*argv):
    return _cli.resolve(_cli.build_parser().parse_args(["sweep", *argv]))


def updates(tx, steps=3):
    """The updates of ``tx`` on a fixed quadratic's gradients for a few steps (float32)."""
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    state, out = tx.init(params), []
    for _ in range(steps):
        grads = jax.tree.map(lambda w: 2.0 * w, params)
        u, state = tx.update(grads, state, params)
        params = jax.tree.map(lambda p, d: p + d, params, u)
        out.append(np.asarray(u["w"]))
    return np.stack(out)


def member_tx(run_, i):
    """The optax transform the sweep builds for member ``i`` (concrete hyperparameters)."""
    hp = {k: (v[i].item() if v.dtype.kind in "US" else jnp.asarray(v[i]))
          for k, v in run_.grid.columns.items()}
    return run_.optimizer(hp)


def test_an_optimizer_list_is_a_categorical_axis_and_lr_free_methods_run_at_1():
    s = settings("--optimizer", "adam,sgd,prodigy", "--lr", "1e-3,1e-2", "--seeds", "2")
    assert s["optimizer"] == ["adam", "sgd", "prodigy"]
    r = _tasks.build_task(s, data=False)
    cols = r.grid.columns
    assert list(cols) == ["optimizer", "lr", "seed"]
    assert cols["optimizer"].tolist() == ["adam"] * 4 + ["sgd"] * 4 + ["prodigy"] * 2
    np.testing.assert_allclose(cols["lr"], [1e-3, 1e-3, 1e-2, 1e-2] * 2 + [1.0, 1.0], rtol=1e-6)
    # each member's optimizer is that category's, with its LR
    np.testing.assert_allclose(updates(member_tx(r, 2)), updates(jaxlr.adam(1e-2)), rtol=1e-6)
    np.testing.assert_allclose(updates(member_tx(r, 4)), updates(jaxlr.sgd(1e-3)), rtol=1e-6)
    np.testing.assert_allclose(updates(member_tx(r, 9)),
                               updates(jaxlr.prodigy(1.0, betas=(0.9, 0.999))), rtol=1e-6)
    # alone, an LR-free method's --lr is its multiplier, swept like any LR
    alone = _tasks.build_task(settings("--optimizer", "prodigy", "--lr", "0.5,1"), data=False)
    assert "optimizer" not in alone.grid.columns
    assert alone.grid.columns["lr"].tolist() == [0.5] * 3 + [1.0] * 3


def test_each_category_gets_its_own_defaults():
    """sgd's momentum default is 0, momentum's 0.9; a value given applies to each that reads
    it (adam does not read --momentum)."""
    r = _tasks.build_task(settings("--optimizer", "sgd,momentum", "--lr", "0.1", "--seeds", "1"),
                          data=False)
    np.testing.assert_allclose(updates(member_tx(r, 0)), updates(jaxlr.sgd(0.1)), rtol=1e-6)
    np.testing.assert_allclose(updates(member_tx(r, 1)), updates(jaxlr.sgd(0.1, 0.9)),
                               rtol=1e-6)
    r = _tasks.build_task(settings("--optimizer", "sgd,adam", "--lr", "0.1", "--momentum", "0.5",
                                   "--seeds", "1"), data=False)
    np.testing.assert_allclose(updates(member_tx(r, 0)), updates(jaxlr.sgd(0.1, 0.5)),
                               rtol=1e-6)
    np.testing.assert_allclose(updates(member_tx(r, 1)), updates(jaxlr.adam(0.1)), rtol=1e-6)


def test_a_schedule_list_is_a_categorical_axis():
    s = settings("--schedule", "constant,cosine", "--lr", "0.1", "--seeds", "1", "--steps", "10")
    r = _tasks.build_task(s, data=False)
    assert r.grid.columns["schedule"].tolist() == ["constant", "cosine"]
    lr = [np.asarray(jaxlr.current_lr(member_tx(r, i).init({"w": jnp.zeros(2)})))
          for i in range(2)]
    assert lr == [pytest.approx(0.1), pytest.approx(0.1)]  # cosine starts at its peak
    # the 5th update of the cosine member used cos decay's step 4 (0.5 (1 + cos(0.4 pi)) x 0.1,
    # Loshchilov & Hutter 2017); the constant member's stays 0.1
    for i, expected in ((0, 0.1), (1, 0.05 * (1 + np.cos(0.4 * np.pi)))):
        tx = member_tx(r, i)
        state = tx.init({"w": jnp.zeros(2)})
        for _ in range(5):
            _, state = tx.update({"w": jnp.ones(2)}, state, {"w": jnp.zeros(2)})
        assert float(jaxlr.current_lr(state)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("argv,needle", [
    (["--optimizer", "adam,lion"], "--optimizer adam,lion: choose from sgd, momentum"),
    (["--optimizer", "adam,adam"], "listed twice"),
    (["--schedule", "cosine,wsd"], "--schedule cosine,wsd: choose from constant"),
    (["--optimizer", "adam,prodigy", "--nesterov"], "not --optimizer prodigy"),
    (["--optimizer", "adam,dog", "--convention", "torch"], "not --optimizer dog"),
    (["--optimizer", "adam,sgd", "--momentum", "0.8,0.9"], "adam/constant would not read"),
    (["--optimizer", "prodigy", "--schedule", "plateau"], "got a controller"),
])
def test_misuse_is_one_line(tmp_path, argv, needle):
    rc, out, err = run(["sweep", *argv, "--steps", "20", "--out", tmp_path / "run"])
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert needle in err, err
    assert not (tmp_path / "run").exists()


def test_halving_ranks_across_the_optimizers(tmp_path):
    """--prune with several optimizers: the settings of every optimizer are ranked together
    at the rungs (factor 2: 4 settings -> the best 2 at step 10 -> the best 1 at step 20, by
    eval loss)."""
    rc, _, err = run(["sweep", "--model", "logreg", "--optimizer", "adam,sgd", "--lr",
                      "1e-3,1e-1", "--steps", "30", "--seeds", "1", "--prune", "10",
                      "--prune-factor", "2", "--no-progress", "--batch-size", "64", "--out",
                      tmp_path / "run"])
    assert rc == 0, err
    res = jaxlr.load(tmp_path / "run")
    assert sorted(res.pruned_at.tolist()) == [-1, 10, 10, 20]
    at10 = res.eval[:, list(res.eval_steps).index(10)]
    assert set(np.flatnonzero(res.pruned_at != 10)) == set(np.argsort(at10)[:2].tolist())
    assert set(res.hparams["optimizer"][res.pruned_at != 10]) == {"adam", "sgd"}
    # every member's model is restored from the run's checkpoint (one carry per category, the
    # states kept in member order): its held-out loss is the one recorded at its last eval
    _, _, xe, ye = _cli.DATASETS["digits"].load()
    for i in range(4):
        model = res.params(i)
        model.eval()
        last = np.flatnonzero(np.isfinite(res.eval[i]))[-1]
        np.testing.assert_allclose(float(_tasks.loss_fn(model, (xe, ye))[0]), res.eval[i, last],
                                   rtol=1e-6)


def test_find_takes_one_optimizer(tmp_path):
    rc, _, err = run(["find", "--optimizer", "adam,sgd", "--out", tmp_path / "run"])
    assert rc == 2 and "jaxlr find takes one value" in err


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    rc, out, err = run(["sweep", "--model", "logreg", "--optimizer", "adam,sgd,prodigy",
                        "--lr", "1e-2,1e-1", "--steps", "30", "--seeds", "1", "--no-progress",
                        "--batch-size", "64", "--out", root / "run"])
    assert rc == 0, err
    return root / "run", out, err


def test_the_sweep_compares_the_optimizers(compared):
    run_dir, out, err = compared
    assert "3 optimizers x 2 lr x 1 seed; LR-free methods at lr 1" in err
    assert "5 members" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    c = summary["comparison"]
    assert c["axis"] == "optimizer" and c["by"] == "eval"
    assert sorted(r["category"] for r in c["rows"]) == ["adam", "prodigy", "sgd"]
    # each category's value is its best setting's held-out loss (a reference from results.npz)
    with np.load(run_dir / "results.npz") as z:
        opt, ev = z["hp_optimizer"], z["eval"][:, -1]
    for row in c["rows"]:
        assert row["value"] == pytest.approx(float(ev[opt == row["category"]].min()), rel=1e-6)
    best = min(c["rows"], key=lambda r: r["value"])
    assert best["gap"] == 0.0
    lines = out.splitlines()
    start = lines.index("optimizers compared (the best setting of each, by eval):")
    assert len(lines[start + 1:start + 4]) == 3 and f"{best['category']}: eval" in lines[start + 1]
    # the table has an optimizer column and one row per setting, the best one starred
    assert lines[0].split()[0] == "optimizer"
    assert len([ln for ln in lines if ln.startswith("*")]) == 1


def test_report_and_load_rebuild_the_comparison(compared):
    run_dir, out, _ = compared
    rc, again, err = run(["report", run_dir, "--no-plot"])
    assert rc == 0, err
    assert [ln for ln in again.splitlines() if not ln.startswith("run directory")] == [
        ln for ln in out.splitlines() if not ln.startswith("run directory")]
    back = jaxlr.load(run_dir)
    assert back.best().hparams["optimizer"] in ("adam", "sgd", "prodigy")
    printed = [ln.strip() for ln in out.splitlines()]
    assert all(line in printed for line in back.compare("optimizer", text=True).splitlines())
