"""Run the examples and keep what the site shows of them: their figures and their output.

    python docs/make_figures.py                      # every example (~5 minutes on 2 CPU cores)
    python docs/make_figures.py 05_plateau_after_warmup find_and_sweep   # some of them

Each example runs in full (not the tests' smoke mode) from the repository root, as a user
would run it: ``python examples/NAME.py`` plus ``--out`` into a temporary directory for those
that draw figures, with no ``XLA_FLAGS`` added. Into docs/figures/ go

- ``NAME.txt``: what it printed (stdout; progress bars go to stderr and are left out);
- ``NAME_<figure>.png``: each PNG it wrote, re-encoded as a 256-colour PNG (and shrunk if
  that is not enough) to stay under 250 KB;
- ``made.txt``: when, on what machine and with which versions, and each example's wall time.

The pages under docs/examples/ include these files (pymdownx.snippets) and say how they were
made. Commit the results. The schedule gallery page is not made here: a hook draws it when the
site is built.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
MAX_BYTES = 250_000

# NAME -> its arguments ({out}: a fresh temporary directory); None: it draws no figure
EXAMPLES: dict[str, list[str] | None] = {
    "01_compose_optimizers": None,
    "02_schedules_gallery": ["--out", "{out}/schedules.png"],
    "03_nnx_lr_sweep": None,
    "04_linen_lr_sweep": None,
    "05_plateau_after_warmup": ["--out", "{out}/plateau.png"],
    "06_lr_finder": ["--out", "{out}"],
    "07_multi_device_sweep": None,
    "08_successive_halving": None,
    "09_population_based_training": None,
    "find_and_sweep": ["--out", "{out}"],
}


def small_png(src: Path, dst: Path) -> int:
    """Write ``src`` as a palette PNG of < MAX_BYTES at ``dst``; returns its size."""
    from PIL import Image

    image = Image.open(src).convert("RGB")
    while True:
        buf = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            buf, format="PNG", optimize=True)
        if buf.tell() < MAX_BYTES or image.width < 400:
            break
        image = image.resize((int(image.width * 0.85), int(image.height * 0.85)),
                             Image.Resampling.LANCZOS)
    dst.write_bytes(buf.getvalue())
    return buf.tell()


def run(name: str) -> tuple[float, list[str]]:
    """Run one example; write its output and figures; return (seconds, figure names)."""
    args = EXAMPLES[name]
    env = {k: v for k, v in os.environ.items() if k != "JAXLR_EXAMPLE_SMOKE"}
    env["PYTHONIOENCODING"] = "utf-8"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, f"examples/{name}.py"]
        cmd += [a.format(out=tmp) for a in args or []]
        print(f"$ {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              encoding="utf-8")
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        stdout = proc.stdout.replace(tmp, "OUT")
        (FIGURES / f"{name}.txt").write_text(stdout, encoding="utf-8")
        figures = []
        for png in sorted(Path(tmp).rglob("*.png")):
            dst = FIGURES / f"{name}_{png.stem}.png"
            size = small_png(png, dst)
            figures.append(dst.name)
            print(f"  {dst.relative_to(ROOT)}: {size / 1000:.0f} KB", flush=True)
    print(f"  {seconds:.0f} s", flush=True)
    return seconds, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"examples to run (default: all): {', '.join(EXAMPLES)}")
    names = parser.parse_args().names or list(EXAMPLES)
    unknown = [n for n in names if n not in EXAMPLES]
    if unknown:
        parser.error(f"no such example: {', '.join(unknown)} (choose from {', '.join(EXAMPLES)})")
    FIGURES.mkdir(parents=True, exist_ok=True)
    made = FIGURES / "made.txt"
    lines = made.read_text(encoding="utf-8").splitlines() if made.exists() else []
    rows = {line.split()[0]: line for line in lines if line[:1] not in ("", "#")}
    for name in names:
        seconds, figures = run(name)
        rows[name] = f"{name:30s} {seconds:5.0f} s   {' '.join(figures) or '(no figure)'}"
    jax_version = version("jax")
    header = [
        f"# made by python docs/make_figures.py on "
        f"{datetime.date.today().isoformat()} (last run)",
        f"# {platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, python "
        f"{platform.python_version()}, jax {jax_version}, jaxlr {version('jaxlr')}",
        "# example                        wall time  figures",
    ]
    body = [rows[n] for n in EXAMPLES if n in rows]
    made.write_text("\n".join(header + body) + "\n", encoding="utf-8")
    print(f"wrote {made.relative_to(ROOT)}: review docs/figures/ and commit it")


if __name__ == "__main__":
    main()
