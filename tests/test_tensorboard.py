"""The TensorBoard export (jaxlr.write_tensorboard, ``--tensorboard OUT``) and the live log
(``sweep(..., log_dir=OUT)``), read back with TensorBoard's own reader (``EventAccumulator``)
and its HParams plugin's parsers: every member is a run whose hyperparameters and curves equal
the SweepResult's (values and steps, non-finite values left out), the HParams experiment lists
the grid's axes with their values, a directory of the user's is refused and never written, an
earlier export is replaced; the live log is on disk while the sweep trains and a resumed
sweep's log holds every step once."""

import contextlib
import io
import json

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import api_pb2, metadata

import jaxlr
from jaxlr._cli import main
from jaxlr._records import write_tensorboard
from jaxlr._sweep import Grid, SweepResult

STATUS = {"success": api_pb2.STATUS_SUCCESS, "failure": api_pb2.STATUS_FAILURE}


# --------------------------------------------------------------------------- reading back


def read(path):
    acc = ea.EventAccumulator(str(path), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    return acc


def curve(acc, tag):
    """(steps, float32 values) of one scalar tag."""
    events = acc.Scalars(tag)
    return (np.array([e.step for e in events]), np.array([e.value for e in events], np.float32))


def hparams_of(acc):
    """The run's HParams session: ({name: value}, group name, end status)."""
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    values = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    return values, start.group_name, end.status


def domain(info):
    """The values of an HParam's discrete domain, as Python scalars."""
    return [getattr(v, v.WhichOneof("kind")) for v in info.domain_discrete.values]


def experiment_of(out):
    content = read(out).PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG]
    return metadata.parse_experiment_plugin_data(content)


def event_files(path):
    return sorted(p.name for p in path.glob("events.out.tfevents.*"))


def assert_curve(acc, tag, steps, values):
    """The run's ``tag`` holds the finite ``values`` at their ``steps``, nothing else."""
    values = np.asarray(values, np.float32)
    ok = np.isfinite(values)
    got_steps, got_values = curve(acc, tag)
    np.testing.assert_array_equal(got_steps, np.asarray(steps)[ok])
    np.testing.assert_array_equal(got_values, values[ok])


# --------------------------------------------------------------------------- a real sweep


def _loss(w, batch):
    err = batch[0] @ w - 2.0 * batch[0][:, 0]
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


X = jnp.linspace(-1.0, 1.0, 32)[:, None]
SWEEP = dict(init=lambda k: jnp.zeros(1), loss_fn=_loss, optimizer=lambda hp: jaxlr.sgd(hp["lr"]),
             grid=jaxlr.grid(lr=[0.1, 0.5, 100.0], seed=2), steps=7, batch_size=8,
             eval_data=(X,), eval_every=3, progress=False)


@pytest.fixture(scope="module", params=["export", "live"])
def swept(tmp_path_factory, request):
    """A tiny sweep (LR 100 diverges at once) and its export, or its live log."""
    out = tmp_path_factory.mktemp("tb") / request.param
    if request.param == "export":
        result = jaxlr.sweep(data=(X,), **SWEEP)
        assert write_tensorboard(result, out) == out
    else:
        result = jaxlr.sweep(data=(X,), log_dir=out, **SWEEP)
    return result, out


def test_the_sweep_is_what_the_test_needs(swept):
    result, _ = swept
    assert result.diverged.tolist() == [False, False, False, False, True, True]
    assert np.isnan(result.loss[4]).any() and np.isfinite(result.loss[:4]).all()
    assert result.eval_steps.tolist() == [3, 6, 7] and set(result.eval_aux) == {"mae"}


def test_every_member_is_a_run_with_its_hparams_and_curves(swept):
    result, out = swept
    lrs, seeds = [0.1, 0.1, 0.5, 0.5, 100.0, 100.0], [0, 1, 0, 1, 0, 1]
    names = [f"{i}-lr={lr},seed={s}" for i, (lr, s) in enumerate(zip(lrs, seeds))]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == names
    steps = np.arange(7)
    for i, name in enumerate(names):
        assert len(event_files(out / name)) == 1
        acc = read(out / name)
        hp, group, status = hparams_of(acc)
        assert hp == {"lr": lrs[i], "seed": seeds[i]} and group == name
        assert np.float32(hp["lr"]) == result.hparams["lr"][i]
        assert status == STATUS["failure" if result.diverged[i] else "success"]
        assert sorted(acc.Tags()["scalars"]) == ["eval/loss", "eval/mae", "train/loss",
                                                 "train/lr"]
        assert_curve(acc, "train/loss", steps, result.loss[i])
        assert_curve(acc, "train/lr", steps, result.lr[i])
        assert_curve(acc, "eval/loss", result.eval_steps, result.eval[i])
        assert_curve(acc, "eval/mae", result.eval_steps, result.eval_aux["mae"][i])


