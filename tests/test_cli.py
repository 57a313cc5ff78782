"""The jaxlr command: defaults, an end-to-end tiny sweep, report, --json, reproducibility,
resume after SIGKILL, find, and one-line errors (exit code 2) for user mistakes."""

import contextlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

from jaxlr import _records
from jaxlr._cli import commands as _cli
from jaxlr._cli import main
from jaxlr._cli import tasks as _tasks

TINY = ["--steps", "20", "--lr", "1e-3:1:4", "--seeds", "2", "--no-progress"]


def run(argv):
    """main(argv) in-process -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def table_of(stdout):
    """The table and the recommendation lines of a sweep's / report's stdout."""
    return [line for line in stdout.splitlines() if not line.startswith("run directory")]


# --------------------------------------------------------------------------- settings


def test_default_sweep_is_16_lrs_x_3_seeds_500_steps_adam_mlp_on_digits():
    s = _cli.resolve(_cli.build_parser().parse_args(["sweep"]))
    np.testing.assert_allclose(s["lr"], np.logspace(-4, 0, 16), rtol=1e-12)
    assert s["seeds"] == [0, 1, 2] and s["steps"] == 500 and s["batch_size"] == 128
    assert (s["optimizer"], s["model"], s["dataset"], s["schedule"]) == (
        "adam", "mlp", "digits", "constant")
    assert _cli.swept(s) == {"lr": s["lr"]}
    assert len(_cli.build_task(s, data=False).grid) == 48
    x, y, xe, ye = _cli.DATASETS["digits"].load()
    assert x.shape == (1438, 64) and xe.shape == (359, 64) and y.max() == 9
    np.testing.assert_array_equal(_cli.DATASETS["digits"].load()[3], ye)  # fixed permutation


def test_lists_become_grid_axes_read_from_the_traced_hp():
    argv = ["sweep", "--lr", "1e-3,1e-2", "--optimizer", "momentum", "--momentum", "0.8,0.9",
            "--schedule", "cosine", "--warmup-steps", "0,50,100", "--seeds", "0,7"]
    s = _cli.resolve(_cli.build_parser().parse_args(argv))
    assert list(_cli.swept(s)) == ["lr", "momentum", "warmup_steps"]
    task = _cli.build_task(s, data=False)
    assert len(task.grid) == 2 * 2 * 3 * 2 and sorted(set(task.grid.columns["seed"])) == [0, 7]
    # the optimizer of one member traces with every swept value abstract (one compile)
    params = {"w": jax.numpy.zeros(3)}
    hp = {k: jax.ShapeDtypeStruct((), v.dtype) for k, v in task.grid.columns.items()}
    jax.eval_shape(lambda hp: task.optimizer(hp).init(params), hp)


def test_help_and_version_exit_0():
    for argv in (["--help"], ["sweep", "--help"], ["find", "--help"], ["--version"]):
        rc, out, _ = run(argv)
        assert rc == 0 and "jaxlr" in out


def test_devices_flag_is_set_before_jax_starts_and_never_overrides_the_user(monkeypatch):
    monkeypatch.setattr(_cli, "_backends_initialized", lambda: False)
    monkeypatch.setattr(_cli, "_cores", lambda: 4)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    _cli.configure_devices(None)
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=4"
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_thunk_runtime=true")
    _cli.configure_devices(None)  # the user's flags, no count: left alone
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_use_thunk_runtime=true"
    _cli.configure_devices(2)  # --devices adds the count
    assert os.environ["XLA_FLAGS"].endswith("--xla_force_host_platform_device_count=2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    _cli.configure_devices(2)
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8"
    monkeypatch.setattr(_cli, "_cores", lambda: 1)
    monkeypatch.delenv("XLA_FLAGS")
    _cli.configure_devices(None)
    assert "XLA_FLAGS" not in os.environ


def test_importing_the_cli_does_not_start_jax():
    """XLA_FLAGS set by main() only works if nothing started the backend on import."""
    code = ("import jaxlr._cli; from jax._src import xla_bridge; "
            "assert not xla_bridge.backends_are_initialized(), 'backend started on import'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same tiny sweep twice: once printing the table, once with --json."""
    root = tmp_path_factory.mktemp("cli")
    a, b = root / "run a", root / "run b"  # paths with a space: hints quote them
    first = run(["sweep", *TINY, "--out", a])
    second = run(["sweep", *TINY, "--out", b, "--json"])
    return a, first, b, second


