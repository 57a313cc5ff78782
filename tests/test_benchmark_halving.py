"""benchmarks/halving.py runs end to end (smoke test: --quick; no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~50 s on 2 cores (three sweeps compile a program per rung): `pytest -m slow`
def test_halving_benchmark_quick():
    pytest.importorskip("optuna")
    pytest.importorskip("sklearn")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "halving.py"), "--quick"],
        cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    out = proc.stdout
    assert "## Results" in out, out
    assert "| method | member-steps | fewer | first call s |" in out, out
    for row in ("| unpruned | 360 |", "| halving eval |", "| halving loss |", "| optuna |"):
        assert row in out, (row, out)
    assert "| rung (step) | replayed on the unpruned curves |" in out, out
    assert "| 10 | 3 | 3 | 3 |" in out and "| 30 | 1 | 1 | 1 |" in out, out
    assert "kept the same members at every rung" in out, out
    assert "## Replayed on the unpruned eval curves" in out and "## Goals" in out, out
    assert "goals missed:" in out and " optuna " in out, out
