"""`jaxlr sweep --config FILE.toml` and `--print-config`: a TOML file of the flags' options,
overridden by the flags given; the printed config reproduces the run's settings."""

import contextlib
import io

import numpy as np
import pytest

from jaxlr._cli import commands as _cli
from jaxlr._cli import main
from jaxlr._cli.config import tomllib

FLAGS = ["sweep", "--optimizer", "momentum", "--lr", "1e-3,1e-2", "--momentum", "0.8,0.9",
         "--schedule", "cosine", "--warmup-steps", "5", "--steps", "40", "--seeds", "0,7",
         "--nesterov", "--batch-size", "64", "--pbt", "10"]


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def settings(argv):
    ns, _ = _cli.parse([str(a) for a in argv])
    return _cli.resolve(ns)


def test_the_printed_config_reproduces_the_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run([*FLAGS, "--print-config"])
    assert rc == 0, err
    assert not (tmp_path / "runs").exists()  # printed, nothing run
    data = tomllib.loads(out)
    assert data["lr"] == "1e-3,1e-2" and data["nesterov"] is True and data["batch-size"] == 64
    path = tmp_path / "sweep.toml"
    path.write_text(out)
    assert settings(["sweep", "--config", path]) == settings(FLAGS)
    rc, again, _ = run(["sweep", "--config", path, "--print-config"])
    assert rc == 0 and again == out


def test_flags_override_the_file_and_toml_values_are_natural(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('optimizer = "adam"\nlr = [0.001, 0.01, 0.1]\nsteps = 30\n'
                    'seeds = [0, 3]\nno-progress = true\n')
    s = settings(["sweep", "--config", path, "--steps", "40"])
    assert s["steps"] == 40 and s["optimizer"] == "adam" and s["seeds"] == [0, 3]
    np.testing.assert_allclose(s["lr"], [1e-3, 1e-2, 1e-1])
    ns, _ = _cli.parse(["sweep", "--config", str(path)])
    assert ns.no_progress is True


@pytest.mark.parametrize("text,match", [
    ("stpes = 30\n", "unknown option 'stpes'; the options of this command are: "),
    ("steps = \n", "is not valid TOML"),
    ("nesterov = 1\n", "nesterov must be true or false"),
    ("steps = true\n", "steps must be a number, a string or a list"),
    ("steps = 0\n", "--steps must be >= 1"),
])
def test_a_bad_config_is_a_one_line_error(tmp_path, monkeypatch, text, match):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    rc, _, err = run(["sweep", "--config", path, "--no-progress"])
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
    rc, _, err = run(["sweep", "--config", tmp_path / "missing.toml"])
    assert rc == 2 and "missing.toml" in err
