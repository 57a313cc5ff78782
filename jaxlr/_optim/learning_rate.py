"""The learning-rate step of every jaxlr optimizer: float, traced scalar, schedule or controller."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlr._optim import checks as _checks
from jaxlr._optim.plateau import Controller
from jaxlr._optim.types import LearningRate


class GradientController(Controller):
    """A :class:`Controller` that also sees each update's gradient and direction.

    For controllers whose rule needs more than a metric, e.g. :func:`jaxlr.hypergradient`
    (the derivative of the loss with respect to the LR is the dot product of the current
    gradient with the previous update direction). The fields are a Controller's, called with
    more arguments by the LR step:

    - ``init(params)``: the state may hold trees shaped like the parameters;
    - ``update(state, value, step, grad=g, direction=d)``: ``g`` is the raw gradient of this
      update (the ``grad=`` extra argument, which every jaxlr optimizer passes itself) and ``d``
      the direction that the LR multiplies, i.e. the update is :math:`u_t = -\\eta_t d_t`
      (``-d`` with ``flip_sign=False``); ``value`` is the metric if one was given, else None;
    - ``learning_rate(state, step)``: as for a Controller, read after ``update``.
    """

    __slots__ = ()


class LearningRateState(NamedTuple):
    """State of :func:`scale_by_learning_rate`: the update count and the LR it used.

    Attributes:
        count: int32 scalar, the number of updates made.
        lr: float32 scalar, the LR the last update used (the step-0 LR before any update);
            :func:`jaxlr.current_lr` finds it anywhere in an optimizer state.
        controller: the controller's state (e.g. :class:`PlateauState`), or ``()``.

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> opt = jaxlr.sgd(jaxlr.linear(0.1, 0.0, 10))
        >>> _, state = opt.update(jnp.ones(2), opt.init(jnp.zeros(2)))
        >>> lr_state = state[-1]
        >>> int(lr_state.count), round(float(lr_state.lr), 3)
        (1, 0.1)
    """

    count: jax.Array  # shape (), int32: number of updates made
    lr: jax.Array  # shape (), float32: LR used by the last update (the step-0 LR before any)
    controller: optax.OptState  # the controller's state, or () when the LR is not a Controller


def check_learning_rate(learning_rate: LearningRate) -> LearningRate:
    """Validate a learning rate given to a jaxlr optimizer (eagerly, when concrete).

    A number must be >= 0. A schedule or controller is returned untouched and is not evaluated
    here: its values are checked by its own constructor (jaxlr's schedules refuse a concrete
    negative value), and inside the step it is only called, with the int32 update count.
    """
    if isinstance(learning_rate, Controller) or callable(learning_rate):
        return learning_rate
    return _checks.hparam("learning_rate", learning_rate, ge=0, fix=_checks.NEGATIVE_LR)


def scale_by_learning_rate(
    learning_rate: LearningRate, *, flip_sign: bool = True
) -> optax.GradientTransformationExtraArgs:
    r"""Multiply updates by :math:`-\eta_t` and remember :math:`\eta_t` for :func:`current_lr`.

    :math:`\eta_t` is ``learning_rate`` itself (a float or traced scalar), ``learning_rate(t)``
    for a schedule, or ``controller.learning_rate(state, t)`` for a :class:`Controller` (e.g.
    :func:`jaxlr.reduce_on_plateau`), whose state is first advanced with the metric passed as
    ``update(..., value=metric)``; a :class:`GradientController` (e.g.
    :func:`jaxlr.hypergradient`) is advanced with the raw gradient (the ``grad=`` extra argument,
    passed by every jaxlr optimizer) and the incoming updates, the direction the LR multiplies.
    ``t`` counts updates from 0 (an int32 scalar, also under ``jax_enable_x64``). The LR is
    kept in float32 whatever the mode and cast to each update's dtype only for the
    multiplication. A schedule is called once per update (and once by
    ``init``) and nothing else is done with it: no eager evaluation, no check, no Python branch
    on its value; a concrete negative number is refused.

    Args:
        learning_rate: a float, a traced scalar, a schedule ``step -> lr`` or a Controller.
        flip_sign: multiply by ``-lr`` (descent, the default) instead of ``lr``.

    Returns:
        An ``optax.GradientTransformationExtraArgs``; its update accepts ``value=`` (required
        when ``learning_rate`` is a Controller, ignored otherwise) and ``grad=`` (required for
        a GradientController, ignored otherwise).

    Example:
        >>> import jax.numpy as jnp, optax, jaxlr
        >>> opt = optax.chain(optax.scale_by_adam(), jaxlr.scale_by_learning_rate(1e-3))
        >>> state = opt.init(jnp.zeros(2))
        >>> round(float(jaxlr.current_lr(state)), 6)
        0.001

    References:
        ``optax.scale_by_learning_rate``:
        https://optax.readthedocs.io/en/latest/api/transformations.html
    """
    learning_rate = check_learning_rate(learning_rate)
    is_controller = isinstance(learning_rate, Controller)
    sees_gradient = isinstance(learning_rate, GradientController)
    sign = -1.0 if flip_sign else 1.0

    def lr_at(count: jax.Array, controller_state: optax.OptState) -> jax.Array:
        if is_controller:
            return _checks.f32(learning_rate.learning_rate(controller_state, count))
        if callable(learning_rate):
            return _checks.f32(learning_rate(count))
        return _checks.f32(learning_rate)

    def init_fn(params: optax.Params) -> LearningRateState:
        count = jnp.zeros([], jnp.int32)
        if sees_gradient:
            ctrl = learning_rate.init(params)
        else:
            ctrl = learning_rate.init() if is_controller else ()
        return LearningRateState(count=count, lr=lr_at(count, ctrl), controller=ctrl)

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del params
        ctrl = state.controller
        if sees_gradient:
            grad = extra_args.get("grad")
            if grad is None:
                raise ValueError(
                    "this optimizer's learning_rate is a controller (e.g. jaxlr.hypergradient) "
                    "that needs the raw gradient of every update: jaxlr's optimizers pass it "
                    "themselves; in your own optax.chain call "
                    "opt.update(grads, state, params, grad=grads)")
            direction = updates if flip_sign else jax.tree.map(jnp.negative, updates)
            ctrl = learning_rate.update(ctrl, value, state.count, grad=grad, direction=direction)
        elif is_controller:
            if value is None:
                raise ValueError(
                    "this optimizer's learning_rate is a controller (reduce_on_plateau) that needs "
                    "the metric at every update: call opt.update(grads, state, params, value=loss)"
                )
            ctrl = learning_rate.update(ctrl, value, state.count)
        lr = lr_at(state.count, ctrl)
        updates = jax.tree.map(lambda g: (sign * lr).astype(g.dtype) * g, updates)
        count = optax.safe_increment(state.count)
        return updates, LearningRateState(count=count, lr=lr, controller=ctrl)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def lr_or_none(opt_state: optax.OptState) -> jax.Array | None:
    """The LR of the first :class:`LearningRateState` in ``opt_state``, or None if it has none
    (e.g. a plain optax optimizer): :func:`current_lr` without the error."""
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(
        x, LearningRateState)) if isinstance(x, LearningRateState)]
    return found[0].lr if found else None


def current_lr(opt_state: optax.OptState) -> jax.Array:
    """The learning rate used by the last update (for logging); the step-0 LR before any update.

    Works on the state of any jaxlr optimizer, also inside ``optax.chain``/``nnx.Optimizer``
    and under vmap (then it has the leading member axis). When the state holds several jaxlr LR
    states (e.g. ``optax.multi_transform``), the first one in tree order is returned.

    Args:
        opt_state: an optimizer state containing a :class:`LearningRateState`.

    Returns:
        A float32 array: a scalar, or ``[M]`` for a vmapped state.

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> opt = jaxlr.sgd(jaxlr.exponential_decay(0.1, 10, 0.5))
        >>> state = opt.init(jnp.zeros(2))
        >>> for _ in range(11):
        ...     _, state = opt.update(jnp.ones(2), state)
        >>> round(float(jaxlr.current_lr(state)), 4)
        0.05

    References:
        optax tree utilities: https://optax.readthedocs.io/en/latest/api/utilities.html
    """
    lr = lr_or_none(opt_state)
    if lr is None:
        raise ValueError(
            "current_lr found no jaxlr learning-rate state in opt_state: it works with jaxlr "
            "optimizers (jaxlr.sgd, jaxlr.adam, ...) or chains containing "
            "jaxlr.scale_by_learning_rate; for optax's own optimizers use "
            "optax.inject_hyperparams"
        )
    return lr