def test_a_diverged_members_loss_curve_stops_where_it_blew_up(swept):
    result, out = swept
    first_nan = int(np.argmax(np.isnan(result.loss[4])))
    steps, _ = curve(read(out / "4-lr=100.0,seed=0"), "train/loss")
    assert steps.tolist() == list(range(first_nan))


def test_the_experiment_lists_the_grid_axes_their_values_and_the_metrics(swept):
    result, out = swept
    experiment = experiment_of(out)
    infos = {h.name: h for h in experiment.hparam_infos}
    assert list(infos) == ["lr", "seed"]
    assert domain(infos["lr"]) == [0.1, 0.5, 100.0]
    assert domain(infos["seed"]) == [0.0, 1.0]
    assert infos["lr"].type == api_pb2.DATA_TYPE_FLOAT64
    metrics = {m.name.tag: m.dataset_type for m in experiment.metric_infos}
    assert metrics == {"train/loss": api_pb2.DATASET_TRAINING,
                       "eval/loss": api_pb2.DATASET_VALIDATION,
                       "eval/mae": api_pb2.DATASET_VALIDATION}
    mark = json.loads((out / "jaxlr-tensorboard.json").read_text())
    assert mark["format"] == "jaxlr-tensorboard" and len(mark["runs"]) == len(result)


# --------------------------------------------------------------------------- made-up results


def made_up(columns, steps=5, evals=(2, 5), seed=0):
    """A SweepResult of seeded random curves (no training), M = len of the columns."""
    grid = Grid({k: np.asarray(v) for k, v in columns.items()})
    m, rng = len(grid), np.random.default_rng(seed)
    loss = rng.uniform(0.1, 2.0, (m, steps)).astype(np.float32)
    ev = rng.uniform(0.1, 2.0, (m, len(evals))).astype(np.float32)
    return SweepResult(grid=grid, loss=loss, lr=np.full((m, steps), 0.1, np.float32), eval=ev,
                       eval_aux={"loss": ev + 1.0}, eval_steps=np.asarray(evals, np.int32),
                       diverged=np.zeros(m, bool), diverged_at=np.full(m, -1, np.int32))


def test_the_live_log_is_on_disk_while_the_sweep_trains(tmp_path):
    """Data as an iterable: when the loop asks for batch 6 (the third chunk of 3 steps), the
    first chunk's steps must already be in the files (the second is still running)."""
    out, seen = tmp_path / "live", {}

    def batches():
        for t in range(9):
            if t == 6:
                seen.update({i: curve(read(out / f"{i}-lr={lr}"), "train/loss")[0].tolist()
                             for i, lr in enumerate([0.1, 0.5])})
            yield (X[(4 * t) % 32:(4 * t) % 32 + 4],)

    result = jaxlr.sweep(SWEEP["init"], _loss, batches(), SWEEP["optimizer"],
                         jaxlr.grid(lr=[0.1, 0.5]), steps=9, batch_size=4, chunk_size=3,
                         progress=False, log_dir=out)
    assert seen == {0: [0, 1, 2], 1: [0, 1, 2]}
    for i, lr in enumerate([0.1, 0.5]):
        acc = read(out / f"{i}-lr={lr}")
        assert_curve(acc, "train/loss", np.arange(9), result.loss[i])
        assert hparams_of(acc)[2] == STATUS["success"]


class Killed(Exception):
    pass