def test_sweep_writes_every_record(two_runs):
    a, (rc, out, err), _, _ = two_runs
    assert rc == 0, err
    names = {p.name for p in a.iterdir()}
    assert names >= {"config.json", "environment.json", "results.npz", "summary.json",
                     "sweep.png", "checkpoints"}
    assert sorted((a / "checkpoints").glob("ckpt-*"))
    config = json.loads((a / "config.json").read_text())
    assert config["command"] == "sweep" and config["jaxlr_version"]
    assert config["argv"][:3] == ["sweep", "--steps", "20"]
    s = config["settings"]
    assert len(s["lr"]) == 4 and s["seeds"] == [0, 1] and s["steps"] == 20
    assert s["params"]["b1"] == [0.9] and s["devices"] == len(jax.devices())
    assert config["grid"]["members"] == 8
    env = json.loads((a / "environment.json").read_text())
    assert env["versions"]["jax"] == jax.__version__ and env["backend"]
    arrays = npz(a / "results.npz")
    assert arrays["loss"].shape == (8, 20) and arrays["eval"].shape == (8, 1)
    assert set(arrays) >= {"lr", "eval_accuracy", "eval_steps", "diverged", "diverged_at",
                           "hp_lr", "hp_seed"}
    summary = json.loads((a / "summary.json").read_text())
    assert summary["recommended"]["hparams"]["lr"] in [r["hparams"]["lr"]
                                                       for r in summary["rows"]]
    assert len(summary["diagnosis"]) == 8
    # the printed table: a row per LR, mean ± std, the diagnosis, the recommendation
    lines = out.splitlines()
    assert "eval loss" in lines[0] and "accuracy" in lines[0] and "diagnosis" in lines[0]
    assert sum("±" in line for line in lines[2:6]) >= 3
    assert any(line.startswith("recommended: lr=") for line in lines)
    assert f"run directory: {a}" in out


def test_the_report_hint_is_shell_quoted(two_runs):
    a, (rc, _, err), _, _ = two_runs
    line = next(line for line in err.splitlines() if "re-print with: " in line)
    assert shlex.split(line.split("re-print with: ", 1)[1]) == ["jaxlr", "report", str(a)]


def test_report_reprints_the_same_table_without_training(two_runs):
    a, (_, out, _), _, _ = two_runs
    (a / "sweep.png").unlink()
    rc, report, err = run(["report", a])
    assert rc == 0, err
    assert table_of(report) == table_of(out)
    assert (a / "sweep.png").is_file()  # re-drawn


def test_json_summary_parses(two_runs):
    _, _, b, (rc, out, err) = two_runs
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["run_dir"] == str(b) and summary["members"] == 8
    assert summary["recommended"]["metrics"]["accuracy"]["mean"] > 0.1
    assert len(summary["rows"]) == 4
    rc, out, _ = run(["report", b, "--json", "--no-plot"])
    assert json.loads(out)["rows"] == summary["rows"]


def test_two_identical_runs_give_bitwise_identical_results(two_runs):
    a, _, b, _ = two_runs
    ra, rb = npz(a / "results.npz"), npz(b / "results.npz")
    assert sorted(ra) == sorted(rb)
    for k in ra:
        assert ra[k].dtype == rb[k].dtype and ra[k].tobytes() == rb[k].tobytes(), k
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["arrays_sha256"] == sb["arrays_sha256"]


def test_load_restores_trained_params_from_the_last_checkpoint(two_runs):
    a = two_runs[0]
    res = _records.load(a)
    best = res.best(by="eval", over="seed")
    model = best.params
    model.eval()
    _, _, xe, ye = _cli.DATASETS["digits"].load()
    loss, aux = _tasks.loss_fn(model, (xe, ye))
    np.testing.assert_allclose(float(loss), res.eval[best.index, -1], rtol=1e-6)
    np.testing.assert_allclose(float(aux["accuracy"]), res.eval_aux["accuracy"][best.index, -1])


