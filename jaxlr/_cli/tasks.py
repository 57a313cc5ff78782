"""What the ``jaxlr`` command trains: datasets, models, and the hp -> schedule/optimizer code.

Settings come from the command line (:func:`resolve`), become a grid of the swept options
(:func:`swept`), and a :class:`Task` (:func:`build_task`): init, loss, data and
``optimizer(hp)`` reading every swept value from the traced ``hp`` so that the grid compiles
once.

Why one file of ~690 lines: the settings (parsed and checked) and the datasets, models,
schedules and optimizers they select, each a few lines; splitting would scatter one table.
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import jax
    import optax
    from flax import nnx

    from jaxlr._optim import ArrayLike, LearningRate
    from jaxlr._sweep import Grid, Task

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw", "schedule_free_adamw",
              "prodigy", "dadapt_adamw", "dog", "mechanic", "cocob")
# LR-free methods: --lr is their multiplier (default 1); beside other optimizers they run at 1
LR_FREE = ("prodigy", "dadapt_adamw", "dog", "mechanic", "cocob")
NESTEROV = ("sgd", "momentum", "rmsprop", "adam", "adamw")  # the ones --nesterov applies to
SCHEDULES = ("constant", "step", "exponential", "cosine", "warmup_cosine", "one_cycle", "plateau")
MODELS = ("mlp", "cnn", "logreg")
_ALL = None  # applies to every optimizer / schedule


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


# --------------------------------------------------------------------------- datasets


class DatasetSpec(NamedTuple):
    features: int  # flattened input size
    image_shape: tuple[int, int, int]  # (height, width, channels), for the CNN
    classes: int
    load: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    description: str


def _load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's digits scaled to [0, 1]; a fixed permutation (seed 0): 1,438 train / 359 eval."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError("--dataset digits needs scikit-learn (the digits ship inside it, no "
                         "download): pip install scikit-learn  (or pip install 'jaxlr[all]')"
                         ) from None
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(x))
    n_eval = len(x) // 5
    train, held_out = perm[n_eval:], perm[:n_eval]
    return x[train], y[train], x[held_out], y[held_out]


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(64, (8, 8, 1), 10, _load_digits,
                          "scikit-learn digits, 8x8 grey images, 10 classes"),
}


# --------------------------------------------------------------------------- models


def _nnx():
    from flax import nnx

    return nnx


def make_model(name: str, spec: DatasetSpec) -> Callable[[jax.Array], nnx.Module]:
    """``key -> nnx.Module`` for ``--model`` on a dataset (inputs arrive flattened)."""
    import jax

    nnx = _nnx()

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(spec.features, 128, rngs=rngs)
            self.out = nnx.Linear(128, spec.classes, rngs=rngs)

        def __call__(self, x):
            return self.out(jax.nn.relu(self.hidden(x)))

    class CNN(nnx.Module):
        def __init__(self, rngs):
            h, w, c = spec.image_shape
            self.conv1 = nnx.Conv(c, 16, kernel_size=(3, 3), rngs=rngs)
            self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), strides=(2, 2), rngs=rngs)
            self.out = nnx.Linear(32 * (-(-h // 2)) * (-(-w // 2)), spec.classes, rngs=rngs)

        def __call__(self, x):
            x = x.reshape(x.shape[0], *spec.image_shape)
            x = jax.nn.relu(conv_same(x, self.conv1.kernel.value, self.conv1.bias.value, 1))
            x = jax.nn.relu(conv_same(x, self.conv2.kernel.value, self.conv2.bias.value, 2))
            return self.out(x.reshape(x.shape[0], -1))

    class LogReg(nnx.Module):
        def __init__(self, rngs):
            self.out = nnx.Linear(spec.features, spec.classes, rngs=rngs)

        def __call__(self, x):
            return self.out(x)

    cls = {"mlp": MLP, "cnn": CNN, "logreg": LogReg}[name]
    return lambda key: cls(nnx.Rngs(key))


def conv_same(x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int) -> jax.Array:
    """A 'SAME' convolution (NHWC input, HWIO kernel) as im2col and one matmul: the patches
    are shifted strided slices of the padded input, padded as XLA pads 'SAME' (the extra row
    or column after). Equal to ``lax.conv_general_dilated`` to float tolerance; under vmap over
    sweep members with their own kernels it is a batched matmul, where a vmapped convolution
    becomes a grouped one that XLA:CPU ran ~6x slower (43 vs 7 ms per member-step for the
    built-in CNN at batch 128)."""
    import jax.numpy as jnp

    kh, kw, cin, cout = kernel.shape
    pads = []
    for size, k in ((x.shape[1], kh), (x.shape[2], kw)):
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    h, w = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    cols = [xp[:, i:i + (h - 1) * stride + 1:stride, j:j + (w - 1) * stride + 1:stride, :]
            for i in range(kh) for j in range(kw)]
    return jnp.concatenate(cols, axis=-1) @ kernel.reshape(kh * kw * cin, cout) + bias


def loss_fn(model: nnx.Module, batch: tuple[jax.Array, jax.Array]):
    """Softmax cross-entropy, with the accuracy as an aux metric."""
    import jax.numpy as jnp
    import optax

    x, y = batch
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, {"accuracy": jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))}


# --------------------------------------------------------------------------- hyperparameters


class Param(NamedTuple):
    """An optimizer or schedule hyperparameter: a CLI option, sweepable with a comma list."""

    name: str
    kind: type  # int or float
    help: str
    optimizers: frozenset | None
    schedules: frozenset | None
    default: Callable[[dict], float | int]
    valid: tuple[str, str] | None = None  # (interval, a typical value) checked at parsing

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def applies(self, s: dict) -> bool:
        return ((self.optimizers is None or s["optimizer"] in self.optimizers)
                and (self.schedules is None or s.get("schedule") in self.schedules))


def _set(*names: str) -> frozenset:
    return frozenset(names)


# the optimizers with Adam's two betas (Mechanic wraps Adam)
_ADAMS = _set("adam", "adamw", "schedule_free_adamw", "prodigy", "dadapt_adamw", "mechanic")


PARAMS = (
    Param("momentum", float, "momentum (sgd, rmsprop: default 0; momentum: 0.9)",
          _set("sgd", "momentum", "rmsprop"), _ALL,
          lambda s: 0.9 if s["optimizer"] == "momentum" else 0.0, ("[0, 1)", "0.9")),
    Param("weight_decay", float, "weight decay: decoupled for adamw (default 1e-4, torch "
          "convention 1e-2), L2 added to the gradient for the others (default 0)", _ALL, _ALL,
          lambda s: (1e-2 if s["convention"] == "torch" else 1e-4)
          if s["optimizer"] == "adamw" else 0.0),
    Param("b1", float, "Adam's beta1 (default 0.9)", _ADAMS, _ALL, lambda s: 0.9,
          ("[0, 1)", "0.9")),
    Param("b2", float, "Adam's beta2 (default 0.999)", _ADAMS, _ALL, lambda s: 0.999,
          ("[0, 1)", "0.999")),
    Param("warmup_steps", int, "linear warm-up steps before the schedule (default 0; "
          "warmup_cosine: steps/10)", _ALL, frozenset(set(SCHEDULES) - {"one_cycle"}),
          lambda s: s["steps"] // 10 if s["schedule"] == "warmup_cosine" else 0),
    Param("decay_rate", float, "exponential: the LR's factor over the steps after warm-up "
          "(default 0.01)", _ALL, _set("exponential"), lambda s: 0.01, ("(0, 1)", "0.01")),
    Param("step_size", int, "step: steps between LR cuts (default steps/3)", _ALL, _set("step"),
          lambda s: max(1, s["steps"] // 3)),
    Param("factor", float, "step, plateau: the LR multiplier of a cut (default 0.1)", _ALL,
          _set("step", "plateau"), lambda s: 0.1, ("(0, 1)", "0.1")),
    Param("alpha", float, "cosine, warmup_cosine: final LR as a fraction of --lr (default 0)",
          _ALL, _set("cosine", "warmup_cosine"), lambda s: 0.0),
    Param("pct_start", float, "one_cycle: fraction of steps rising to --lr (default 0.3)", _ALL,
          _set("one_cycle"), lambda s: 0.3),
    Param("div_factor", float, "one_cycle: start LR = lr / div_factor (default 25)", _ALL,
          _set("one_cycle"), lambda s: 25.0),
    Param("final_div_factor", float, "one_cycle: end LR = start / final_div_factor "
          "(default 1e4)", _ALL, _set("one_cycle"), lambda s: 1e4),
    Param("patience", int, "plateau: decisions without improvement before a cut (default 10)",
          _ALL, _set("plateau"), lambda s: 10),
    Param("cooldown", int, "plateau: decisions after a cut before counting again (default 0)",
          _ALL, _set("plateau"), lambda s: 0),
    Param("threshold", float, "plateau: relative improvement that counts (default 1e-4)",
          _ALL, _set("plateau"), lambda s: 1e-4),
    Param("accumulate", int, "plateau: batch losses averaged per decision (default 10)", _ALL,
          _set("plateau"), lambda s: 10),
)
PARAM = {p.name: p for p in PARAMS}
OPTIMIZER_PARAMS = ("momentum", "weight_decay", "b1", "b2")


def _number(flag: str, text: str, kind: type) -> float | int:
    what = "a whole number" if kind is int else "a number"
    try:
        value = float(text)
    except ValueError:
        example = "50" if kind is int else "0.1"
        raise UsageError(f"{flag}: {text!r} is not {what}; e.g. {flag} {example}") from None
    if not math.isfinite(value):
        raise UsageError(f"{flag}: {text!r} is not a finite number")
    if kind is int:
        if value != int(value):
            raise UsageError(f"{flag}: {text!r} is not a whole number; e.g. {flag} 50")
        return int(value)
    return value


def inside(value: float, interval: str) -> bool:
    """Whether ``value`` lies in ``interval``, written ``[lo, hi)``, ``(lo, hi)``..."""
    lo, hi = (float(x) for x in interval[1:-1].split(","))
    return ((lo <= value if interval[0] == "[" else lo < value)
            and (value <= hi if interval[-1] == "]" else value < hi))


def parse_values(flag: str, text: str, kind: type = float, log_range: bool = False) -> list:
    """``a,b,c`` (or, with ``log_range``, ``lo:hi:n``: n log-spaced values) -> a list."""
    text = text.strip()
    if log_range and ":" in text:
        parts = text.split(":")
        example = f"e.g. {flag} 1e-4:1:16"
        if len(parts) != 3:
            raise UsageError(f"{flag} {text}: a log range is lo:hi:n ({example})")
        lo, hi = (_number(flag, p, float) for p in parts[:2])
        n = _number(flag, parts[2], int)
        if lo <= 0:
            raise UsageError(f"{flag} {text}: lo must be > 0 on a log range ({example})")
        if hi <= lo:
            raise UsageError(f"{flag} {text}: lo must be < hi, got lo={lo:g}, hi={hi:g} "
                             f"({example})")
        if n < 2:
            raise UsageError(f"{flag} {text}: n must be >= 2 ({example}), or give one value")
        return [float(v) for v in np.geomspace(lo, hi, n)]
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            values.append(_number(flag, part, kind))
        except UsageError:
            if not log_range:
                raise
            raise UsageError(f"{flag}: {part!r} is not a number; give a log range lo:hi:n "
                             f"(e.g. {flag} 1e-4:1:16) or a comma list (e.g. {flag} "
                             "1e-3,3e-3)") from None
    if not values:
        raise UsageError(f"{flag}: no value given; e.g. {flag} 0.1 or {flag} 0.1,0.3")
    dup = [v for v in set(values) if values.count(v) > 1]
    if dup:
        raise UsageError(f"{flag} {text}: {dup[0]:g} is listed twice; give each value once")
    return values


def parse_seeds(text: str) -> list[int]:
    """``3`` -> seeds 0, 1, 2; ``0,5,7`` -> those seeds."""
    values = parse_values("--seeds", text, int)
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise UsageError(f"--seeds {text}: give a count >= 1 (e.g. --seeds 3 for seeds "
                             "0,1,2) or a list of seeds (e.g. --seeds 0,5,7)")
        return list(range(values[0]))
    if min(values) < 0:
        raise UsageError(f"--seeds {text}: seeds must be >= 0")
    return values


# --------------------------------------------------------------------------- settings


def _positive_int(flag: str, value: str | int, low: int = 1) -> int:
    v = _number(flag, str(value), int)
    if v < low:
        raise UsageError(f"{flag} must be >= {low}, got {flag} {value}")
    return v


def resolve(ns: argparse.Namespace) -> dict[str, Any]:
    """The run's settings from the parsed options: defaults filled in, every value checked
    (by building the optimizer of every setting with concrete values). Raises UsageError."""
    command = ns.command
    s: dict[str, Any] = {
        "command": command, "dataset": ns.dataset, "model": ns.model,
        "optimizer": _names("--optimizer", ns.optimizer, OPTIMIZERS, command),
        "convention": ns.convention, "nesterov": ns.nesterov,
        "steps": _positive_int("--steps", ns.steps, 10 if command == "find" else 1),
        "batch_size": _positive_int("--batch-size", ns.batch_size),
        # the CNN's default is one seed: 16 LRs x 500 steps then take about a minute on 2 cores
        "seeds": parse_seeds(ns.seeds if ns.seeds is not None else
                             "1" if ns.model == "cnn" and ns.task is None else "3"),
    }
    if getattr(ns, "devices", None) is not None and ns.devices < 1:
        raise UsageError(f"--devices must be >= 1, got --devices {ns.devices}")
    s["task"] = _user_task(ns)
    if s["task"]:
        s["model"] = s["dataset"] = None
        import jax

        n_train = int(jax.tree.leaves(task_of(s).data)[0].shape[0])
        where = f"the task's data ({s['task']['ref']})"
    else:
        n_train = len(DATASETS[s["dataset"]].load()[0])
        where = f"--dataset {s['dataset']}"
    if s["batch_size"] > n_train:
        raise UsageError(f"--batch-size {s['batch_size']} is larger than the {n_train} training "
                         f"examples of {where}; lower it (e.g. 128)")
    optimizers = names_of(s, "optimizer")
    other = [o for o in optimizers if o not in NESTEROV]
    if ns.nesterov and other:
        raise UsageError(f"--nesterov applies to {', '.join(NESTEROV)}, not --optimizer "
                         f"{', '.join(other)}")
    other = [o for o in optimizers if o not in OPTIMIZERS[:6]]
    if s["convention"] == "torch" and other:
        raise UsageError(f"--convention torch applies to {', '.join(OPTIMIZERS[:6])} (PyTorch's "
                         f"numerics), not --optimizer {', '.join(other)}")
    if command == "sweep":
        s["schedule"] = _names("--schedule", ns.schedule, SCHEDULES, command)
        s["lr"] = parse_values("--lr", ns.lr, float, log_range=True)
        if min(s["lr"]) <= 0:
            raise UsageError(f"--lr {ns.lr}: learning rates must be > 0")
        s["eval_every"] = (_positive_int("--eval-every", ns.eval_every)
                           if ns.eval_every is not None else None)
        s["prune"] = None
        if ns.prune is not None:  # successive halving ranked by eval: rungs are eval steps
            s["prune"] = {"min_steps": _positive_int("--prune", ns.prune),
                          "reduction_factor": _positive_int("--prune-factor",
                                                            ns.prune_factor, 2)}
            first, steps = s["prune"]["min_steps"], s["steps"]
            if first >= steps:  # the rungs are min_steps * factor**k < steps: none
                raise UsageError(f"--prune {first} with --steps {steps} would never prune: the "
                                 f"first rung (step {first}) is not before the last step; give "
                                 f"--prune below --steps, e.g. --prune {max(1, steps // 5)}")
            if ns.eval_every is None and ns.chunk_size is None:
                s["eval_every"] = math.gcd(s["prune"]["min_steps"], 100)
        s["pbt"] = None
        if getattr(ns, "pbt", None) is not None:  # population-based training, ranked by eval
            if s["prune"]:
                raise UsageError("--pbt and --prune are two policies: give one of them")
            fraction = _number("--pbt-fraction", ns.pbt_fraction, float)
            if not 0 < fraction <= 0.5:
                raise UsageError(f"--pbt-fraction must be in (0, 0.5], got --pbt-fraction "
                                 f"{ns.pbt_fraction}; e.g. 0.25")
            s["pbt"] = {"interval": _positive_int("--pbt", ns.pbt), "fraction": fraction}
            interval, steps = s["pbt"]["interval"], s["steps"]
            if interval >= steps:
                raise UsageError(f"--pbt {interval} with --steps {steps} would never exploit: "
                                 f"give --pbt below --steps, e.g. --pbt {max(1, steps // 10)}")
            if ns.eval_every is None and ns.chunk_size is None:
                s["eval_every"] = math.gcd(interval, 100)
        chunk = ns.chunk_size if ns.chunk_size is not None else min(
            s["steps"], s["eval_every"] or 100)
        s["chunk_size"] = _positive_int("--chunk-size", chunk)
        if s["eval_every"] is None:
            s["eval_every"] = s["chunk_size"]
        if s["eval_every"] % s["chunk_size"]:
            raise UsageError(f"--eval-every ({s['eval_every']}) must be a multiple of "
                             f"--chunk-size ({s['chunk_size']})")
        if s["pbt"] and s["pbt"]["interval"] % s["eval_every"]:
            raise UsageError(f"--pbt ({s['pbt']['interval']}) must be a multiple of "
                             f"--eval-every ({s['eval_every']}): members are ranked by their "
                             "eval loss at each exploit step")
        if s["prune"] and s["prune"]["min_steps"] % s["eval_every"]:
            raise UsageError(f"--prune ({s['prune']['min_steps']}) must be a multiple of "
                             f"--eval-every ({s['eval_every']}): members are ranked by their "
                             "eval loss at each rung")
    else:
        s["min_lr"] = _number("--min-lr", ns.min_lr, float)
        s["max_lr"] = _number("--max-lr", ns.max_lr, float)
        s["beta"] = _number("--beta", ns.beta, float)
        if not 0 <= s["beta"] < 1:
            raise UsageError(f"--beta must be in [0, 1), got --beta {ns.beta}; e.g. --beta 0.98")
        if not 0 < s["min_lr"] < s["max_lr"]:
            raise UsageError(f"--min-lr and --max-lr must satisfy 0 < min-lr < max-lr, got "
                             f"{s['min_lr']:g} and {s['max_lr']:g}; e.g. --min-lr 1e-7 "
                             "--max-lr 10")
    params: dict[str, list] = {}
    cats = categories(s)
    for p in PARAMS:
        given = getattr(ns, p.name, None)
        here = [c for c in cats if p.applies(c)]
        if given is None:
            if len(cats) == 1 and here:  # one category: its defaults (several: per category)
                params[p.name] = [p.default(s)]
            continue
        if not here:
            c = cats[0]
            where = (f"--optimizer {', '.join(sorted(p.optimizers))}" if p.optimizers and
                     c["optimizer"] not in p.optimizers else
                     f"--schedule {', '.join(sorted(p.schedules or ()))}")
            got = (f"--optimizer {','.join(optimizers)}" if where.startswith("--opt")
                   else f"--schedule {','.join(names_of(s, 'schedule'))}")
            raise UsageError(f"{p.flag} applies to {where}, not {got}")
        values = parse_values(p.flag, given, p.kind, log_range=p.kind is float)
        if len(values) > 1 and len(here) < len(cats):
            skip = sorted({f"{c['optimizer']}/{c.get('schedule')}" for c in cats
                           if not p.applies(c)})
            raise UsageError(f"{p.flag} {given} sweeps values that {', '.join(skip)} would not "
                             f"read (its members would repeat each other): sweep {p.flag} in "
                             "a run of the optimizers and schedules it applies to")
        for x in values if p.valid else ():
            if not inside(x, p.valid[0]):
                listed = f" (in {p.flag} {given})" if len(values) > 1 else ""
                raise UsageError(f"{p.flag} must be in {p.valid[0]}, got {p.flag} {_g(x)}"
                                 f"{listed}; e.g. {p.flag} {p.valid[1]}")
        if command == "find" and len(values) > 1:
            raise UsageError(f"{p.flag} {given}: jaxlr find takes one value per option (a "
                             "list makes a grid: use jaxlr sweep)")
        params[p.name] = values
    s["params"] = params
    if "warmup_steps" in params and max(params["warmup_steps"]) >= s["steps"]:
        raise UsageError(f"--warmup-steps must be < --steps ({s['steps']}), got "
                         f"{max(params['warmup_steps'])}")
    _check_buildable(s)
    return s


def swept(s: dict) -> dict[str, list]:
    """The numeric hyperparameter axes of the grid (lr, then every option given several
    values); several ``--optimizer``/``--schedule`` values are categorical axes on top
    (:func:`categories`)."""
    axes = {"lr": s["lr"]} if "lr" in s else {}
    axes.update({k: v for k, v in s["params"].items() if len(v) > 1})
    return axes


def _names(flag: str, text: str, choices: tuple, command: str) -> str | list[str]:
    """``--optimizer adam`` -> ``"adam"``; ``--optimizer adam,sgd`` -> ``["adam", "sgd"]``
    (a categorical grid axis: jaxlr sweep only)."""
    names = [x.strip() for x in str(text).split(",") if x.strip()]
    bad = [x for x in names if x not in choices]
    if not names or bad:
        raise UsageError(f"{flag} {text}: choose from {', '.join(choices)} (a comma list "
                         "compares several in one sweep)")
    if len(set(names)) < len(names):
        raise UsageError(f"{flag} {text}: a value is listed twice; give each once")
    if len(names) > 1 and command != "sweep":
        raise UsageError(f"{flag} {text}: jaxlr {command} takes one value (a list makes a "
                         "grid: use jaxlr sweep)")
    return names[0] if len(names) == 1 else names


def names_of(s: dict, key: str) -> list[str]:
    """The values of ``--optimizer`` or ``--schedule`` as a list (one or several)."""
    v = s.get(key)
    return [] if v is None else [v] if isinstance(v, str) else list(v)


def categories(s: dict) -> list[dict]:
    """The settings of each (optimizer, schedule) pair the run compares (one for a single
    ``--optimizer`` and ``--schedule``): ``s`` with one optimizer and one schedule."""
    schedules = names_of(s, "schedule") or [None]
    return [{**s, "optimizer": o, **({"schedule": sc} if sc is not None else {})}
            for o in names_of(s, "optimizer") for sc in schedules]


def categorical_axes(s: dict) -> list[str]:
    """The grid's categorical axes: ``optimizer`` and/or ``schedule`` when several given."""
    return [k for k in ("optimizer", "schedule") if len(names_of(s, k)) > 1]


