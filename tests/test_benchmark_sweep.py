"""benchmarks/sweep.py runs end to end (smoke test: --quick; no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~50 s of subprocesses: run with `pytest -m slow`
def test_sweep_benchmark_quick():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sweep.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    out = proc.stdout
    assert "## Ratios of µs per member-step" in out, out
    assert "| workload | M | jaxlr/expert |" in out, out
    for row in ("| mlp | 1 |", "| mlp | 4 |", "| logreg | 4 |"):
        assert row in out, (row, out)
    assert "## (c) Cores" in out and "## Chunking overhead" in out, out
    assert "sgemm" in out and "goals missed:" in out, out