def test_sweep_with_successive_halving(tmp_path):
    """--prune 10 ranks the 4 LRs (2 seeds each) by eval loss at step 10: 4 -> 2 settings at
    10, 2 -> 1 at 20 (30 steps); the table says where each stopped, load restores the models."""
    out_dir = tmp_path / "halving"
    rc, out, err = run(["sweep", "--steps", "30", "--lr", "1e-3:1:4", "--seeds", "2",
                        "--no-progress", "--prune", "10", "--prune-factor", "2", "--out",
                        out_dir])
    assert rc == 0, err
    assert "successive halving from step 10, factor 2" in err
    config = json.loads((out_dir / "config.json").read_text())
    assert config["settings"]["prune"] == {"min_steps": 10, "reduction_factor": 2}
    assert config["settings"]["eval_every"] == 10
    arrays = npz(out_dir / "results.npz")
    assert sorted(arrays["pruned_at"].tolist()) == [-1, -1, 10, 10, 10, 10, 20, 20]
    assert "pruned at" in out.splitlines()[0]
    res = _records.load(out_dir)
    best = res.best(by="eval", over="seed")
    assert res.pruned_at[best.index] == -1
    model = best.params
    model.eval()
    _, _, xe, ye = _cli.DATASETS["digits"].load()
    np.testing.assert_allclose(float(_tasks.loss_fn(model, (xe, ye))[0]),
                               res.eval[best.index, -1], rtol=1e-6)
    pruned = int(np.flatnonzero(res.pruned_at == 10)[0])  # its state at the rung
    model = res.params(pruned)
    # the stacked state restored from the run's checkpoint: member `pruned`'s slice is its model
    params, _ = res.stacked()
    own = jax.tree.leaves(nnx.split(model, nnx.Param, ...)[1])
    assert len(own) == len(jax.tree.leaves(params))
    for stacked, leaf in zip(jax.tree.leaves(params), own):
        np.testing.assert_array_equal(np.asarray(stacked)[pruned], leaf)
    model.eval()
    np.testing.assert_allclose(float(_tasks.loss_fn(model, (xe, ye))[0]), res.eval[pruned, 0],
                               rtol=1e-6)


def test_sweep_with_population_based_training(tmp_path):
    """--pbt 20: at steps 20 and 40 the worst slot (of 4) copies the best one by eval loss and
    explores its LR; the report prints the best slot's discovered schedule, the run directory
    keeps the lineage, and load restores the best slot's model."""
    out_dir = tmp_path / "pbt"
    rc, out, err = run(["sweep", "--model", "logreg", "--steps", "60", "--lr", "1e-3:1:4",
                        "--seeds", "1", "--no-progress", "--pbt", "20", "--out", out_dir])
    assert rc == 0, err
    assert "population-based training every 20 steps, quantile 0.25" in err
    config = json.loads((out_dir / "config.json").read_text())
    assert config["settings"]["pbt"] == {"interval": 20, "fraction": 0.25}
    assert out.splitlines()[0].split()[:5] == ["slot", "lr", "start", "lr", "end"]
    res = _records.load(out_dir)
    rows = [line.lstrip("* ").split() for line in out.splitlines()[2:6]]  # one row per slot
    assert [row[0] for row in rows] == ["0", "1", "2", "3"]
    assert [float(row[2]) for row in rows] == pytest.approx(
        res.final_hparams()["lr"].tolist(), rel=1e-3)  # the end LR, printed to 4 digits
    best = res.best()
    schedule = next(line for line in out.splitlines() if "discovered schedule" in line)
    assert schedule.startswith(f"  discovered schedule of slot {best.index} ")
    segments = res.lineage(best.index)
    assert schedule.count("-") == len(segments) and f"0-{segments[0].end}: " in schedule
    assert res.history["history_steps"].tolist() == [20, 40]
    model = best.params
    model.eval()
    _, _, xe, ye = _cli.DATASETS["digits"].load()
    np.testing.assert_allclose(float(_tasks.loss_fn(model, (xe, ye))[0]),
                               res.eval[best.index, -1], rtol=1e-6)
    rc, report, _ = run(["report", out_dir])
    assert rc == 0 and schedule in report


