"""Hypergradient descent: the LR follows the derivative of the loss with respect to the LR.

Why a controller: Baydin et al. (2018) adapt the LR of SGD, SGD with Nesterov momentum and Adam
online with one extra dot product per step, which makes the final loss far less sensitive to
the initial LR. The rule needs only the current gradient and the previous update direction, both
available in jaxlr's learning-rate step, so one controller serves every jaxlr optimizer (sgd,
adam, adamw, ...) and every numeric argument stays traceable (a sweep vmaps over ``beta`` and the
initial LR in one program). The LR is kept non-negative: the paper's additive rule can drive it
below zero (gbaydin/hypergradient-descent#1, #4), so it is clamped at ``min_lr``; the
multiplicative rule (the default) multiplies it by a factor in ``[1 - beta, 1 + beta]``.

How it sees the gradient: the LR step is the last transform of a jaxlr optimizer and sees only the
direction :math:`d_t` it multiplies, not the raw gradient (for Adam they differ). Every jaxlr
optimizer therefore passes the incoming gradient as optax's ``grad=`` extra argument, and the
step calls a :class:`~jaxlr._optim.learning_rate.GradientController` with both.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlr._optim import checks as _checks
from jaxlr._optim.learning_rate import GradientController
from jaxlr._optim.types import ArrayLike, Schedule

_BETA_MUL = ("; the multiplicative rule multiplies the LR by 1 + beta * cos(g_t, d_t-1) >= "
             "1 - beta, which must stay > 0: use beta in [0, 1), e.g. beta=0.02")
_BASE_MUL = ("; the multiplicative rule scales the LR, so an LR of 0 stays 0: give a positive "
             "initial LR, or multiplicative=False (the additive rule can start from 0)")


class HypergradientState(NamedTuple):
    """State of :func:`hypergradient` (add a leading member axis under vmap).

    The LR of the last update is ``max(b(step) * scale + offset, min_lr)``, where ``b`` is the
    ``base`` schedule (for a float ``base``: the float with the multiplicative rule, 0 with the
    additive one, whose ``offset`` then IS the LR).

    Attributes:
        scale: shape (), float32: the product of the multiplicative factors (1 when additive).
        offset: shape (), float32: the additive part (0 when multiplicative).
        direction: a tree shaped like the parameters (at least float32): :math:`d_{t-1}`, the
            direction the previous update's LR multiplied (zeros before the first update).
        hypergradient: shape (), float32: :math:`h_t = -g_t \\cdot d_{t-1}` of the last update.

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> opt = jaxlr.sgd(jaxlr.hypergradient(0.1, beta=0.02))
        >>> state = opt.init({"w": jnp.ones(3)})
        >>> hd = state[-1].controller  # the chain ends with the LR step
        >>> type(hd).__name__, float(hd.scale), hd.direction["w"].shape
        ('HypergradientState', 1.0, (3,))
    """

    scale: jax.Array  # shape (), float32: product of the multiplicative factors
    offset: jax.Array  # shape (), float32: additive part of the LR
    direction: optax.Updates  # params-shaped, >= float32: d_{t-1} (zeros before the first update)
    hypergradient: jax.Array  # shape (), float32: h_t of the last update


def _tree_dot(a: optax.Updates, b: optax.Updates) -> jax.Array:
    """sum over leaves of <a, b>, each in at least float32, as float32."""
    def dot(x, y):
        dtype = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
        return jnp.sum(jnp.asarray(x, dtype) * jnp.asarray(y, dtype)).astype(jnp.float32)

    return sum(jax.tree.leaves(jax.tree.map(dot, a, b)), jnp.zeros([], jnp.float32))


def hypergradient(
    base: float | Schedule,
    *,
    beta: float,
    multiplicative: bool = True,
    min_lr: float = 0.0,
) -> GradientController:
    r"""Adapt the LR online by gradient descent on the LR itself (Baydin et al. 2018).

    With :math:`g_t` the gradient of update :math:`t` and :math:`d_t` the direction its LR
    multiplies (:math:`u_t = -\alpha_t d_t`; :math:`d_0 = 0`), the derivative of the loss with
    respect to the previous LR is the *hypergradient*

    .. math::
        h_t = g_t \cdot \nabla_\alpha u_{t-1} = -\,g_t \cdot d_{t-1}

    and the LR of update :math:`t` is, with the multiplicative rule (the default; the paper's
    normalised rule, scale-free in :math:`g`),

    .. math::
        \alpha_t = \alpha_{t-1}\Big(1 - \beta \frac{h_t}{\lVert g_t\rVert\,\lVert d_{t-1}\rVert}
        \Big) = \alpha_{t-1}\big(1 + \beta \cos(g_t, d_{t-1})\big)

    (a factor in :math:`[1-\beta, 1+\beta]`, 1 when a norm is 0, so the LR stays positive for
    :math:`0 \le \beta < 1`), or with the additive rule (``multiplicative=False``, the paper's
    Algorithms SGD-HD, SGDN-HD, Adam-HD) clamped so it never goes negative:

    .. math::
        \alpha_t = \max(\alpha_{t-1} - \beta h_t,\; min\_lr)

    :math:`\alpha_0` is ``base``. The first update has :math:`h_1 = 0` and uses :math:`\alpha_0`.
    With ``jaxlr.sgd`` this is SGD-HD (:math:`d = g`), with ``jaxlr.sgd(momentum=mu,
    nesterov=True)`` SGDN-HD (:math:`d_t = g_t + \mu v_t`), with ``jaxlr.adam`` Adam-HD
    (:math:`d_t = \hat m_t / (\sqrt{\hat v_t} + \epsilon)`); with ``adamw`` :math:`d` includes
    the weight decay. Given a schedule, ``base`` is modulated: :math:`\alpha_t = b(t)\,s_t`
    with :math:`s_t = s_{t-1}(1 + \beta\cos)` (multiplicative), or :math:`\alpha_t = b(t) + o_t`
    where the additive rule moves the offset :math:`o` (a jaxlr extension; a float ``base`` gives
    the paper's rules exactly). :func:`jaxlr.current_lr` reports :math:`\alpha_t`, so a sweep
    records the adapted LR. The state keeps one copy of the parameters (:math:`d_{t-1}`).

    All numeric arguments may be traced (``jax.vmap`` over ``beta`` and ``base`` compiles one
    program); they are checked only when concrete. ``multiplicative`` chooses the rule at trace
    time (sweep it as a categorical grid axis). ``value=`` is accepted and not used.

    Args:
        base: the initial LR :math:`\alpha_0` (>= 0; > 0 for the multiplicative rule), or a
            schedule ``step -> lr`` that the adaptation modulates.
        beta: the hypergradient LR :math:`\beta \ge 0` (< 1 for the multiplicative rule). The
            paper's additive values: 1e-3 (SGD-HD, SGDN-HD) and 1e-7 (Adam-HD); the
            multiplicative rule is scale-free, e.g. 0.01 to 0.05.
        multiplicative: use the multiplicative rule (True) or the additive one (False).
        min_lr: the LR is never below this (>= 0), for both rules.

    Returns:
        A :class:`~jaxlr._optim.learning_rate.GradientController`, to pass as the
        ``learning_rate`` of any jaxlr optimizer (its state is a :class:`HypergradientState`).

    Example:
        >>> import jax, jax.numpy as jnp, optax, jaxlr
        >>> opt = jaxlr.sgd(jaxlr.hypergradient(0.01, beta=0.02))
        >>> params = jnp.array([1.0, -2.0])
        >>> state = opt.init(params)
        >>> for _ in range(3):  # gradients keep their direction: the LR grows by 1.02 per step
        ...     updates, state = opt.update(jax.grad(lambda p: jnp.sum(p ** 2))(params), state)
        ...     params = optax.apply_updates(params, updates)
        >>> round(float(jaxlr.current_lr(state)), 6)
        0.010404

    References:
        Baydin, Cornish, Martínez Rubio, Schmidt & Wood, "Online Learning Rate Adaptation with
        Hypergradient Descent", ICLR 2018, https://arxiv.org/abs/1703.04782 (Algorithms SGD-HD,
        SGDN-HD, Adam-HD; the multiplicative rule); the authors' code and the negative-LR
        reports: https://github.com/gbaydin/hypergradient-descent/issues/4
    """
    if not isinstance(multiplicative, bool):
        raise ValueError(
            f"multiplicative must be True or False, got multiplicative={multiplicative!r}; it "
            "chooses the rule when the program is traced, so it cannot be traced (sweep it as a "
            "categorical grid axis)")
    _checks.hparam("beta", beta, ge=0, **({"lt": 1, "fix": _BETA_MUL} if multiplicative else {}))
    _checks.hparam("min_lr", min_lr, ge=0, fix=_checks.NEGATIVE_LR)
    f32 = _checks.f32
    if callable(base):
        base_fn, offset0 = base, 0.0
    else:
        bounds = {"gt": 0, "fix": _BASE_MUL} if multiplicative else {
            "ge": 0, "fix": _checks.NEGATIVE_LR}
        _checks.hparam("base", base, **bounds)
        if multiplicative:
            base_fn, offset0 = (lambda step: base), 0.0  # noqa: ARG005
        else:  # the offset is the LR itself: the paper's additive rule, exactly
            base_fn, offset0 = (lambda step: 0.0), base  # noqa: ARG005

    def lr_at(state: HypergradientState, step: ArrayLike) -> jax.Array:
        return jnp.maximum(f32(base_fn(step)) * state.scale + state.offset, f32(min_lr))

    def init(params: optax.Params) -> HypergradientState:
        zeros = lambda p: jnp.zeros(jnp.shape(p), jnp.promote_types(
            jnp.result_type(p), jnp.float32))
        return HypergradientState(scale=jnp.ones([], jnp.float32), offset=f32(offset0),
                                  direction=jax.tree.map(zeros, params),
                                  hypergradient=jnp.zeros([], jnp.float32))

    def update(state: HypergradientState, value: ArrayLike | None, step: ArrayLike, *,
               grad: optax.Updates, direction: optax.Updates) -> HypergradientState:
        del value
        dot = _tree_dot(grad, state.direction)  # g_t . d_{t-1} = -h_t
        scale, offset = state.scale, state.offset
        if multiplicative:
            norms = jnp.sqrt(_tree_dot(grad, grad)) * jnp.sqrt(
                _tree_dot(state.direction, state.direction))
            cos = jnp.clip(dot / jnp.where(norms > 0, norms, 1.0), -1.0, 1.0)
            scale = scale * jnp.maximum(1.0 + f32(beta) * cos, 0.0)
        else:
            b = f32(base_fn(step))
            lr = jnp.maximum(b * scale + offset + f32(beta) * dot, f32(min_lr))
            offset = lr - b * scale
        keep = lambda new, old: jnp.asarray(new).astype(old.dtype)
        return HypergradientState(scale=scale, offset=offset,
                                  direction=jax.tree.map(keep, direction, state.direction),
                                  hypergradient=-dot)

    return GradientController(init=init, update=update, learning_rate=lr_at)
