"""The bottom layer: schedules, controllers, the learning-rate step and the optimizers.

It knows nothing of sweeps. Other folders import from this package only (never from its
modules); what they may use is listed here.
"""

from jaxlr._optim.checks import DIVERGENCE_FACTOR, concrete, f32, hparam, is_traced
from jaxlr._optim.hypergradient import HypergradientState, hypergradient
from jaxlr._optim.learning_rate import (
    LearningRateState,
    current_lr,
    lr_or_none,
    scale_by_learning_rate,
)
from jaxlr._optim.lr_free import (
    cocob,
    dadapt_adamw,
    dog,
    eval_params,
    mechanize,
    prodigy,
    schedule_free_adamw,
    schedule_free_eval_params,
)
from jaxlr._optim.optimizers import adagrad, adam, adamw, rmsprop, sgd
from jaxlr._optim.plateau import Controller, PlateauState, reduce_on_plateau
from jaxlr._optim.schedules import (
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
    tabulated,
    warmup,
    warmup_cosine_decay,
    warmup_stable_decay,
)
from jaxlr._optim.types import ArrayLike, LearningRate, Schedule

__all__ = [
    "DIVERGENCE_FACTOR", "concrete", "f32", "hparam", "is_traced",
    "ArrayLike", "LearningRate", "Schedule",
    "LearningRateState", "current_lr", "lr_or_none", "scale_by_learning_rate",
    "adagrad", "adam", "adamw", "rmsprop", "sgd",
    "prodigy", "dadapt_adamw", "dog", "mechanize", "cocob", "schedule_free_adamw",
    "schedule_free_eval_params", "eval_params",
    "Controller", "PlateauState", "reduce_on_plateau",
    "HypergradientState", "hypergradient",
    "constant", "cosine_decay", "cosine_restarts", "cyclic", "exponential_decay",
    "inverse_time_decay", "join", "linear", "multistep_decay", "one_cycle", "polynomial_decay",
    "step_decay", "tabulated", "warmup", "warmup_cosine_decay", "warmup_stable_decay",
]
