"""The ``jaxlr`` command: ``sweep | find | report | resume``.

``jaxlr sweep`` with no arguments trains the embedded default: an NNX MLP (64-128-10) on
scikit-learn's copy of the UCI digits (1,797 8x8 images, no download; a fixed 80/20 split),
Adam, 16 log-spaced LRs (1e-4..1) x 3 seeds, 500 steps of batch 128, all 48 members as ONE
compiled program; it prints a table (mean ± std over seeds of the final eval loss and
accuracy, the diagnosis), the recommended LR, and writes a run directory (see
:mod:`jaxlr._records`). Any sweepable option given a comma list becomes a grid axis
(``--warmup-steps 0,50,100``); its values reach the optimizer traced, so the grid compiles once.

User mistakes are one line on stderr and exit code 2 (``JAXLR_DEBUG=1`` shows the traceback),
all caught before step 0: out-of-range values, a ``--prune`` rung past the end, an ``--out``
directory holding files of the user's (never overwritten), a damaged or foreign run directory.
Paths in the hints printed (``jaxlr resume DIR``) are shell-quoted, ready to paste.
JAX is configured lazily: on a CPU with several cores, unless ``XLA_FLAGS`` is set, the host is
split into one XLA device per core before the backend starts, and the members are sharded
over them.

Why one file of ~530 lines: the parser, the devices and the four commands share the
run-directory steps (start, finish, report); the settings and what they build live in
``tasks.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from jaxlr import _records
from jaxlr._cli import config
from jaxlr._cli.tasks import (
    DATASETS,
    LR_FREE,
    MODELS,
    OPTIMIZER_PARAMS,
    OPTIMIZERS,
    PARAM,
    PARAMS,
    SCHEDULES,
    UsageError,
    build_task,
    categorical_axes,
    grid_of,
    make_optimizer,
    names_of,
    resolve,
    swept,
    task_of,
)

if TYPE_CHECKING:
    from jaxlr._sweep import SweepResult

# --------------------------------------------------------------------------- devices


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover - older/newer jax
        return False


def configure_devices(requested: int | None) -> None:
    """Before JAX starts its backend: one host device per CPU core (or ``requested``), unless
    the user set ``XLA_FLAGS`` with a device count (then theirs wins)."""
    if _backends_initialized():
        return
    flags = os.environ.get("XLA_FLAGS")
    if flags is not None and (requested is None or "device_count" in flags):
        return
    count = requested if requested is not None else _cores()
    if count <= 1 and requested is None:
        return
    os.environ["XLA_FLAGS"] = f"{flags or ''} --xla_force_host_platform_device_count={count}"
    os.environ["XLA_FLAGS"] = os.environ["XLA_FLAGS"].strip()


def pick_devices(requested: int | None) -> list:
    import jax

    devices = jax.local_devices()
    if requested is None:
        return devices
    if requested > len(devices):
        hint = ("; JAX was already started in this process" if _backends_initialized() else "")
        raise UsageError(f"--devices {requested}: only {len(devices)} {jax.default_backend()} "
                         f"device(s) are available{hint}; set XLA_FLAGS=--xla_force_host_"
                         f"platform_device_count={requested} for that many CPU devices, or "
                         "lower --devices")
    return devices[:requested]


# --------------------------------------------------------------------------- commands


def _info(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _write_config(run_dir: Path, s: dict, ns: argparse.Namespace, argv: Sequence[str],
                  devices: list) -> None:
    import jaxlr

    s["devices"] = len(devices)
    grid = {"axes": swept(s), "seeds": s["seeds"],
            **{k: names_of(s, k) for k in categorical_axes(s)},
            "members": len(grid_of(s)) if s["command"] == "sweep" else len(s["seeds"])}
    _records.write_json(run_dir / _records.CONFIG, {
        "command": s["command"], "jaxlr_version": jaxlr.__version__, "argv": list(argv),
        "args": {k: v for k, v in vars(ns).items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": s, "grid": grid,
        # what rebuilds the run's functions from "settings" (jaxlr.load imports it by name)
        "factory": "jaxlr._cli.tasks:sweep_inputs"})
    _records.write_json(run_dir / _records.ENVIRONMENT, _records.environment())


def _describe(s: dict, devices: list) -> str:
    axes = swept(s)
    n_seeds = len(s["seeds"])
    cat = categorical_axes(s)
    shape = " x ".join([*(f"{len(names_of(s, k))} {k}s" for k in cat),
                        *(f"{len(v)} {k}" for k, v in axes.items()),
                        f"{n_seeds} seed{'s' * (n_seeds != 1)}"])
    if "optimizer" in cat and any(o in LR_FREE for o in names_of(s, "optimizer")):
        shape += "; LR-free methods at lr 1"
    members = len(grid_of(s)) if s["command"] == "sweep" else n_seeds
    kind = devices[0].platform if devices else "?"
    what = (f"{','.join(names_of(s, 'schedule'))} schedule" if "schedule" in s else
            f"LR ramp {s['min_lr']:g}..{s['max_lr']:g}")
    prune, pbt = s.get("prune"), s.get("pbt")
    halving = (f"; successive halving from step {prune['min_steps']}, factor "
               f"{prune['reduction_factor']}" if prune else
               f"; population-based training every {pbt['interval']} steps, quantile "
               f"{pbt['fraction']:g}" if pbt else "")
    if s.get("task"):
        from jaxlr._cli.user_task import describe

        model = f"task {describe(s['task']['ref'], s['task']['options'])}"
    else:
        model = f"{s['model']} on {s['dataset']}"
    return (f"jaxlr {s['command']}: {members} members ({shape}); {model}, "
            f"{','.join(names_of(s, 'optimizer'))}, {what}, {s['steps']} steps of batch "
            f"{s['batch_size']}{halving}; {len(devices)} {kind} device(s)")


def _print_sweep(summary: dict, run_dir: Path, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_records.plain({"run_dir": str(run_dir), **summary}), indent=2))
        return
    print(_records.format_table(summary))
    print(_records.format_recommendation(summary))
    if summary.get("comparison"):
        print(_records.format_comparison(summary))
    counts = summary.get("label_counts") or {}
    if counts:
        print("diagnosis: " + ", ".join(f"{n} {k}" for k, n in sorted(
            counts.items(), key=lambda kv: -kv[1])) + f"  (of {summary['members']} members)")
    print(f"run directory: {run_dir}")


def _sweep(s: dict, run_dir: Path, devices: list, progress: bool,
           log_dir: str | os.PathLike | None = None) -> SweepResult:
    import jaxlr

    run = build_task(s)
    task = run.task
    by = "eval" if task.eval_data is not None else "loss"  # a --task may have no eval data
    prune, pbt = s.get("prune"), s.get("pbt")
    policy = (jaxlr.successive_halving(**prune, by=by) if prune else
              jaxlr.population_based(pbt["interval"], fraction=pbt["fraction"], by=by)
              if pbt else None)
    return jaxlr.sweep(task.init, task.loss_fn, task.data, run.optimizer, run.grid,
                       steps=s["steps"], batch_size=s["batch_size"], eval_data=task.eval_data,
                       eval_every=s["eval_every"] if by == "eval" else None, devices=devices,
                       checkpoint=str(run_dir / _records.CHECKPOINTS), progress=progress,
                       chunk_size=s["chunk_size"], policy=policy, log_dir=log_dir)


def _tensorboard_dir(ns: argparse.Namespace, *, claim: bool = True) -> Path | None:
    """``--tensorboard OUT`` checked (and claimed: created, marked) before any training: new,
    empty or an earlier jaxlr export, never a directory of the user's files; for a sweep, not
    the run directory nor one holding it (it may be inside it)."""
    out = getattr(ns, "tensorboard", None)
    if out is None:
        return None
    if ns.command == "sweep":
        run = Path(ns.out if ns.out is not None else Path("runs") / "new-run").resolve()
        if Path(out).resolve() in (run, *run.parents):
            inside = (f", e.g. --tensorboard {_records.quote(Path(ns.out) / 'tensorboard')}"
                      if ns.out is not None else "")
            raise UsageError(f"--tensorboard {_records.quote(out)} would hold the run directory;"
                             f" give a directory outside it{inside}")
    try:
        return _records.prepare_tensorboard_dir(out, claim=claim)
    except (ImportError, ValueError) as e:
        raise UsageError(f"--tensorboard {_records.quote(out)}: {e}") from None


def _export_tensorboard(result: SweepResult, out: Path) -> None:
    try:
        _records.write_tensorboard(result, out)
    except (ImportError, ValueError) as e:
        raise UsageError(f"--tensorboard {_records.quote(out)}: {e}") from None
    _info(f"TensorBoard export: {out}; view it with: tensorboard --logdir {_records.quote(out)}")


def _finish_sweep(s: dict, run_dir: Path, devices: list, ns: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    tensorboard = getattr(ns, "tensorboard", None)
    try:
        result = _sweep(s, run_dir, devices, not ns.no_progress, tensorboard)
    except KeyboardInterrupt:
        _info(f"\ninterrupted; continue with: jaxlr resume {_records.quote(run_dir)}")
        return 130
    elapsed = time.perf_counter() - t0
    summary = _records.save(result, run_dir, extra={"run_dir": str(run_dir),
                                                    "elapsed_s": round(elapsed, 2)})
    _print_sweep(summary, run_dir, ns.json)
    if tensorboard is not None:  # written while it trained (sweep's log_dir)
        _info(f"TensorBoard log: {tensorboard}; view it with: tensorboard --logdir "
              f"{_records.quote(tensorboard)}")
    if not ns.json:
        _info(f"trained in {elapsed:.1f} s; re-print with: jaxlr report "
              f"{_records.quote(run_dir)}")
    return 0


def _start(ns: argparse.Namespace, argv: Sequence[str], command: str) -> tuple:
    """The settings, devices and a new run directory (its config.json written) of a run.

    The device count is set before anything else: checking the settings builds schedules,
    which starts JAX's backend, and after that XLA_FLAGS has no effect."""
    if getattr(ns, "devices", None) is not None and ns.devices < 1:
        raise UsageError(f"--devices must be >= 1, got --devices {ns.devices}")
    configure_devices(ns.devices)
    s = resolve(ns)
    devices = pick_devices(ns.devices)
    run_dir = _records.make_run_dir(ns.out, command)
    _write_config(run_dir, s, ns, argv, devices)
    _info(_describe(s, devices))
    _info(f"run directory: {run_dir}")
    return s, devices, run_dir