def test_find_prints_suggestions_and_saves_the_plot(tmp_path):
    out_dir = tmp_path / "find"
    rc, out, err = run(["find", "--steps", "30", "--seeds", "1", "--model", "logreg",
                        "--no-progress", "--out", out_dir])
    assert rc == 0, err
    assert "suggested LR:" in out and "valley" in out and "steepest" in out
    assert {p.name for p in out_dir.iterdir()} >= {"config.json", "environment.json",
                                                   "finder.npz", "finder.png", "summary.json"}
    summary = json.loads((out_dir / "summary.json").read_text())
    assert set(summary["suggestions"]) == {"valley", "steepest", "minimum"}
    rc, report, _ = run(["report", out_dir])
    assert rc == 0 and report.splitlines()[0] == out.splitlines()[0]


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("policy", [[], ["--pbt", "50"]], ids=["plain", "pbt"])
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, policy):
    """Killed after a seeded chunk; with --pbt the exploit steps (50, 100, ...) copy states and
    change LRs, and the resumed run still ends bit-identical."""
    args = ["sweep", "--model", "logreg", "--optimizer", "sgd", "--steps", "400",
            "--chunk-size", "10", "--lr", "0.1,1,1000", "--seeds", "2", "--devices", "1",
            "--no-progress", *policy]
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    log = open(tmp_path / "stderr.txt", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "jaxlr._cli", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=log, cwd=tmp_path)
    target = int(np.random.default_rng(8).integers(0, 8))  # kill after a chunk (seeded)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = [int(p.name.split("-")[1]) for p in (killed / "checkpoints").glob("ckpt-*")]
        if done and max(done) >= target:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the sweep ended before it could be killed: " + (
        tmp_path / "stderr.txt").read_text()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "results.npz").exists()
    rc, _, err = run(["report", killed])
    assert rc == 2 and "jaxlr resume" in err
    done = max(int(p.name.split("-")[1]) for p in (killed / "checkpoints").glob("ckpt-*"))
    rc, _, err = run(["resume", killed, "--no-progress"])
    assert rc == 0, err
    assert f"resuming at step {min((done + 1) * 10, 400)} of 400 from " in err
    rc, _, err = run([*args, "--out", ref])
    assert rc == 0, err
    resumed, uninterrupted = npz(killed / "results.npz"), npz(ref / "results.npz")
    assert sorted(resumed) == sorted(uninterrupted)
    for k in resumed:
        np.testing.assert_array_equal(resumed[k], uninterrupted[k], err_msg=k)
    if policy:  # lr 1000 diverges, and the copy of a better slot revives it
        assert (resumed["history_parents"] != np.arange(6)).any()
        assert not resumed["history_alive"].all()
    else:
        assert resumed["diverged"].any()  # lr 1000 diverges: the quarantine survives a resume


# --------------------------------------------------------------------------- errors


def _bad_inputs(tmp):
    (tmp / "a_file").write_text("")
    unfinished = tmp / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps({"command": "find", "jaxlr_version": "0",
                                                        "settings": {}}))
    return {
        "lr not a number": ["sweep", "--lr", "abc"],
        "lr range backwards": ["sweep", "--lr", "1:0.1:4"],
        "lr range bad n": ["sweep", "--lr", "1e-4:1:x"],
        "unknown schedule": ["sweep", "--schedule", "warmup_linear"],
        "unknown option": ["sweep", "--learning-rate", "0.1"],
        "unwritable out": ["sweep", "--out", tmp / "a_file" / "run"],
        "out is a file": ["sweep", "--out", tmp / "a_file"],
        "report without a run": ["report", tmp],
        "report of a missing dir": ["report", tmp / "missing"],
        "resume without a run": ["resume", tmp],
        "resume a find run": ["resume", unfinished],
        "option of another schedule": ["sweep", "--patience", "3"],
        "option of another optimizer": ["sweep", "--momentum", "0.9"],
        "bad value in a list": ["sweep", "--schedule", "one_cycle", "--pct-start", "0.3,1.5"],
        "warmup too long": ["sweep", "--warmup-steps", "500"],
        "not a whole number": ["sweep", "--patience", "2.5", "--schedule", "plateau"],
        "zero steps": ["sweep", "--steps", "0"],
        "zero seeds": ["sweep", "--seeds", "0"],
        "batch too large": ["sweep", "--batch-size", "100000"],
        "too many devices": ["sweep", "--devices", "4096"],
        "find ramp backwards": ["find", "--min-lr", "1", "--max-lr", "0.1"],
        "find with a list": ["find", "--weight-decay", "0,0.1"],
        "two policies": ["sweep", "--pbt", "50", "--prune", "50"],
        "pbt past the end": ["sweep", "--pbt", "500"],
        "pbt fraction": ["sweep", "--pbt", "50", "--pbt-fraction", "0.7"],
        "no command": [],
    }