def _defaults(c: dict, s: dict) -> dict[str, float | int]:
    """The defaults of the options category ``c`` reads that the run did not set."""
    return {p.name: p.default(c) for p in PARAMS if p.applies(c) and p.name not in s["params"]}


def _lr_values(c: dict, s: dict) -> list[float]:
    """The LRs category ``c`` runs: --lr, or beside other optimizers an LR-free method's
    multiplier 1."""
    return [1.0] if c["optimizer"] in LR_FREE and len(categories(s)) > 1 else s["lr"]


def grid_of(s: dict) -> Grid:
    """The run's grid: the swept options x seeds; with several optimizers/schedules, the
    union of each pair's grid (categorical columns first; LR-free methods at LR 1)."""
    import jaxlr

    axes, seeds = swept(s), s["seeds"]
    cat = categorical_axes(s)
    if not cat:
        return jaxlr.grid(**axes, seed=seeds)
    parts = [jaxlr.grid(**{k: [c[k]] for k in cat}, **{**axes, "lr": _lr_values(c, s)},
                        seed=seeds) for c in categories(s)]
    return jaxlr.Grid({k: np.concatenate([g.columns[k] for g in parts])
                       for k in parts[0].columns})


def _check_buildable(s: dict) -> None:
    """Build the optimizer of every setting with concrete values: jaxlr validates concrete
    hyperparameters (traced ones pass unchecked), so a bad value fails here, not silently."""
    import jax.numpy as jnp

    axes = swept(s)
    constants = {k: v[0] for k, v in s["params"].items()}
    combos = list(itertools.product(*axes.values())) if axes else [()]
    for c, combo in itertools.product(categories(s), combos):
        v = {**_defaults(c, s), **constants, **dict(zip(axes, combo))}
        try:
            if s["command"] == "sweep":
                make_optimizer(c, v, make_schedule(c, v, axes))
            else:
                make_optimizer(c, v, lambda step: jnp.float32(s["min_lr"]))
        except ValueError as e:
            shown = ", ".join(f"--{k.replace('_', '-')} {_g(x)}" for k, x in zip(axes, combo)
                              if len(axes[k]) > 1)
            raise UsageError(f"invalid value: {e}" + (f" (in the grid point {shown})"
                                                      if shown else "")) from None


