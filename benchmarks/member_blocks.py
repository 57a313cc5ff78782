"""Sweeps larger than memory: ``jaxlr.sweep(..., member_block=B)`` against the unblocked sweep,
on the MLP 64-2048-2048-10 (4.33M parameters) under Adam, digits, batch 128.

Variants, each in a fresh subprocess (so its peak resident memory is its own):
  M=128 whole     ``member_block=None``: one program for the 128 members (it fails with
                  ``MemoryError`` when XLA's estimate exceeds the free memory, see
                  ``jaxlr._sweep.memory``; else it runs and its peak memory is reported);
  M=128 blocks B  ``member_block=B`` for B in ``--blocks`` (default 16 and 32): 128/B blocks run
                  one after another with the same compiled program;
  M=128 auto      ``member_block="auto"``: the whole sweep when it fits, else blocks of 90% of
                  the largest count that fits;
  M=16 whole      the reference for the time per member-step.
µs per member-step = the sweep call's wall time without compilation (tracing + lowering + XLA
compile, from ``jax.monitoring`` events) / (M x steps); peak RSS = the process' VmHWM after the
call (Linux), XLA's estimate = ``memory_analysis()`` of the chunk program for the rows of one
program (arguments + outputs + temporaries - aliased). ``--limit-gib G`` makes every variant
see only G GiB free (``jaxlr._sweep.memory.free_bytes`` patched), to show what happens on a
smaller machine without exhausting this one.

Run: ``python benchmarks/member_blocks.py`` (~5 minutes on 2 CPU cores; 10 steps),
``--quick`` (a smoke test: a 64-256-256-10 MLP, M in {8, 2}, 3 steps). Record the printed table
in ``benchmarks/results/`` with the machine and the date, and a summary in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(spec: dict) -> dict:
    """Run one variant in this process: ``{"m", "block", "width", "steps", "limit_gib"}``."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from sklearn.datasets import load_digits

    import jaxlr
    from jaxlr._sweep import memory

    if spec["limit_gib"]:
        limit = int(spec["limit_gib"] * 2**30)
        memory.free_bytes = lambda devices: limit // len(devices)
    compile_s = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **kw: compile_s.append(secs) if name in COMPILE_EVENTS else None)
    x, y = load_digits(return_X_y=True)
    x, y = jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y, jnp.int32)
    sizes = (64, spec["width"], spec["width"], 10)

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        return [(jax.random.normal(k, (a, b), jnp.float32) * jnp.sqrt(2.0 / a),
                 jnp.zeros(b, jnp.float32)) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def loss_fn(params, batch):
        h = batch[0]
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            h = jax.nn.relu(h) if i < len(params) - 1 else h
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, batch[1][:, None], axis=1))

    grid = jaxlr.grid(lr=np.logspace(-4, -2, spec["m"]).astype(np.float32))
    t0 = time.perf_counter()
    try:
        res = jaxlr.sweep(init, loss_fn, (x, y), lambda hp: jaxlr.adam(hp["lr"]), grid,
                          steps=spec["steps"], batch_size=128, progress=False,
                          member_block=spec["block"])
        jax.block_until_ready(res.loss)
        wall = time.perf_counter() - t0
        out = {"ok": True, "finite": bool(np.isfinite(res.loss).all())}
    except MemoryError as e:
        wall = time.perf_counter() - t0
        out = {"ok": False, "error": str(e).splitlines()[0][:160]}
    train = wall - sum(compile_s)
    out.update(wall_s=wall, compile_s=sum(compile_s), peak_rss_mib=peak_rss_mib(),
               us_per_member_step=1e6 * train / (spec["m"] * spec["steps"]))
    return out


def run_variant(spec: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--variant", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"ok": False, "error": f"exit {proc.returncode}: "
                f"{(proc.stderr.strip().splitlines() or ['?'])[-1][:160]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--blocks", default="16,32", help="block sizes B (default 16,32)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--limit-gib", type=float, default=0.0,
                    help="pretend only this much memory is free (0: the machine's)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(one(json.loads(args.variant))))
        return
    width, m, small, steps = (256, 8, 2, 3) if args.quick else (2048, 128, 16, args.steps)
    blocks = [2] if args.quick else [int(b) for b in args.blocks.split(",")]
    base = {"width": width, "steps": steps, "limit_gib": args.limit_gib}
    variants = [(f"M={m} whole", {**base, "m": m, "block": None}),
                *[(f"M={m} blocks of {b}", {**base, "m": m, "block": b}) for b in blocks],
                (f"M={m} auto", {**base, "m": m, "block": "auto"}),
                (f"M={small} whole", {**base, "m": small, "block": None})]
    print("# jaxlr.sweep member blocks\n")
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    print(f"- machine: {platform.platform()}; os.cpu_count()={os.cpu_count()}; load average "
          f"at start {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"- MLP 64-{width}-{width}-10 on digits, adam, batch 128, {steps} steps"
          + (f"; free memory limited to {args.limit_gib} GiB" if args.limit_gib else "") + "\n")
    print("| variant | outcome | wall s | compile s | µs/member-step | vs M=" + str(small)
          + " | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    rows = [(name, run_variant(spec)) for name, spec in variants]
    ref = rows[-1][1].get("us_per_member_step")
    for name, r in rows:
        if not r.get("ok"):
            print(f"| {name} | refused: {r.get('error')} | {r.get('wall_s', float('nan')):.1f} "
                  f"| | | | {r.get('peak_rss_mib', float('nan')):.0f} |")
            continue
        ratio = r["us_per_member_step"] / ref if ref else float("nan")
        print(f"| {name} | ran{'' if r['finite'] else ' (non-finite loss)'} | {r['wall_s']:.1f} "
              f"| {r['compile_s']:.1f} | {r['us_per_member_step']:.0f} | {ratio:.2f} "
              f"| {r['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
