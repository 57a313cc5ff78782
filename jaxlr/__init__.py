"""jaxlr: the learning rate for JAX — traceable schedules, optimizers and plateau decay."""

from importlib.metadata import PackageNotFoundError as _PNF
from importlib.metadata import version as _version

# --- schedules (jaxlr/_schedules.py) ---
from jaxlr._schedules import (
    constant,
    cosine_decay,
    cosine_restarts,
    cyclic,
    exponential_decay,
    inverse_time_decay,
    join,
    linear,
    multistep_decay,
    one_cycle,
    polynomial_decay,
    step_decay,
    warmup,
    warmup_cosine_decay,
    warmup_stable_decay,
)

# --- end schedules ---

# --- optimizers and controllers ---
from jaxlr._learning_rate import LearningRateState, current_lr, scale_by_learning_rate
from jaxlr._optimizers import adagrad, adam, adamw, rmsprop, sgd
from jaxlr._plateau import Controller, PlateauState, reduce_on_plateau

# --- end optimizers ---

# --- sweep ---
from jaxlr._grid import Grid, grid
from jaxlr._result import Best, SweepResult
from jaxlr._sweep import sweep

# --- end sweep ---

try:
    __version__ = _version("jaxlr")
except _PNF:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
