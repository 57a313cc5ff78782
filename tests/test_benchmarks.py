"""The benchmark scripts run (smoke test only: no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_optimizer_overhead_quick():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "optimizer_overhead.py"), "--quick",
         "--params", "20000"],
        cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    out = proc.stdout
    assert "jaxlr µs/update" in out and "optax µs/update" in out and "ratio" in out, out
    for name in ("adam", "sgd(momentum=0.9)", "rmsprop", "adam + cosine_decay"):
        assert any(line.startswith(name) for line in out.splitlines()), (name, out)