def test_a_resumed_sweeps_log_holds_every_step_once(tmp_path):
    """Killed after two checkpointed chunks (the log then has steps 0-5), resumed with a fresh
    iterable: the log is rewritten from the restored curves and holds each step once, equal
    to the result's and to an uninterrupted run's."""
    data = [(X[(4 * t) % 32:(4 * t) % 32 + 4],) for t in range(9)]

    def batches(kill_at=None):
        for t, b in enumerate(data):
            if t == kill_at:
                raise Killed
            yield b

    kw = dict(steps=9, batch_size=4, chunk_size=3, progress=False,
              grid=jaxlr.grid(lr=[0.1, 0.5, 100.0]), checkpoint=tmp_path / "ckpt")
    run = lambda it, **more: jaxlr.sweep(SWEEP["init"], _loss, it, SWEEP["optimizer"],
                                         **kw, **more)
    with pytest.raises(Killed):
        run(batches(kill_at=7), log_dir=tmp_path / "live")
    assert curve(read(tmp_path / "live" / "0-lr=0.1"), "train/loss")[0].tolist() == [
        0, 1, 2, 3, 4, 5]
    result = run(batches(), log_dir=tmp_path / "live")
    kw["checkpoint"] = tmp_path / "other"
    whole = run(batches())
    np.testing.assert_array_equal(result.loss, whole.loss)
    for i, lr in enumerate([0.1, 0.5, 100.0]):
        acc = read(tmp_path / "live" / f"{i}-lr={lr}")
        assert len(event_files(tmp_path / "live" / f"{i}-lr={lr}")) == 1
        assert_curve(acc, "train/loss", np.arange(9), result.loss[i])
        assert_curve(acc, "train/lr", np.arange(9), result.lr[i])
        assert hparams_of(acc)[2] == STATUS["failure" if result.diverged[i] else "success"]
    assert result.diverged.tolist() == [False, False, True]


def test_log_dir_with_categories_is_live_and_refused_early(tmp_path):
    """Categories are blocks of one program, so their log is live too: when the loop asks for
    batch 6 (the third chunk of 3 steps), every category's first chunk is in the files."""
    grid = jaxlr.grid(opt=["sgd", "adam"], lr=[0.1, 0.5])
    opt = lambda hp: {"sgd": jaxlr.sgd, "adam": jaxlr.adam}[hp["opt"]](hp["lr"])
    kw = dict(steps=4, batch_size=8, progress=False)
    names = ["0-opt=sgd,lr=0.1", "1-opt=sgd,lr=0.5", "2-opt=adam,lr=0.1", "3-opt=adam,lr=0.5"]
    out, seen = tmp_path / "tb", {}

    def batches():
        for t in range(9):
            if t == 6:
                seen.update({n: curve(read(out / n), "train/loss")[0].tolist() for n in names})
            yield (X[(4 * t) % 32:(4 * t) % 32 + 4],)

    result = jaxlr.sweep(SWEEP["init"], _loss, batches(), opt, grid, steps=9, batch_size=4,
                         chunk_size=3, progress=False, log_dir=out)
    assert seen == {n: [0, 1, 2] for n in names}
    for i, name in enumerate(names):
        acc = read(out / name)
        assert hparams_of(acc)[0]["opt"] == ["sgd", "sgd", "adam", "adam"][i]
        assert_curve(acc, "train/loss", np.arange(9), result.loss[i])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    calls = []
    with pytest.raises(ValueError, match="not a jaxlr TensorBoard export"):
        jaxlr.sweep(SWEEP["init"], _loss, (X,), lambda hp: calls.append(1) or opt(hp), grid,
                    log_dir=tmp_path / "mine", **kw)
    assert calls == []  # refused before anything was traced


def test_non_finite_values_are_left_out_and_the_status_says_why(tmp_path):
    result = made_up({"lr": np.float32([0.1, 0.2, 0.3])})
    result.loss[0, 3:] = np.nan  # diverged at step 3
    result.loss[1, 1] = np.inf
    result.diverged[0], result.diverged_at[0] = True, 3
    result.pruned_at = np.array([-1, -1, 2])  # pruned at the rung of step 2
    result.loss[2, 2:], result.eval[2, 1], result.eval_aux["loss"][2, 1] = np.nan, np.nan, np.nan
    result.lr[:] = np.nan  # an optimizer that records no LR
    write_tensorboard(result, tmp_path / "tb")
    for i, status in enumerate(["failure", "success", "success"]):  # pruned: no status of its own
        acc = read(tmp_path / "tb" / f"{i}-lr={[0.1, 0.2, 0.3][i]}")
        assert hparams_of(acc)[2] == STATUS[status]
        assert "train/lr" not in acc.Tags()["scalars"]
        assert_curve(acc, "train/loss", np.arange(5), result.loss[i])
        assert_curve(acc, "eval/loss", [2, 5], result.eval[i])
        # an aux metric called "loss" does not clash with the eval loss
        assert_curve(acc, "eval/aux_loss", [2, 5], result.eval_aux["loss"][i])
    assert curve(read(tmp_path / "tb" / "1-lr=0.2"), "train/loss")[0].tolist() == [0, 2, 3, 4]