def test_user_mistakes_are_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, argv in _bad_inputs(tmp_path).items():
        rc, out, err = run(argv)
        lines = err.strip().splitlines()
        assert rc == 2, f"{name}: exit {rc}, stderr {err!r}"
        assert len(lines) == 1 and lines[0].startswith("jaxlr: error: "), f"{name}: {err!r}"
        assert "Traceback" not in err and out == "", name
    assert not (tmp_path / "runs").exists()  # nothing was written before the error


def test_error_messages_name_the_fix(tmp_path):
    cases = {("sweep", "--lr", "abc"): "1e-4:1:16",
             ("sweep", "--lr", "1:0.1:4"): "lo must be < hi",
             ("sweep", "--schedule", "nope"): "choose from",
             ("report", str(tmp_path)): "no jaxlr run",
             ("sweep", "--patience", "3"): "--schedule plateau",
             ("sweep", "--out", "/proc/no/such"): "--out DIR",
             ("sweep", "--prune", "15", "--eval-every", "10"): "multiple of --eval-every",
             ("sweep", "--prune", "10", "--prune-factor", "1"): "--prune-factor must be >= 2"}
    for argv, needle in cases.items():
        rc, _, err = run(list(argv))
        assert rc == 2 and needle in err, (argv, err)


# --------------------------------------------------------------------------- the default


def test_jaxlr_sweep_without_arguments(tmp_path):
    exe = shutil.which("jaxlr")
    cmd = [exe, "sweep"] if exe else [sys.executable, "-m", "jaxlr._cli", "sweep"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    # its wall time (goal: < 120 s on 2 cores) is measured by benchmarks/cli_default.py, not here
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "runs").glob("*-sweep"))
    assert len(runs) == 1
    assert {p.name for p in runs[0].iterdir()} >= {"config.json", "environment.json",
                                                   "results.npz", "summary.json", "sweep.png",
                                                   "checkpoints"}
    lines = proc.stdout.splitlines()
    assert len([line for line in lines[2:] if "/3" in line]) == 16  # one row per LR
    assert any(line.startswith("recommended: lr=") for line in lines)
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["members"] == 48 and summary["steps"] == 500
    assert summary["recommended"]["metrics"]["accuracy"]["mean"] > 0.95
    assert "48 members" in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if "the first chunk" in ln]) == 1


@pytest.mark.parametrize("argv", [
    ["sweep", "--schedule", "step", "--lr", "0.1", "--steps", "2"],
    ["find", "--steps", "10"],
], ids=["sweep-step-schedule", "find"])
def test_every_command_gets_one_device_per_core(tmp_path, argv):
    """A fresh process, as a user runs it: the device count is set before anything starts JAX
    (checking a schedule's settings does, so it must come after)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-m", "jaxlr._cli", *argv, "--model", "logreg",
                           "--seeds", "1", "--no-progress", "--out", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cores = _cli._cores()
    assert f"; {cores} cpu device(s)" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("shape,stride", [((8, 8, 1, 16), 1), ((8, 8, 16, 32), 2),
                                          ((7, 9, 3, 4), 2), ((5, 5, 2, 2), 3)])
def test_the_builtin_cnns_convolution_is_xlas_same_convolution(shape, stride):
    """The built-in CNN's im2col convolution against lax.conv_general_dilated 'SAME' (odd
    sizes and strides included: XLA pads the extra row/column after)."""
    h, w, cin, cout = shape
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, h, w, cin)).astype(np.float32)
    k = rng.normal(size=(3, 3, cin, cout)).astype(np.float32)
    b = rng.normal(size=cout).astype(np.float32)
    ref = jax.lax.conv_general_dilated(x, k, (stride, stride), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
    np.testing.assert_allclose(_tasks.conv_same(x, k, b, stride), ref, rtol=1e-5, atol=1e-5)


def test_the_cnns_default_is_one_seed():
    s = _cli.resolve(_cli.build_parser().parse_args(["sweep", "--model", "cnn"]))
    assert s["seeds"] == [0] and s["steps"] == 500 and len(s["lr"]) == 16
    s = _cli.resolve(_cli.build_parser().parse_args(["sweep", "--model", "cnn", "--seeds", "2"]))
    assert s["seeds"] == [0, 1]
