"""The built-in CNN's default run, as a user starts it (``jaxlr sweep --model cnn`` in a fresh
process): it finishes, trains every LR, prints an estimate after its first chunk, and learns.
Its wall time (goal: about 2 minutes on 2 cores) is a benchmark's business
(``benchmarks/cli_default.py --model cnn``), not this test's. A file of its own, so that the
test runs beside test_cli.py's on another worker."""

import json
import os
import subprocess
import sys


def test_jaxlr_sweep_model_cnn_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-m", "jaxlr._cli", "sweep", "--model", "cnn"],
                          cwd=tmp_path, env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "runs").glob("*-sweep")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["members"] == 16 and summary["steps"] == 500
    assert len([line for line in proc.stdout.splitlines()[2:] if "/1" in line]) == 16
    assert summary["recommended"]["metrics"]["accuracy"]["mean"] > 0.9
    estimates = [line for line in proc.stderr.splitlines() if "estimated" in line]
    assert len(estimates) == 1 and "the first chunk" in estimates[0], proc.stderr[-2000:]