def cmd_sweep(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    _tensorboard_dir(ns, claim=False)
    s, devices, run_dir = _start(ns, argv, "sweep")
    _tensorboard_dir(ns)
    return _finish_sweep(s, run_dir, devices, ns)


def cmd_resume(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    run_dir = Path(ns.dir)
    config_path = run_dir / _records.CONFIG
    if not config_path.is_file():
        raise UsageError(f"{run_dir} holds no {_records.CONFIG}: not a jaxlr run directory; "
                         "give a directory written by jaxlr sweep")
    config = _records.read_config(config_path)  # ValueError: not jaxlr's
    if config["command"] != "sweep":
        raise UsageError(f"{run_dir} holds a jaxlr {config.get('command')} run; only sweeps "
                         f"resume (rerun it instead)")
    s = config["settings"]
    if (run_dir / _records.RESULTS).is_file():
        _info(f"{run_dir} already finished; its report:")
        return cmd_report(argparse.Namespace(dir=str(run_dir), json=ns.json, no_plot=True))
    configure_devices(s["devices"])
    devices = pick_devices(s["devices"])
    _info(_describe(s, devices))
    from jaxlr._sweep import latest_checkpoint

    chunk = latest_checkpoint(run_dir / _records.CHECKPOINTS)
    at = 0 if chunk is None else min((chunk + 1) * s["chunk_size"], s["steps"])
    _info(f"resuming at step {at} of {s['steps']} from {run_dir / _records.CHECKPOINTS}")
    return _finish_sweep(s, run_dir, devices, ns)


def cmd_find(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    import jaxlr

    s, devices, run_dir = _start(ns, argv, "find")
    task = task_of(s)
    constants = {k: v[0] for k, v in s["params"].items()}
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        result = jaxlr.find_lr(task.init, task.loss_fn, task.data,
                               lambda schedule: make_optimizer(s, constants, schedule),
                               min_lr=s["min_lr"], max_lr=s["max_lr"], steps=s["steps"],
                               seeds=s["seeds"], batch_size=s["batch_size"], beta=s["beta"],
                               progress=not ns.no_progress)
    for w in caught:
        _info(f"warning: {w.message}")
    elapsed = time.perf_counter() - t0
    summary = _records.save_finder(result, run_dir, extra={"run_dir": str(run_dir),
                                                           "elapsed_s": round(elapsed, 2)})
    if ns.json:
        print(json.dumps(_records.plain(summary), indent=2))
    else:
        print(_records.format_finder(summary))
        png = run_dir / _records.FINDER_PNG
        print(f"run directory: {run_dir}" + (f"  (plot: {png})" if png.exists() else ""))
    return 0


def cmd_report(ns: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    run_dir = Path(ns.dir)
    try:
        result = _records.load(run_dir)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    from jaxlr._finder import FinderResult

    tensorboard = getattr(ns, "tensorboard", None)
    if isinstance(result, FinderResult):
        if tensorboard is not None:
            raise UsageError(f"--tensorboard exports sweeps; {run_dir} holds an LR range test "
                             "(jaxlr find)")
        summary = _records.finder_summary(result)
        if not ns.no_plot:
            _records.plot_finder_png(result, run_dir)
        if ns.json:
            print(json.dumps(_records.plain({"run_dir": str(run_dir), **summary}), indent=2))
        else:
            print(_records.format_finder(summary))
            print(f"run directory: {run_dir}")
        return 0
    if tensorboard is not None:
        _tensorboard_dir(ns)
    summary = _records.summarize(result)
    if not ns.no_plot:
        _records.plot_sweep_png(result, run_dir)
    _print_sweep(summary, run_dir, ns.json)
    if tensorboard is not None:
        _export_tensorboard(result, Path(tensorboard))
    return 0


# --------------------------------------------------------------------------- argparse


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (raised, so main returns 2 instead of exiting)."""

    def error(self, message: str):  # noqa: D102
        raise UsageError(f"{message}; see {self.prog} --help")


def _common(p: argparse.ArgumentParser, *, steps: int, seeds: str) -> None:
    g = p.add_argument_group("task")
    g.add_argument("--dataset", choices=sorted(DATASETS), default="digits",
                   help="dataset (default digits: " + DATASETS["digits"].description + ")")
    g.add_argument("--model", choices=MODELS, default="mlp",
                   help="mlp: 64-128-10 MLP; cnn: two 3x3 convs on the 8x8 images; logreg: "
                   "linear (default mlp)")
    g.add_argument("--task", metavar="FILE.py:FUNCTION", help="your own task instead of "
                   "--model/--dataset: FUNCTION(**options) in FILE.py (or package.module:"
                   "FUNCTION) returns jaxlr.Task(init, loss_fn, data, eval_data); the run "
                   "records it (and its file's SHA-256) so resume and load rebuild it")
    g.add_argument("--task-option", metavar="KEY=VALUE", action="append", help="an option "
                   "passed to the task's FUNCTION (repeatable; VALUE read as JSON when it "
                   "parses, e.g. width=256, else a string)")
    g.add_argument("--steps", default=steps, help=f"training steps (default {steps})")
    g.add_argument("--batch-size", default=128, help="examples per step (default 128)")
    g.add_argument("--seeds", help=f"a count (seeds 0..n-1) or a comma list (default {seeds}; "
                   "1 for --model cnn)")
    o = p.add_argument_group("optimizer (a comma list of values sweeps them; floats also "
                             "take a log range lo:hi:n)")
    o.add_argument("--optimizer", default="adam", metavar="NAME[,NAME...]",
                   help=f"one of {', '.join(OPTIMIZERS)} (default adam; momentum = sgd with "
                   "momentum 0.9; prodigy, dadapt_adamw, dog, mechanic (Adam scaled) and cocob "
                   "are LR-free: --lr is their multiplier). A comma list compares them in one "
                   "sweep (a categorical grid axis; the LR-free ones at lr 1)")
    o.add_argument("--convention", choices=("optax", "torch"), default="optax",
                   help="numerics of optax (default) or PyTorch")
    o.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    for name in OPTIMIZER_PARAMS:
        o.add_argument(PARAM[name].flag, help=PARAM[name].help)
    r = p.add_argument_group("run")
    r.add_argument("--out", help="run directory (default runs/<timestamp>-<command>)")
    r.add_argument("--devices", type=int, help="shard over this many devices (default: all; "
                   "on a CPU one device per core, unless XLA_FLAGS is set)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="print a JSON summary to stdout")
    r.add_argument("--config", metavar="FILE.toml", help="read the options from a TOML file "
                   "(keys named like the flags, e.g. batch-size = 64); flags given here "
                   "override it")
    r.add_argument("--print-config", action="store_true", help="print every option of this "
                   "run as a TOML config file and exit (save it, run it with --config)")


_TENSORBOARD_HELP = ("also write the sweep to the TensorBoard log directory OUT (new, empty or "
                     "an earlier export; jaxlr sweep writes it while training, after each "
                     "chunk): a run per member with its hyperparameters (HParams) and curves; "
                     "needs pip install jaxlr[tensorboard]")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxlr", description="Choose, schedule and diagnose the learning "
                     "rate of a JAX model: vectorized LR sweeps and the LR range test.")
    parser.add_argument("--version", action="version",
                        version=f"jaxlr {_records.package_version('jaxlr')}")
    sub = parser.add_subparsers(dest="command", metavar="{sweep,find,report,resume}")
    sw = sub.add_parser("sweep", help="train a grid of LRs (x seeds x any option) as one "
                        "program", description="Train every member of a grid (LRs x seeds x "
                        "options given as lists) as ONE compiled program. Without arguments: "
                        "an MLP on digits, Adam, 16 LRs 1e-4..1 x 3 seeds, 500 steps.")
    sw.add_argument("--lr", default="1e-4:1:16", help="learning rates: a log range lo:hi:n "
                    "or a comma list (default 1e-4:1:16)")
    _common(sw, steps=500, seeds="3")
    s = sw.add_argument_group("schedule")
    s.add_argument("--schedule", default="constant", metavar="NAME[,NAME...]",
                   help=f"LR schedule with --lr as its peak: one of {', '.join(SCHEDULES)} "
                   "(default constant); a comma list compares them in one sweep")
    for p in PARAMS:
        if p.name not in OPTIMIZER_PARAMS:
            s.add_argument(p.flag, help=p.help)
    s.add_argument("--eval-every", help="evaluate every N steps (default: every chunk, 100)")
    s.add_argument("--chunk-size", help="steps per compiled chunk = checkpoint period "
                   "(default min(steps, 100))")
    s.add_argument("--prune", metavar="MIN_STEPS", help="successive halving: at steps "
                   "MIN_STEPS x factor^k keep the best 1/factor of the settings by eval loss "
                   "(mean over seeds); the rest stop there (default: no pruning)")
    s.add_argument("--prune-factor", default="3", help="successive halving's reduction factor "
                   "(default 3)")
    s.add_argument("--pbt", metavar="INTERVAL", help="population-based training: every "
                   "INTERVAL steps the worst members (by eval loss) copy the best ones' state "
                   "and LR, perturbed (x0.8 or x1.25) or redrawn from --lr; the report prints "
                   "the discovered schedule (default: none)")
    s.add_argument("--pbt-fraction", default="0.25", help="PBT's quantile: the bottom and "
                   "top fraction, in (0, 0.5] (default 0.25)")
    sw.add_argument("--tensorboard", metavar="OUT", help=_TENSORBOARD_HELP)
    fd = sub.add_parser("find", help="LR range test: one exponential LR ramp, per seed",
                        description="LR range test (Smith 2017) on the same defaults: the LR "
                        "grows exponentially from --min-lr to --max-lr; prints the suggested "
                        "LRs and saves finder.png.")
    _common(fd, steps=100, seeds="3")
    fd.add_argument("--min-lr", default="1e-7", help="first LR of the ramp (default 1e-7)")
    fd.add_argument("--max-lr", default="10", help="last LR of the ramp (default 10)")
    fd.add_argument("--beta", default="0.98", help="the divergence stop's moving-average "
                    "factor, in [0, 1) (default 0.98, as fastai; 0: no smoothing at all, the "
                    "suggestions then read the raw losses)")
    rp = sub.add_parser("report", help="re-print the table and re-draw the plots of a run",
                        description="Re-print a saved run's table and re-draw its plots, "
                        "without training.")
    rp.add_argument("dir", help="a run directory")
    rp.add_argument("--json", action="store_true", help="print a JSON summary to stdout")
    rp.add_argument("--no-plot", action="store_true", help="do not re-draw the PNG")
    rp.add_argument("--tensorboard", metavar="OUT", help=_TENSORBOARD_HELP)
    rs = sub.add_parser("resume", help="continue a killed sweep from its checkpoints",
                        description="Continue a sweep from its last checkpoint (same result "
                        "as an uninterrupted run).")
    rs.add_argument("dir", help="the run directory of the sweep")
    rs.add_argument("--no-progress", action="store_true", help="no progress bar")
    rs.add_argument("--json", action="store_true", help="print a JSON summary to stdout")
    parser.subcommands = {"sweep": sw, "find": fd, "report": rp, "resume": rs}
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"jaxlr: warning: {' '.join(str(message).split())}", file=sys.stderr)


COMMANDS = {"sweep": cmd_sweep, "find": cmd_find, "report": cmd_report, "resume": cmd_resume}


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """The parsed command line, a ``--config`` file's options under the flags given; and the
    command's parser."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command is None:
        raise UsageError("give a command: sweep, find, report or resume (e.g. jaxlr sweep); "
                         "see jaxlr --help")
    sub = parser.subcommands[ns.command]
    if getattr(ns, "config", None) is not None:  # the file's options; flags override
        sub.set_defaults(**config.read(ns.config, sub))
        ns = parser.parse_args(argv)
    return ns, sub


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``jaxlr`` command; returns the exit code (0 ok, 2 user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="replace")
            except (ValueError, OSError):  # pragma: no cover - a detached stream
                pass
    try:
        ns, sub = parse(argv)
        if getattr(ns, "print_config", False):
            print(config.dump(ns, sub), end="")
            return 0
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return COMMANDS[ns.command](ns, argv)
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    except (UsageError, ValueError, OSError) as e:
        if os.environ.get("JAXLR_DEBUG"):
            raise
        msg = " ".join(str(e).split())  # one line
        print(f"jaxlr: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