def _g(x: float | int) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def make_schedule(s: dict, v: Mapping[str, ArrayLike], axes: Mapping[str, list]) -> LearningRate:
    """The learning rate of one member: a (traced) float, a schedule or a plateau controller."""
    import jaxlr

    lr, steps, name = v["lr"], s["steps"], s["schedule"]
    if name == "warmup_cosine":
        return jaxlr.warmup_cosine_decay(0.0, lr, v["warmup_steps"], steps,
                                         end_value=v["alpha"] * lr)
    if name == "one_cycle":
        return jaxlr.one_cycle(steps, lr, v["pct_start"], div_factor=v["div_factor"],
                               final_div_factor=v["final_div_factor"])
    w = v["warmup_steps"]
    warm = "warmup_steps" in axes or w != 0
    rest = steps - w
    if name in ("constant", "plateau"):
        base = jaxlr.constant(lr) if warm else lr
    elif name == "step":
        base = jaxlr.step_decay(lr, v["step_size"], v["factor"])
    elif name == "exponential":
        base = jaxlr.exponential_decay(lr, rest, v["decay_rate"])
    elif name == "cosine":
        base = jaxlr.cosine_decay(lr, rest, v["alpha"])
    else:  # pragma: no cover - argparse's choices
        raise UsageError(f"unknown --schedule {name}; choose from {', '.join(SCHEDULES)}")
    if warm:
        base = jaxlr.warmup(base, w)
    if name == "plateau":
        return jaxlr.reduce_on_plateau(base, factor=v["factor"], patience=v["patience"],
                                       threshold=v["threshold"], cooldown=v["cooldown"],
                                       accumulate=v["accumulate"])
    return base


