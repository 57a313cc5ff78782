"""`jaxlr sweep --task FILE.py:FUNCTION`: a user's own task through the command, its run
directory, resume and load; a changed task file is refused; bad references are one-line errors."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import jaxlr
from jaxlr import _records
from jaxlr._cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tasks" / "digits_cnn.py"
ARGS = ["--task-option", "channels=4", "--steps", "20", "--lr", "1e-2,1e-1", "--seeds", "1",
        "--no-progress", "--chunk-size", "10"]


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def task_run(tmp_path_factory):
    """The example CNN task, copied to a directory of its own (a test edits the copy)."""
    root = tmp_path_factory.mktemp("task")
    task_file = root / "digits_cnn.py"
    shutil.copy(EXAMPLE, task_file)
    out_dir = root / "run"
    rc, out, err = run(["sweep", "--task", f"{task_file}:make_task", *ARGS, "--out", out_dir])
    assert rc == 0, err
    return task_file, out_dir, out, err


def test_the_run_directory_records_the_task_and_loads_its_model(task_run):
    task_file, out_dir, out, err = task_run
    assert "task make_task(channels=4) from " in err
    config = json.loads((out_dir / "config.json").read_text())
    recorded = config["settings"]["task"]
    assert recorded["ref"] == f"{task_file}:make_task"
    assert recorded["options"] == {"channels": 4}
    import hashlib

    assert recorded["sha256"] == hashlib.sha256(task_file.read_bytes()).hexdigest()
    res = jaxlr.load(out_dir)
    assert res.eval is not None and "accuracy" in res.eval_aux  # the task's eval data and aux
    best = res.best()
    model = best.params
    assert type(model).__name__ == "CNN" and model.conv1.out_features == 4
    # the restored model gives the held-out loss the sweep recorded (an independent forward)
    import importlib.util

    spec = importlib.util.spec_from_file_location("digits_cnn_copy", task_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    task = module.make_task(channels=4)
    model.eval()
    loss, _ = module.loss_fn(model, task.eval_data)
    np.testing.assert_allclose(float(loss), res.eval[best.index, -1], rtol=1e-5)
    rc, report, _ = run(["report", out_dir])
    assert rc == 0 and report.splitlines()[0] == out.splitlines()[0]


def test_resume_rebuilds_the_task_and_refuses_a_changed_file(task_run, tmp_path):
    task_file, out_dir, _, _ = task_run
    killed = tmp_path / "killed"
    shutil.copytree(out_dir, killed)
    (killed / "results.npz").unlink()  # as if killed after the last checkpoint
    (killed / "summary.json").unlink()
    rc, _, err = run(["resume", killed, "--no-progress"])
    assert rc == 0, err
    assert "resuming at step 20 of 20 from " in err  # the last chunk's checkpoint
    for k, v in np.load(out_dir / "results.npz").items():
        np.testing.assert_array_equal(np.load(killed / "results.npz")[k], v, err_msg=k)
    original = task_file.read_text()
    try:
        task_file.write_text(original.replace("h.mean(axis=(1, 2))", "h.max(axis=(1, 2))"))
        (killed / "results.npz").unlink()
        rc, _, err = run(["resume", killed, "--no-progress"])
        assert rc == 2 and "changed since the run started" in err
        res = _records.load(out_dir)  # the finished run: its model cannot be rebuilt now
        with pytest.raises(ValueError, match="changed since the run started"):
            res.params(0)
    finally:
        task_file.write_text(original)


@pytest.mark.parametrize("ref,options,match", [
    ("digits_cnn.py", [], "must be FILE.py:FUNCTION"),
    ("missing.py:make_task", [], "no file"),
    ("{example}:make_tsk", [], "has no function 'make_tsk'; it defines .*'make_task'"),
    ("{tmp}/bad.py:make", [], "make\\(\\.\\.\\.\\) returned tuple, not a jaxlr.Task"),
    ("{example}:make_task", ["--task-option", "colour=3"], "cannot take the options"),
    ("no_such_pkg.mod:make", [], "no module 'no_such_pkg.mod'"),
    ("{example}:make_task", ["--task-option", "channels"], "must be KEY=VALUE"),
    (None, ["--task-option", "channels=4"], "--task-option needs --task"),
])
def test_bad_task_references_are_one_line_errors(tmp_path, monkeypatch, ref, options, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.py").write_text("def make():\n    return (1, 2)\n")
    argv = ["sweep", "--steps", "5", "--no-progress", *options, "--out", tmp_path / "r"]
    if ref is not None:
        argv += ["--task", ref.format(example=EXAMPLE, tmp=tmp_path)]
    rc, _, err = run(argv)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1
    import re

    assert re.search(match, err), err
    assert not (tmp_path / "r").exists()  # refused before the run directory is made
