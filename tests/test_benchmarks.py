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


def _quick(script, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
                          cwd=ROOT, env={**os.environ, "PYTHONIOENCODING": "utf-8"},
                          capture_output=True, text=True, encoding="utf-8", timeout=600)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_member_blocks_quick_refuses_whole_and_runs_blocked():
    """With 5 MiB 'free', the 8-member sweep of a 64-256-256-10 MLP does not fit whole (the
    memory check refuses it before training) and runs in blocks ('auto' and B=2)."""
    out = _quick("member_blocks.py", "--limit-gib", str(5 / 1024))
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in out.splitlines() if line.startswith("| M=")}
    assert rows["M=8 whole"].startswith("refused: this sweep needs about"), out
    assert rows["M=8 blocks of 2"] == "ran" and rows["M=8 auto"] == "ran", out


def test_compare_quick_one_call_equals_separate_calls():
    out = _quick("compare.py")
    assert "losses equal (rtol 1e-5): True" in out, out
    for name in ("adam", "momentum", "prodigy", "dadapt_adamw", "dog", "mechanic", "cocob",
                 "schedule_free_adamw"):
        assert f"\n{name}: " in out, (name, out)