def _lr_free(name: str, v: Mapping[str, ArrayLike],
             learning_rate: LearningRate) -> optax.GradientTransformationExtraArgs:
    """Schedule-Free AdamW and the LR-free methods (``learning_rate``: their multiplier;
    Mechanic scales Adam's updates)."""
    import jaxlr

    if name == "schedule_free_adamw":
        return jaxlr.schedule_free_adamw(learning_rate, b1=v["b1"], b2=v["b2"])
    if name == "prodigy":
        return jaxlr.prodigy(learning_rate, betas=(v["b1"], v["b2"]))
    if name == "dadapt_adamw":
        return jaxlr.dadapt_adamw(learning_rate, betas=(v["b1"], v["b2"]))
    if name == "mechanic":
        return jaxlr.mechanize(jaxlr.adam(learning_rate, v["b1"], v["b2"]))
    return (jaxlr.dog if name == "dog" else jaxlr.cocob)(learning_rate)


def make_optimizer(s: dict, v: Mapping[str, ArrayLike],
                   learning_rate: LearningRate) -> optax.GradientTransformationExtraArgs:
    """The optax transform of one member (``v``: its hyperparameters, traced or not)."""
    import optax

    import jaxlr

    name, conv, nesterov = s["optimizer"], s["convention"], s["nesterov"]
    if name in ("schedule_free_adamw", "prodigy", "dadapt_adamw", "dog", "mechanic", "cocob"):
        tx = _lr_free(name, v, learning_rate)
    elif name in ("sgd", "momentum"):
        tx = jaxlr.sgd(learning_rate, v["momentum"], nesterov, convention=conv)
    elif name == "adagrad":
        tx = jaxlr.adagrad(learning_rate, convention=conv)
    elif name == "rmsprop":
        tx = jaxlr.rmsprop(learning_rate, momentum=v["momentum"], nesterov=nesterov,
                           convention=conv)
    elif name == "adam":
        tx = jaxlr.adam(learning_rate, v["b1"], v["b2"], nesterov=nesterov, convention=conv)
    else:
        tx = jaxlr.adamw(learning_rate, v["b1"], v["b2"], weight_decay=v["weight_decay"],
                         nesterov=nesterov, convention=conv)
    wd = v["weight_decay"]
    if name != "adamw" and not (isinstance(wd, (int, float)) and wd == 0):
        if isinstance(wd, (int, float)) and wd < 0:
            raise ValueError(f"weight_decay must be >= 0, got weight_decay={wd:g}")
        tx = optax.chain(optax.add_decayed_weights(wd), tx)
    return tx


