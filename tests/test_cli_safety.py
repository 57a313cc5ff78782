"""Issue 14: every bad input is caught before step 0, as one line naming the argument, the
value and the fix (exit code 2); the jaxlr command never overwrites a user's file; paths in
the hints it prints are shell-quoted."""

import contextlib
import io
import json
import shlex

import numpy as np
import pytest

from jaxlr import _records
from jaxlr._cli import commands as _cli
from jaxlr._cli import main

TINY = ["--steps", "20", "--lr", "1e-3:1:4", "--seeds", "2", "--no-progress"]
TINY_FIND = ["--steps", "10", "--seeds", "1", "--model", "logreg", "--no-progress"]


def run(argv):
    """main(argv) in-process -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def one_line_error(rc, out, err):
    """The message of a one-line user error (exit 2, nothing on stdout, no traceback)."""
    lines = err.strip().splitlines()
    assert rc == 2, f"exit {rc}, stderr {err[-2000:]!r}"
    assert len(lines) == 1 and lines[0].startswith("jaxlr: error: "), err[-2000:]
    assert out == ""
    return lines[0]


def snapshot(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


# --------------------------------------------------------------------------- --out


@pytest.mark.parametrize("command, args", [("sweep", TINY), ("find", TINY_FIND)])
@pytest.mark.parametrize("users", [("summary.json", "sweep.png", "environment.json"),
                                   ("notes.txt",)])
def test_out_refuses_a_directory_holding_the_users_files(tmp_path, monkeypatch, command, args,
                                                         users):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "my results"
    mine.mkdir()
    for name in users:
        (mine / name).write_bytes(f"the user's own {name}\n".encode())
    before = snapshot(mine)
    msg = one_line_error(*run([command, *args, "--out", mine]))
    assert str(mine) in msg and "not a jaxlr run directory" in msg and "--out" in msg
    assert snapshot(mine) == before  # nothing overwritten, nothing added


def test_out_refuses_a_directory_with_someone_elses_config(tmp_path):
    mine = tmp_path / "app"
    mine.mkdir()
    (mine / "config.json").write_text(json.dumps({"name": "my-app", "debug": True}))
    before = snapshot(mine)
    msg = one_line_error(*run(["sweep", *TINY, "--out", mine]))
    assert "not a jaxlr run directory" in msg and "jaxlr resume" not in msg
    assert snapshot(mine) == before


# --------------------------------------------------------------------------- quoted hints


def hint(text, prefix):
    """The shell words of the command that follows ``prefix`` on its line of ``text``."""
    line = next(line for line in text.splitlines() if prefix in line)
    return shlex.split(line.split(prefix, 1)[1])


def test_hints_quote_a_path_with_a_space(tmp_path, monkeypatch):
    run_dir = tmp_path / "my runs" / "run b"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli, "_sweep", interrupted)
    rc, _, err = run(["sweep", *TINY, "--out", run_dir])
    assert rc == 130
    assert hint(err, "continue with: ") == ["jaxlr", "resume", str(run_dir)]
    msg = one_line_error(*run(["sweep", *TINY, "--out", run_dir]))  # an unfinished run
    assert hint(msg, "continue it with: ") == ["jaxlr", "resume", str(run_dir)]
    msg = one_line_error(*run(["report", run_dir]))
    assert hint(msg, "continue it with: ") == ["jaxlr", "resume", str(run_dir)]


# --------------------------------------------------------------------------- corrupt runs


def _finished_looking_run(directory, npz_bytes):
    directory.mkdir()
    (directory / "results.npz").write_bytes(npz_bytes)


def _zip_of(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("content, problem", [
    (b"this is not a zip file", "not a readable .npz"),
    (_zip_of(x=np.arange(3))[:40], "not a readable .npz"),  # truncated
    (_zip_of(x=np.arange(3)), "hparam_names"),  # someone else's arrays
], ids=["not a zip", "truncated", "foreign arrays"])
def test_report_of_a_foreign_or_corrupt_results_file_is_one_line(tmp_path, content, problem):
    d = tmp_path / "run"
    _finished_looking_run(d, content)
    msg = one_line_error(*run(["report", d, "--no-plot"]))
    assert str(d / "results.npz") in msg and problem in msg


def test_resume_of_someone_elses_config_is_one_line(tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(["not", "a", "jaxlr", "config"]))
    msg = one_line_error(*run(["resume", d]))
    assert str(d / "config.json") in msg and "not written by jaxlr" in msg


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize("args, flag, value, valid", [
    (["--optimizer", "sgd", "--momentum", "1.5"], "--momentum", "1.5", "[0, 1)"),
    (["--optimizer", "momentum", "--momentum", "1"], "--momentum", "1", "[0, 1)"),
    (["--optimizer", "rmsprop", "--momentum", "-0.1"], "--momentum", "-0.1", "[0, 1)"),
    (["--b1", "1.5"], "--b1", "1.5", "[0, 1)"),
    (["--b2", "0.99,1"], "--b2", "1", "[0, 1)"),  # one bad value in a list
    (["--schedule", "exponential", "--decay-rate", "1.5"], "--decay-rate", "1.5", "(0, 1)"),
    (["--schedule", "step", "--factor", "2"], "--factor", "2", "(0, 1)"),
])
def test_out_of_range_values_are_refused_at_parsing(tmp_path, monkeypatch, args, flag, value,
                                                    valid):
    monkeypatch.chdir(tmp_path)
    msg = one_line_error(*run(["sweep", *TINY, *args]))
    assert f"{flag} must be in {valid}, got {flag} {value}" in msg
    assert "e.g." in msg  # the fix
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made


@pytest.mark.parametrize("prune", ["20", "40"])
def test_prune_at_or_after_the_last_step_is_refused(tmp_path, monkeypatch, prune):
    monkeypatch.chdir(tmp_path)
    msg = one_line_error(*run(["sweep", *TINY, "--prune", prune]))
    assert f"--prune {prune}" in msg and "--steps 20" in msg and "never prune" in msg
    assert not (tmp_path / "runs").exists()


def test_the_last_rung_before_the_end_is_accepted():
    ns = _cli.build_parser().parse_args(["sweep", "--steps", "20", "--prune", "19"])
    assert _cli.resolve(ns)["prune"] == {"min_steps": 19, "reduction_factor": 3}


def test_a_run_directory_is_recognised_by_its_config(tmp_path):
    """make_run_dir's three cases: empty (fine), a jaxlr run (refused, resume hint), a user's
    directory (refused, not a run)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _records.make_run_dir(empty, "sweep") == empty
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _records.write_json(run_dir / "config.json", {"command": "sweep", "jaxlr_version": "0.1",
                                                  "settings": {}})
    with pytest.raises(ValueError, match="already holds a jaxlr sweep run"):
        _records.make_run_dir(run_dir, "sweep")
    (empty / "data.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="not a jaxlr run directory"):
        _records.make_run_dir(empty, "sweep")
