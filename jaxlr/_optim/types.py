"""The types the layers share, as optax writes them (``optax/_src/base.py``): a hyperparameter
is ``jax.typing.ArrayLike`` (a Python number or a, possibly traced, 0-d array), a schedule maps
a step to an LR, and a learning rate is a real ``Union`` of the three things jaxlr accepts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Union

import jax
from jax.typing import ArrayLike

if TYPE_CHECKING:
    from jaxlr._optim.plateau import Controller

Schedule = Callable[[ArrayLike], jax.Array]  # step -> lr (float32)
LearningRate = Union[ArrayLike, Schedule, "Controller"]  # noqa: UP007 - a forward reference

__all__ = ["ArrayLike", "LearningRate", "Schedule"]
