"""jaxlr: the learning rate for JAX — traceable schedules, optimizers and plateau decay,
vectorized LR sweeps and the LR range test."""

from importlib.metadata import PackageNotFoundError as _PNF
from importlib.metadata import version as _version

from jaxlr._diagnose import Diagnosis, diagnose
from jaxlr._finder import FinderResult, find_lr
from jaxlr._optim import (
    Controller,
    HypergradientState,
    LearningRateState,
    PlateauState,
    adagrad,
    adam,
    adamw,
    cocob,
    constant,
    cosine_decay,
    cosine_restarts,
    current_lr,
    cyclic,
    dadapt_adamw,
    dog,
    eval_params,
    exponential_decay,
    hypergradient,
    inverse_time_decay,
    join,
    linear,
    mechanize,
    multistep_decay,
    one_cycle,
    polynomial_decay,
    prodigy,
    reduce_on_plateau,
    rmsprop,
    scale_by_learning_rate,
    schedule_free_adamw,
    schedule_free_eval_params,
    sgd,
    step_decay,
    tabulated,
    warmup,
    warmup_cosine_decay,
    warmup_stable_decay,
)
from jaxlr._records import load, write_tensorboard
from jaxlr._sweep import (
    Best,
    Grid,
    PopulationBased,
    Segment,
    SuccessiveHalving,
    SweepResult,
    Task,
    clear_caches,
    grid,
    population_based,
    successive_halving,
    sweep,
)

__all__ = [
    # schedules
    "constant", "linear", "polynomial_decay", "exponential_decay", "cosine_decay",
    "warmup_cosine_decay", "join", "step_decay", "multistep_decay", "one_cycle", "cyclic",
    "inverse_time_decay", "cosine_restarts", "warmup", "warmup_stable_decay", "tabulated",
    # optimizers and controllers
    "sgd", "adagrad", "rmsprop", "adam", "adamw", "scale_by_learning_rate", "current_lr",
    "LearningRateState", "reduce_on_plateau", "Controller", "PlateauState", "hypergradient",
    "HypergradientState",
    # LR-free
    "prodigy", "dadapt_adamw", "dog", "mechanize", "cocob", "schedule_free_adamw",
    "schedule_free_eval_params", "eval_params",
    # sweeps and the LR range test
    "grid", "Grid", "sweep", "SweepResult", "Task", "Best", "find_lr", "FinderResult", "load",
    "write_tensorboard",
    "successive_halving", "SuccessiveHalving", "population_based", "PopulationBased", "Segment",
    "clear_caches",
    # diagnosis
    "diagnose", "Diagnosis",
]

try:
    __version__ = _version("jaxlr")
except _PNF:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
