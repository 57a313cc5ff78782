"""The built-in models' default runs as a user starts them (``jaxlr sweep --model cnn`` and
``--model logreg`` in a fresh process; the MLP's, ``jaxlr sweep`` alone, is in test_cli.py):
each finishes, trains every LR and seed, prints an estimate after its first chunk, and learns.
Their wall time (goal: about 2 minutes on 2 cores) is a benchmark's business
(``benchmarks/cli_default.py --model cnn``), not this test's. A file of its own, so that these
runs go beside test_cli.py's on another worker."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("model,seeds,accuracy", [("cnn", 1, 0.9), ("logreg", 3, 0.9)])
def test_jaxlr_sweep_model_default(tmp_path, model, seeds, accuracy):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-m", "jaxlr._cli", "sweep", "--model", model],
                          cwd=tmp_path, env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "runs").glob("*-sweep")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["members"] == 16 * seeds and summary["steps"] == 500
    assert len([line for line in proc.stdout.splitlines()[2:] if f"/{seeds}" in line]) == 16
    assert summary["recommended"]["metrics"]["accuracy"]["mean"] > accuracy
    estimates = [line for line in proc.stderr.splitlines() if "estimated" in line]
    assert len(estimates) == 1 and "the first chunk" in estimates[0], proc.stderr[-2000:]