def test_string_and_bool_axes_are_hparams_of_their_type(tmp_path):
    result = made_up({"opt": ["adam", "sgd/nesterov"], "bias": [True, False],
                      "seed": np.int32([3, 3])})
    write_tensorboard(result, tmp_path)
    names = ["0-opt=adam,bias=True,seed=3", "1-opt=sgd_nesterov,bias=False,seed=3"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == names
    assert hparams_of(read(tmp_path / names[1]))[0] == {"opt": "sgd/nesterov", "bias": False,
                                                        "seed": 3}
    infos = {h.name: h for h in experiment_of(tmp_path).hparam_infos}
    assert infos["opt"].type == api_pb2.DATA_TYPE_STRING
    assert domain(infos["opt"]) == ["adam", "sgd/nesterov"]
    assert infos["bias"].type == api_pb2.DATA_TYPE_BOOL
    assert domain(infos["bias"]) == [False, True]


def test_a_directory_of_the_users_is_refused_and_left_as_it_was(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a jaxlr TensorBoard export"):
        write_tensorboard(made_up({"lr": [0.1]}), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="is an existing file"):
        write_tensorboard(made_up({"lr": [0.1]}), tmp_path / "notes.txt")


def test_an_earlier_export_is_replaced_and_the_users_files_in_it_are_kept(tmp_path):
    out = tmp_path / "tb"
    write_tensorboard(made_up({"lr": np.float32([0.1, 0.2, 0.3])}, seed=1), out)
    (out / "notes.txt").write_text("mine")
    second = made_up({"lr": np.float32([0.5])}, seed=2)
    write_tensorboard(second, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["0-lr=0.5", "jaxlr-tensorboard.json", "notes.txt", *event_files(out)])
    assert len(event_files(out)) == 1 and len(event_files(out / "0-lr=0.5")) == 1
    assert (out / "notes.txt").read_text() == "mine"
    assert_curve(read(out / "0-lr=0.5"), "train/loss", np.arange(5), second.loss[0])
    assert [h.name for h in experiment_of(out).hparam_infos] == ["lr"]
    assert domain(experiment_of(out).hparam_infos[0]) == [0.5]


def test_without_tensorboard_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install jaxlr\[tensorboard\]"):
        write_tensorboard(made_up({"lr": [0.1]}), tmp_path / "tb")
    assert not (tmp_path / "tb").exists()


# --------------------------------------------------------------------------- the command


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


TINY = ["--steps", "4", "--lr", "1e-2,1e3", "--seeds", "1", "--model", "logreg",
        "--batch-size", "16", "--eval-every", "2", "--no-progress"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli tb")
    rc, _, err = run(["sweep", *TINY, "--out", root / "run", "--tensorboard", root / "swept"])
    assert rc == 0, err
    return root


def test_report_and_sweep_export_the_run_directorys_curves(cli_run):
    rc, out, err = run(["report", cli_run / "run", "--no-plot", "--json",
                        "--tensorboard", cli_run / "reported"])
    assert rc == 0, err
    assert json.loads(out)["members"] == 2  # stdout stays the JSON summary
    assert "tensorboard --logdir" in err
    with np.load(cli_run / "run" / "results.npz") as z:
        arrays = {k: z[k] for k in z.files}
    for export in ("swept", "reported"):
        for i, lr in enumerate([0.01, 1000.0]):
            acc = read(cli_run / export / f"{i}-lr={lr},seed=0")
            assert hparams_of(acc)[0] == {"lr": lr, "seed": 0}
            assert hparams_of(acc)[2] == STATUS["failure" if arrays["diverged"][i]
                                                else "success"]
            assert_curve(acc, "train/loss", np.arange(4), arrays["loss"][i])
            assert_curve(acc, "eval/loss", arrays["eval_steps"], arrays["eval"][i])
            assert_curve(acc, "eval/accuracy", arrays["eval_steps"], arrays["eval_accuracy"][i])
    assert arrays["diverged"].tolist() == [False, True]
    assert [h.name for h in experiment_of(cli_run / "reported").hparam_infos] == ["lr", "seed"]


def test_report_refuses_a_directory_of_the_users_in_one_line(cli_run, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    rc, out, err = run(["report", cli_run / "run", "--no-plot", "--tensorboard", tmp_path])
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--tensorboard" in err and "not a jaxlr TensorBoard export" in err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    rc, _, err = run(["report", cli_run / "run", "--tensorboard", cli_run / "run"])
    assert rc == 2 and "not a jaxlr TensorBoard export" in err


def test_sweep_refuses_before_training(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    for tb in (tmp_path / "mine", tmp_path / "run", tmp_path):
        rc, _, err = run(["sweep", *TINY, "--out", tmp_path / "run", "--tensorboard", tb])
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "run").exists()  # refused before the run directory
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