class Run(NamedTuple):
    """Everything ``jaxlr.sweep`` needs for a run's settings."""

    task: Task  # the built-in model on its dataset, or the user's --task
    grid: Grid
    optimizer: Callable[[dict], optax.GradientTransformationExtraArgs]  # hp -> optax transform


def task_of(s: dict, *, data: bool = True) -> Task:
    """The :class:`jaxlr.Task` of the settings: the user's ``--task`` (its recorded source
    checked), or the built-in ``--model`` on ``--dataset`` (data loaded if ``data``)."""
    from jaxlr import Task
    from jaxlr._cli.user_task import load_task

    if s.get("task"):
        t = s["task"]
        return load_task(t["ref"], t["options"], t["sha256"])
    spec = DATASETS[s["dataset"]]
    x, y, xe, ye = spec.load() if data else (None,) * 4
    return Task(make_model(s["model"], spec), loss_fn, (x, y), (xe, ye))


def _user_task(ns: argparse.Namespace) -> dict | None:
    """``--task`` and ``--task-option`` as settings: the reference (a file made absolute), the
    options and the SHA-256 of the source file; the task is loaded here, so a bad one fails
    before the run directory is made."""
    from jaxlr._cli.user_task import TaskError, digest, load_task, parse_options, resolve_ref

    ref = getattr(ns, "task", None)
    if ref is None:
        if getattr(ns, "task_option", None):
            raise UsageError("--task-option needs --task FILE.py:FUNCTION")
        return None
    try:
        options = parse_options(ns.task_option)
        ref, path = resolve_ref(ref)
        sha = digest(path)
        load_task(ref, options, sha)
    except TaskError as e:
        raise UsageError(str(e)) from None
    return {"ref": ref, "options": options, "sha256": sha}


def build_task(s: dict, *, data: bool = True) -> Run:
    """The task, grid and ``optimizer(hp)`` of the settings ``s``."""
    axes = swept(s)
    constants = {k: v[0] for k, v in s["params"].items()}
    cat = categorical_axes(s)

    def optimizer(hp: dict) -> optax.GradientTransformationExtraArgs:
        c = {**s, **{k: hp[k] for k in cat}}  # a category's values arrive as Python strings
        v = {**_defaults(c, s), **constants, **{k: hp[k] for k in axes}}
        return make_optimizer(c, v, make_schedule(c, v, axes))

    return Run(task_of(s, data=data), grid_of(s), optimizer)


def sweep_inputs(s: dict) -> dict:
    """What ``jaxlr._sweep.final_state`` needs to read a finished run of the settings ``s``
    back from its checkpoint (the run directory's ``config.json`` names this function as its
    ``factory``): the run's functions and grid, without its data."""
    run = build_task(s, data=False)
    return {"init": run.task.init, "loss_fn": run.task.loss_fn, "optimizer": run.optimizer,
            "grid": run.grid, "steps": s["steps"], "chunk_size": s["chunk_size"],
            "pruned": bool(s.get("prune"))}  # halving keeps the stopped members' states aside
