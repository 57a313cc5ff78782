"""LR-free and adaptive methods as jaxlr optimizers that record their effective learning rate.

``optax.contrib``'s Prodigy, D-Adaptation (AdamW), DoG, Mechanic, COCOB and Schedule-Free AdamW,
each wrapped so that

- every numeric argument may be a traced scalar (a sweep over ``hp["lr"]`` compiles once), is
  checked eagerly when concrete (the error names the argument, the value and the fix), and
  never decides a Python branch;
- the state is ``(LearningRateState, <optax.contrib's state>)``: after each update its ``lr``
  is the method's *effective* step size (defined in each docstring), which
  :func:`jaxlr.current_lr` and a sweep's ``result.lr`` read. It is float32 whatever the
  parameters' dtype and ``jax_enable_x64``;
- ``update(grads, state, params, value=..., grad=...)`` accepts optax's extra arguments (they
  are passed on to the wrapped transform, which ignores them, or, for :func:`mechanize`, to the
  base optimizer), so the method chains with optax either way.

The numerics are optax.contrib's (optax 0.2.8), with one exception: Prodigy and D-Adaptation
keep their distance estimate :math:`d` when optax's estimate is 0/0 (no gradient yet, or an LR
of 0, as at the start of a warmup), as the authors' code does; optax would make :math:`d`, and
then the parameters, NaN for good. Where optax.contrib differs from the paper, each docstring
says so.

optax.contrib has no layer-wise DoG (L-DoG); optax's core ``scale_by_distance_over_gradients``
is one (per parameter array) and is not wrapped here.

Why one file of ~790 lines: six short wrappers sharing the LR-state plumbing and the checks of
traced arguments; most of the length is their docstrings (each method's algorithm, its
effective LR, where optax.contrib differs from the paper).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike
from optax import contrib as _contrib

from jaxlr._optim import checks as _checks
from jaxlr._optim.learning_rate import LearningRateState, lr_or_none
from jaxlr._optim.plateau import Controller
from jaxlr._optim.types import ArrayLike, LearningRate, Schedule

_T = TypeVar("_T")

_IN_0_1 = "; use a value in [0, 1)"
_FIX = {
    "betas[0]": f"{_IN_0_1}, e.g. betas=(0.9, 0.999)",
    "betas[1]": f"{_IN_0_1}, e.g. betas=(0.9, 0.999)",
    "beta3": f"{_IN_0_1}, or beta3=None for sqrt(betas[1])",
    "b2": f"{_IN_0_1}, e.g. b2=0.999",
    "b1": "; use a value in (0, 1], e.g. b1=0.9 (schedule-free divides by b1)",
    "eps": "; use a small positive number, e.g. eps=1e-8",
    "estim_lr0": "; use a small positive initial estimate of d, e.g. estim_lr0=1e-6",
    "estim_lr_coef": "; use a positive factor on the estimate of d, e.g. 1.0 (0.5 and 2.0 work)",
    "s_init": "; use a small positive initial scale, e.g. s_init=1e-6",
    "alpha": "; use a positive bet fraction bound, e.g. alpha=100.0",
    "warmup_steps": "; use a positive number of steps, or warmup_steps=None for no warmup",
    "init_step": "; e.g. init_step=('heuristic', 1e-6) (1e-4 with batch normalization)",
}


def _num(name: str, value: ArrayLike, *, fix: str | None = None,
         **bounds: float) -> float | jax.Array:
    """A float hyperparameter, checked when concrete: the Python float given (weakly typed, as
    optax gets it, so the numbers are optax's) or, when traced, a float32 scalar."""
    fix = _FIX.get(name, "") if fix is None else fix
    value = _checks.hparam(name, value, fix=fix, **bounds)
    return _checks.f32(value) if _checks.is_traced(value) else float(value)


def _learning_rate(learning_rate: LearningRate, method: str) -> float | jax.Array | Schedule:
    """A float, traced scalar or schedule; a controller is refused (these methods call their
    learning rate with the step only, never with a metric)."""
    if isinstance(learning_rate, Controller):
        raise ValueError(
            f"learning_rate of jaxlr.{method} must be a float, a traced scalar or a schedule, "
            f"got a controller (reduce_on_plateau / hypergradient): {method} adapts its step "
            "size itself; give it a schedule (e.g. jaxlr.warmup_cosine_decay(1.0, ...)) instead")
    if callable(learning_rate):
        return learning_rate
    return _num("learning_rate", learning_rate, ge=0, fix=_checks.NEGATIVE_LR)


def _lr_at(learning_rate: ArrayLike | Schedule, count: jax.Array) -> jax.Array:
    """The (scheduled) learning rate at update ``count``, float32."""
    return _checks.f32(learning_rate(count) if callable(learning_rate) else learning_rate)


def _betas(betas: tuple[ArrayLike, ArrayLike]) -> tuple[float | jax.Array, float | jax.Array]:
    try:
        b1, b2 = betas
    except (TypeError, ValueError) as e:
        raise ValueError(f"betas must be a pair (beta1, beta2), got betas={betas!r}") from e
    return _num("betas[0]", b1, ge=0, lt=1), _num("betas[1]", b2, ge=0, lt=1)


def _find(tree: optax.OptState, cls: type[_T] | tuple[type[_T], ...]) -> _T | None:
    """The first ``cls`` instance in ``tree`` (tree order), or None."""
    found = [x for x in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, cls))
             if isinstance(x, cls)]
    return found[0] if found else None


_NAN = float("nan")


def _recording(method: str, inner: optax.GradientTransformation,
               initial_lr: Callable[[optax.OptState], ArrayLike],
               effective_lr: Callable[[optax.OptState, optax.OptState, jax.Array, optax.Params],
                                      ArrayLike]) -> optax.GradientTransformationExtraArgs:
    """``inner`` with a :class:`LearningRateState` in front of its state: ``initial_lr(state)``
    before any update, then ``effective_lr(old, new, count, params)`` after each one."""
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        state = inner.init(params)
        lr = _checks.f32(initial_lr(state))
        return LearningRateState(count=jnp.zeros([], jnp.int32), lr=lr, controller=()), state

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError(f"jaxlr.{method} needs the parameters at every update: call "
                             "opt.update(grads, state, params)")
        lr_state, old = state
        updates, new = inner.update(updates, old, params, **extra_args)
        lr = _checks.f32(effective_lr(old, new, lr_state.count, params))
        count = optax.safe_increment(lr_state.count)
        return updates, (LearningRateState(count=count, lr=lr, controller=()), new)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _keep_d(inner: optax.GradientTransformationExtraArgs,
            step: Callable[[optax.OptState, optax.OptState, optax.Params],
                           optax.Updates] | None = None,
            ) -> optax.GradientTransformationExtraArgs:
    """Keep ``estim_lr`` (d) when optax's new estimate is NaN: 0/0, no gradient yet or an LR
    of 0 (the authors' code skips the estimate then: ``if d_denom == 0: return``).

    ``step(old, new, params)``, when given, recomputes the update from the kept d (Prodigy's
    uses the new d, in ``d * eps``); optax's own update is then unused (XLA drops it)."""

    def update_fn(updates, state, params=None, **extra_args):
        updates, new = inner.update(updates, state, params, **extra_args)
        d = jnp.where(jnp.isnan(new.estim_lr), state.estim_lr, new.estim_lr)
        new = new._replace(estim_lr=d)
        if step is not None:
            updates = step(state, new, params)
        return updates, new

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)


def prodigy(
    learning_rate: LearningRate = 1.0,
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999),
    beta3: ArrayLike | None = None,
    eps: ArrayLike = 1e-8,
    estim_lr0: ArrayLike = 1e-6,
    estim_lr_coef: ArrayLike = 1.0,
    weight_decay: ArrayLike = 0.0,
    safeguard_warmup: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""Prodigy: AdamW whose step size :math:`d_k` estimates the distance to the solution.

    With :math:`\eta_k` the learning rate (a multiplier, 1.0 by default) and
    :math:`\gamma_k = \eta_k \sqrt{1-\beta_2^{k+1}} / (1-\beta_1^{k+1})`:

    .. math::
        m_{k+1} &= \beta_1 m_k + (1-\beta_1)\, d_k g_k, \qquad
        v_{k+1} = \beta_2 v_k + (1-\beta_2)\, d_k^2 g_k^2 \\
        r_{k+1} &= \beta_3 r_k + \gamma_k d_k^2 \langle g_k, x_0 - x_k \rangle, \qquad
        s_{k+1} = \beta_3 s_k + \gamma_k d_k^2\, g_k \\
        d_{k+1} &= \max\!\big(d_k,\; c\, r_{k+1} / \|s_{k+1}\|_1\big) \\
        x_{k+1} &= x_k - \gamma_k d_k \Big(\frac{m_{k+1}}{\sqrt{v_{k+1}} + d_{k+1} \epsilon}
        + \lambda x_k\Big)

    (with ``safeguard_warmup`` the weight of :math:`g_k` in :math:`s` is :math:`d_k^2`, without
    :math:`\gamma_k`). Recorded LR: :math:`d_k \eta_k`, the Adam learning rate this update
    amounts to (the quantity the authors log as ``d*lr``; Adam's bias correction is left out,
    as it is of an Adam LR); before any update :math:`d_0 \eta_0`.

    Where optax.contrib differs from the paper's Algorithm (Adam version): Adam's bias
    correction is always on, folded into :math:`\gamma_k` (``_prodigy.py``: ``bc = ((1 -
    beta2**count_inc) ** 0.5) / (1 - beta1**count_inc)``, ``dlr = estim_lr * sched * bc``),
    where the paper has :math:`\gamma_k = \eta_k` and the authors' ``prodigyopt`` makes it
    optional, off by default; :math:`\epsilon` is scaled by the new estimate :math:`d_{k+1}`
    (as in the authors' code; the paper writes :math:`d_k \epsilon`); the weights carry a factor
    :math:`1/d_0` and no :math:`1-\sqrt{\beta_2}`, which cancel in :math:`r/\|s\|_1`. The 0/0
    estimate (no gradient yet, or :math:`\eta_k = 0` at the start of a warmup) is NaN in optax
    and made :math:`d`, then the parameters, NaN for good; jaxlr keeps :math:`d_k` then, as the
    authors' code does.

    Args:
        learning_rate: :math:`\eta_k \ge 0`, a float, traced scalar or schedule ``step -> lr``
            (e.g. a warmup and decay from 1.0); not a controller.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        beta3: :math:`\beta_3 \in [0, 1)`, or None for :math:`\sqrt{\beta_2}`.
        eps: :math:`\epsilon > 0`.
        estim_lr0: :math:`d_0 > 0`, the initial under-estimate of :math:`d`.
        estim_lr_coef: :math:`c > 0` (the authors' ``d_coef``).
        weight_decay: :math:`\lambda \ge 0` (decoupled, scaled by :math:`\gamma_k d_k`).
        safeguard_warmup: leave :math:`\gamma_k` out of :math:`s` (helps during a warmup).

    Returns:
        An ``optax.GradientTransformationExtraArgs`` whose update needs ``params``.

    Example:
        >>> import jax.numpy as jnp, optax, jaxlr
        >>> opt = jaxlr.prodigy()
        >>> params = jnp.array([1.0, -2.0])
        >>> state = opt.init(params)
        >>> print(f"{float(jaxlr.current_lr(state)):.2g}")  # d_0 * lr
        1e-06
        >>> for _ in range(50):
        ...     updates, state = opt.update(2 * params, state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> print(f"{float(jaxlr.current_lr(state)):.2g}")  # d grew from 1e-6
        0.69

    References:
        Mishchenko & Defazio 2024, https://arxiv.org/abs/2306.06101;
        ``optax.contrib.prodigy``:
        https://optax.readthedocs.io/en/latest/api/contrib.html#optax.contrib.prodigy;
        the authors' code: https://github.com/konstmish/prodigy
    """
    learning_rate = _learning_rate(learning_rate, "prodigy")
    b1, b2 = _betas(betas)
    if beta3 is not None:
        beta3 = _num("beta3", beta3, ge=0, lt=1)
    eps = _num("eps", eps, gt=0)
    weight_decay = _num("weight_decay", weight_decay, ge=0)

    def step(old, new, params):  # optax's p_update (_prodigy.py), with the kept d
        count_inc = optax.safe_increment(old.count)
        sched = learning_rate(old.count) if callable(learning_rate) else learning_rate
        bc = ((1 - b2**count_inc) ** 0.5) / (1 - b1**count_inc)
        dlr = jnp.asarray(old.estim_lr * sched * bc, dtype=old.estim_lr.dtype)
        return jax.tree.map(
            lambda ea, eas, p: -weight_decay * dlr * p - dlr * ea / (jnp.sqrt(eas)
                                                                     + new.estim_lr * eps),
            new.exp_avg, new.exp_avg_sq, params)

    inner = _keep_d(_contrib.prodigy(
        learning_rate, betas=(b1, b2), beta3=beta3, eps=eps,
        estim_lr0=_num("estim_lr0", estim_lr0, gt=0),
        estim_lr_coef=_num("estim_lr_coef", estim_lr_coef, gt=0),
        weight_decay=weight_decay, safeguard_warmup=bool(safeguard_warmup)), step)
    return _recording(
        "prodigy", inner,
        lambda s: _checks.f32(s.estim_lr) * _lr_at(learning_rate, s.count),
        lambda old, new, count, params: _checks.f32(old.estim_lr) * _lr_at(learning_rate,
                                                                             count))


def dadapt_adamw(
    learning_rate: LearningRate = 1.0,
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999),
    eps: ArrayLike = 1e-8,
    estim_lr0: ArrayLike = 1e-6,
    weight_decay: ArrayLike = 0.0,
) -> optax.GradientTransformationExtraArgs:
    r"""D-Adaptation AdamW: Adam whose step size :math:`d_k` lower-bounds the distance to the
    solution.

    With :math:`\eta_k` the learning rate (a multiplier, 1.0 by default),
    :math:`\gamma_k = \eta_k \sqrt{1-\beta_2^{k+1}} / (1-\beta_1^{k+1})` and
    :math:`\beta = \sqrt{\beta_2}`:

    .. math::
        m_{k+1} &= \beta_1 m_k + (1-\beta_1)\, d_k\gamma_k g_k, \qquad
        v_{k+1} = \beta_2 v_k + (1-\beta_2)\, g_k^2 \\
        r_{k+1} &= \beta r_k + (1-\beta)\, d_k\gamma_k
        \Big\langle g_k, \frac{s_k}{\sqrt{v_k} + \epsilon}\Big\rangle, \qquad
        s_{k+1} = \beta s_k + (1-\beta)\, d_k\gamma_k\, g_k \\
        d_{k+1} &= \max\!\Big(d_k,\; \frac{r_{k+1}}{(1-\beta)\|s_{k+1}\|_1}\Big), \qquad
        x_{k+1} = x_k - \frac{m_{k+1}}{\sqrt{v_{k+1}} + \epsilon} - \lambda d_k\gamma_k x_k

    Recorded LR: :math:`d_k \eta_k` (the ``d*lr`` the authors log; Adam's bias correction left
    out); before any update :math:`d_0 \eta_0`.

    Where optax.contrib differs from the paper (the Adam variant, as the authors' ``dadaptation``
    v3 implements it): Adam's bias correction is always on (``_dadapt_adamw.py``: ``bc = ((1 -
    beta2**count_inc) ** 0.5) / (1 - beta1**count_inc)``; ``dlr = state.estim_lr * sched *
    bc``), optional and off by default in the authors' code; the weight decay is decoupled
    (AdamW, ``-weight_decay * dlr * p``) only. The 0/0 estimate (no gradient yet, or
    :math:`\eta_k = 0`) is NaN in optax and made :math:`d` NaN for good; jaxlr keeps
    :math:`d_k` then, as the authors' code does (``if sk_l1 == 0: return``).

    Args:
        learning_rate: :math:`\eta_k \ge 0`, a float, traced scalar or schedule; not a
            controller.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: :math:`\epsilon > 0`.
        estim_lr0: :math:`d_0 > 0`.
        weight_decay: :math:`\lambda \ge 0` (decoupled).

    Returns:
        An ``optax.GradientTransformationExtraArgs`` whose update needs ``params``.

    Example:
        >>> import jax.numpy as jnp, optax, jaxlr
        >>> opt = jaxlr.dadapt_adamw()
        >>> params = jnp.array([1.0, -2.0])
        >>> state = opt.init(params)
        >>> for _ in range(50):
        ...     updates, state = opt.update(2 * params, state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> print(f"{float(jaxlr.current_lr(state)):.2g}")
        2

    References:
        Defazio & Mishchenko 2023, https://arxiv.org/abs/2301.07733;
        ``optax.contrib.dadapt_adamw``:
        https://optax.readthedocs.io/en/latest/api/contrib.html#optax.contrib.dadapt_adamw;
        the authors' code: https://github.com/facebookresearch/dadaptation
    """
    learning_rate = _learning_rate(learning_rate, "dadapt_adamw")
    inner = _keep_d(_contrib.dadapt_adamw(
        learning_rate, betas=_betas(betas), eps=_num("eps", eps, gt=0),
        estim_lr0=_num("estim_lr0", estim_lr0, gt=0),
        weight_decay=_num("weight_decay", weight_decay, ge=0)))
    return _recording(
        "dadapt_adamw", inner,
        lambda s: _checks.f32(s.estim_lr) * _lr_at(learning_rate, s.count),
        lambda old, new, count, params: _checks.f32(old.estim_lr) * _lr_at(learning_rate,
                                                                             count))


_DOG_KINDS = ("distance", "learning_rate", "heuristic")


def dog(
    learning_rate: LearningRate = 1.0,
    init_step: tuple[str, ArrayLike] = ("heuristic", 1e-6),
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike | None = None,
    mask: optax.Params | Callable[[optax.Params], optax.Params] | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""DoG (Distance over Gradients): SGD whose step is the distance travelled over the root
    of the summed squared gradient norms.

    .. math::
        \bar r_t = \max\!\big(r_\epsilon,\ \max_{i \le t} \|x_i - x_0\|\big), \qquad
        \eta_t = \frac{\bar r_t}{\sqrt{\sum_{i \le t} \|g_i\|^2 + \epsilon}}, \qquad
        x_{t+1} = x_t - c_t\, \eta_t\, g_t

    with :math:`g_t` the gradient plus ``weight_decay`` :math:`\cdot x_t` when given, and
    :math:`c_t` the learning rate (the paper's :math:`c`, 1.0 by default). ``init_step``:
    ``("heuristic", a)`` sets :math:`r_\epsilon = a(1 + \|x_0\|)` (``x_0``: the parameters given
    to ``init``), ``("distance", r)`` sets :math:`r_\epsilon = r`, ``("learning_rate", e)`` uses
    :math:`\eta_0 = e` for the first step (and :math:`r_\epsilon = 0`).

    Recorded LR: :math:`c_t \eta_t`, the step of this update. Before any update it is
    :math:`c_0 e` with ``("learning_rate", e)`` and NaN otherwise (:math:`\eta_0` depends on
    the first gradient).

    optax.contrib follows the paper, plus :math:`\epsilon` under the root (``_dog.py``:
    ``learning_rate = max_dist / jnp.sqrt(sum_sq_norm_grads + eps)``; the authors' code adds it
    too). The authors recommend iterate averaging, which is not part of this update. The
    paper's layer-wise variant (L-DoG) is not in optax.contrib.

    Args:
        learning_rate: :math:`c_t \ge 0`, a float, traced scalar or schedule; not a controller.
        init_step: ``(kind, value)``, kind one of ``"heuristic"``, ``"distance"``,
            ``"learning_rate"`` (concrete), value > 0 (may be traced).
        eps: :math:`\epsilon \ge 0` (0 is the paper's rule; a zero first gradient then gives
            NaN).
        weight_decay: L2 coefficient :math:`\ge 0` added to the gradient, or None for none.
        mask: optional pytree of booleans (or callable) selecting the decayed leaves.

    Returns:
        An ``optax.GradientTransformationExtraArgs`` whose update needs ``params``.

    Example:
        >>> import jax.numpy as jnp, optax, jaxlr
        >>> opt = jaxlr.dog(init_step=("learning_rate", 0.1))
        >>> params = jnp.array([1.0, -2.0])
        >>> state = opt.init(params)
        >>> print(f"{float(jaxlr.current_lr(state)):.2g}")
        0.1
        >>> for _ in range(5):
        ...     updates, state = opt.update(2 * params, state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> print(f"{float(jaxlr.current_lr(state)):.2g}")
        0.2

    References:
        Ivgi, Hinder & Carmon 2023, https://arxiv.org/abs/2302.12022;
        ``optax.contrib.dog``:
        https://optax.readthedocs.io/en/latest/api/contrib.html#optax.contrib.dog
    """
    learning_rate = _learning_rate(learning_rate, "dog")
    try:
        kind, value = init_step
    except (TypeError, ValueError) as e:
        raise ValueError(f"init_step must be a pair (kind, value), got init_step={init_step!r}"
                         f"{_FIX['init_step']}") from e
    if kind not in _DOG_KINDS:
        raise ValueError(f"init_step's kind must be one of {_DOG_KINDS}, got "
                         f"init_step={init_step!r}{_FIX['init_step']}")
    value = _num("init_step", value, gt=0)
    eps = _num("eps", eps, ge=0)
    if weight_decay is not None:
        weight_decay = _num("weight_decay", weight_decay, ge=0)
    inner = _contrib.dog(learning_rate, init_step=(kind, value), eps=eps,
                         weight_decay=weight_decay, mask=mask)

    def initial(state):
        if kind == "learning_rate":
            return _checks.f32(value) * _lr_at(learning_rate, jnp.zeros([], jnp.int32))
        return jnp.float32(_NAN)

    def effective(old, new, count, params):
        old, new = _find(old, _contrib.DoGState), _find(new, _contrib.DoGState)
        eta = new.max_dist / jnp.sqrt(new.sum_sq_norm_grads + eps)
        if kind == "learning_rate":
            eta = jnp.where(old.is_init_step, value, eta)
        return _checks.f32(eta) * _lr_at(learning_rate, count)

    return _recording("dog", inner, initial, effective)


def _base_lr(base_state: optax.OptState) -> jax.Array:
    """The base optimizer's LR: a jaxlr LR state's, an ``optax.inject_hyperparams``
    ``learning_rate``, else 1."""
    lr = lr_or_none(base_state)
    if lr is not None:
        return _checks.f32(lr)
    injected = _find(base_state, (optax.InjectHyperparamsState,
                                  optax.InjectStatefulHyperparamsState))
    if injected is not None and "learning_rate" in injected.hyperparams:
        return _checks.f32(injected.hyperparams["learning_rate"])
    return jnp.float32(1.0)


def mechanize(
    base_optimizer: optax.GradientTransformation,
    weight_decay: ArrayLike = 1e-2,
    eps: ArrayLike = 1e-8,
    s_init: ArrayLike = 1e-6,
    num_betas: int = 6,
) -> optax.GradientTransformationExtraArgs:
    r"""Mechanic: learn a scale for another optimizer's updates, by coin betting.

    With :math:`u_t` the base optimizer's update, :math:`\Delta_t = \sum_{i<t} u_i` (the
    displacement it asked for), :math:`\beta_j = 1 - 10^{-j}` for :math:`j = 1..n` and
    :math:`S_t = \sum_j s_{t,j}`:

    .. math::
        \tilde g_t &= g_t + \lambda S_t \frac{\|g_t\|}{\|x_t\|+\epsilon} x_t, \qquad
        h_t = \langle \tilde g_t, -\Delta_t \rangle \\
        m_t &= \max(\beta m_{t-1}, |h_t| + \epsilon), \qquad
        v_t = \beta^2 v_{t-1} + h_t^2, \qquad
        r_t = \beta r_{t-1} + s_t\, \mathrm{clip}(h_t, -m_{t-1}, m_{t-1}) \\
        s_{t+1} &= \frac{(s_{init}/n)\, m_t + \max(0, r_t)}{\sqrt{v_t} + \epsilon}, \qquad
        x_{t+1} = x_{ref} + S_{t+1} \Delta_{t+1}

    (per :math:`\beta_j`; :math:`x_{ref}` the parameters at the first update;
    :math:`\Delta_t` recomputed as :math:`(x_t - x_{ref})/(S_t + \epsilon)`). Recorded LR:
    :math:`S_{t+1} \cdot \eta_t`, the learned scale (the sum of the scales, the paper's
    "effective learning rate" multiplier) times the base optimizer's LR :math:`\eta_t` of this
    update, read from its state: a jaxlr optimizer's LR, an ``optax.inject_hyperparams``
    ``learning_rate``, else taken as 1 (then the scale alone is recorded). Before any update
    :math:`n\, s_{init}\, \eta_0`.

    Where optax.contrib differs from the paper (Algorithm 1; and the authors' PyTorch code):
    the reward's :math:`h_t` is clipped to :math:`[-m_{t-1}, m_{t-1}]` (``_mechanic.py``: "This
    clipping was not part of the original paper but we introduced it a little later."); the
    reward is stored unclamped and only the wealth uses :math:`\max(0, r_t)` (``rc =
    jnp.maximum(0.0, r)``), where the authors' code clamps the reward itself; :math:`m_t` adds
    :math:`\epsilon` to :math:`|h_t|`, from :math:`m_0 = 0`; the default ``s_init`` is 1e-6
    (the paper's 1e-8).

    Args:
        base_optimizer: the optax transform whose updates are scaled, e.g. ``jaxlr.adam(1.0)``
            or a schedule peaking at 1.0 (its hyperparameters may be traced).
        weight_decay: :math:`\lambda \ge 0`, Mechanic's own decay (not the base's).
        eps: :math:`\epsilon > 0`.
        s_init: :math:`s_{init} > 0`.
        num_betas: :math:`n \ge 1`, a concrete int (it sets the state's shape).

    Returns:
        An ``optax.GradientTransformationExtraArgs`` whose update needs ``params``; extra
        arguments (``value=``, ``grad=``) go to the base optimizer.

    Example:
        >>> import jax.numpy as jnp, optax, jaxlr
        >>> opt = jaxlr.mechanize(jaxlr.sgd(0.1))
        >>> params = jnp.array([1.0, -2.0])
        >>> state = opt.init(params)
        >>> print(f"{float(jaxlr.current_lr(state)):.2g}")  # n * s_init * 0.1
        6e-07
        >>> for _ in range(50):
        ...     updates, state = opt.update(2 * params, state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> print(f"{float(jaxlr.current_lr(state)):.2g}")
        0.012

    References:
        Cutkosky, Defazio & Mehta 2023, https://arxiv.org/abs/2306.00144;
        ``optax.contrib.mechanize``:
        https://optax.readthedocs.io/en/latest/api/contrib.html#optax.contrib.mechanize;
        the authors' code: https://github.com/optimizedlearning/mechanic
    """
    if not isinstance(base_optimizer, optax.GradientTransformation):
        raise ValueError(f"base_optimizer must be an optax transform (e.g. jaxlr.adam(1.0)), "
                         f"got base_optimizer={base_optimizer!r}")
    if _checks.is_traced(num_betas):
        raise ValueError("num_betas sets the shape of Mechanic's state: it must be a concrete "
                         "int, not a traced value (e.g. num_betas=6)")
    num_betas = int(_checks.hparam("num_betas", num_betas, ge=1, integer=True,
                                   fix="; use e.g. num_betas=6"))
    inner = _contrib.mechanize(
        base_optimizer, weight_decay=_num("weight_decay", weight_decay, ge=0),
        eps=_num("eps", eps, gt=0), s_init=_num("s_init", s_init, gt=0), num_betas=num_betas)
    return _recording(
        "mechanize", inner,
        lambda s: _checks.f32(jnp.sum(s.s)) * _base_lr(s.base_optimizer_state),
        lambda old, new, count, params: (_checks.f32(jnp.sum(new.s))
                                         * _base_lr(new.base_optimizer_state)))


def cocob(
    learning_rate: LearningRate = 1.0,
    alpha: ArrayLike = 100.0,
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    mask: optax.Params | Callable[[optax.Params], optax.Params] | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""COCOB-Backprop: each coordinate bets on the sign of its gradients, with no step size.

    Per coordinate, with :math:`\tilde g_t = c_t (g_t + \lambda x_t)` (:math:`c_t` the
    learning rate):

    .. math::
        L_t &= \max(L_{t-1}, |\tilde g_t|), \quad G_t = G_{t-1} + |\tilde g_t|, \quad
        R_t = \max\!\big(R_{t-1} - \tilde g_t (x_t - x_1), 0\big), \quad
        \theta_t = \theta_{t-1} - \tilde g_t \\
        x_{t+1} &= x_1 + \beta_t \theta_t, \qquad
        \beta_t = \frac{L_t + R_t}{L_t \max(G_t + L_t,\ \alpha L_t)}

    from :math:`L_0 = \epsilon`, :math:`G_0 = R_0 = \theta_0 = 0`. The paper defines no single
    step size: :math:`\beta_t` is one per coordinate. Recorded LR: the scalar that dual averaging
    (:math:`x_{t+1} = x_1 - \eta_t \sum_{i \le t} g_i`) would need to move as far, with
    gradients in their own units, :math:`\eta_t = c_t \|x_{t+1} - x_1\| / \|\theta_t\|` (the
    :math:`\theta^2`-weighted RMS of :math:`c_t\beta_{t,i}`); NaN before any update and while
    :math:`\theta_t = 0`.

    COCOB is invariant to the scale of the gradients (up to :math:`\epsilon`): a constant
    learning rate hardly changes the trajectory (the recorded LR is then the same too); it
    exists to inject a schedule. Where optax.contrib differs from the paper's Algorithm 2:
    :math:`L_0 = \epsilon` instead of 0 (``_cocob.py``: ``init_scale = optax.tree.scale(eps,
    init_scale)``), so a coordinate whose gradients are still 0 stays put instead of 0/0; the
    learning rate and weight decay are optax's additions.

    Args:
        learning_rate: :math:`c_t \ge 0`, a float, traced scalar or schedule; not a controller.
        alpha: :math:`\alpha > 0`, bounds the fraction bet early on (the first step moves each
            coordinate by :math:`1/\alpha`).
        eps: :math:`\epsilon > 0`.
        weight_decay: :math:`\lambda \ge 0`, L2 added to the gradient.
        mask: optional pytree of booleans (or callable) selecting the decayed leaves.

    Returns:
        An ``optax.GradientTransformationExtraArgs`` whose update needs ``params``.

    Example:
        >>> import jax.numpy as jnp, optax, jaxlr
        >>> opt = jaxlr.cocob()
        >>> params = jnp.array([1.0, -2.0])
        >>> state = opt.init(params)
        >>> updates, state = opt.update(2 * params, state, params)
        >>> [round(float(u), 4) for u in updates]  # each coordinate moves by 1 / alpha
        [-0.01, 0.01]

    References:
        Orabona & Tommasi 2017, https://arxiv.org/abs/1705.07795;
        ``optax.contrib.cocob``:
        https://optax.readthedocs.io/en/latest/api/contrib.html#optax.contrib.cocob
    """
    learning_rate = _learning_rate(learning_rate, "cocob")
    alpha = _num("alpha", alpha, gt=0)
    inner = _contrib.cocob(learning_rate, alpha=alpha, eps=_num("eps", eps, gt=0),
                           weight_decay=_num("weight_decay", weight_decay, ge=0), mask=mask)

    def effective(old, new, count, params):
        st = _find(new, _contrib.COCOBState)
        moved = jax.tree.map(
            lambda c, lmax, g, r: c / (lmax * jnp.maximum(g + lmax, alpha * lmax)) * (lmax + r),
            st.cumulative_gradients, st.scale, st.subgradients, st.reward)
        theta = _checks.f32(optax.tree.norm(st.cumulative_gradients))
        ratio = _checks.f32(optax.tree.norm(moved)) / jnp.where(theta > 0, theta, 1.0)
        return jnp.where(theta > 0, _lr_at(learning_rate, count) * ratio, _NAN)

    return _recording("cocob", inner, lambda s: jnp.float32(_NAN), effective)


def _warmup_constant(peak: ArrayLike, steps: ArrayLike) -> Callable[[jax.Array], jax.Array]:
    """optax's ``warmup_constant_schedule(0, peak, steps)`` in float32, with a traceable
    ``steps``: ``peak * min(count, steps) / steps``, written as optax's linear schedule."""

    def schedule(count):
        n = _checks.f32(steps)
        c = jnp.clip(jnp.asarray(count, jnp.float32), 0.0, n)
        return (0.0 - peak) * (1.0 - c / n) + peak

    return schedule


def schedule_free_adamw(
    learning_rate: LearningRate = 0.0025,
    warmup_steps: int | None = None,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    weight_lr_power: ArrayLike = 2.0,
    state_dtype: DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Schedule-Free AdamW: interpolate and average instead of decaying the learning rate.

    The parameters the optimizer holds are :math:`y_t`; with :math:`\gamma_t` the (warmed-up)
    learning rate:

    .. math::
        v_t &= \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad
        z_{t+1} = z_t - \gamma_{t-1} \Big(\frac{g_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
        + \lambda y_t\Big) \\
        c_{t+1} &= \frac{\bar\gamma_t^{\,p}}{\sum_{i \le t} \bar\gamma_i^{\,p}},\quad
        \bar\gamma_t = \max_{i \le t} \gamma_i, \qquad
        x_{t+1} = (1 - c_{t+1})\, x_t + c_{t+1} z_{t+1}, \qquad
        y_{t+1} = (1-\beta_1) z_{t+1} + \beta_1 x_{t+1}

    from :math:`z_1 = x_1 = y_1`, with :math:`\gamma_t = \eta \min(1, t / T_{warmup})` (or
    :math:`\eta` without warmup, or a schedule's value) and :math:`p` = ``weight_lr_power``.
    **A sweep must evaluate at** :math:`x_t` **=** :func:`schedule_free_eval_params` ``(state,
    params)``, not at the parameters it trains (:func:`eval_params` finds the state itself).

    Recorded LR: the LR of this update's :math:`z` step, the scheduled LR of update
    :math:`t` counted from 0 (:math:`\gamma_{t-1}` above; 0 on the first update with a warmup).

    Where optax.contrib differs from the paper (Algorithm 1, as the authors'
    ``adamw_schedulefree_paper.py`` runs it): the :math:`z` step uses the schedule one step
    behind the averaging weights (its ``scale_by_learning_rate`` counts from 0 while
    ``ScheduleFreeState.step_count`` starts at 1: ``step_count=jnp.ones([], dtype=jnp.int32)``),
    so with a warmup the first update does not move :math:`z` (the paper's first step is
    :math:`\eta / T_{warmup}`); Adam's bias correction divides :math:`v_t` (``scale_by_rms(...,
    eps_in_sqrt=False, bias_correction=True)``) where the paper multiplies :math:`\gamma_t` by
    :math:`\sqrt{1-\beta_2^t}`, which moves :math:`\epsilon` and leaves that factor out of the
    weight decay and of the averaging weights.

    Args:
        learning_rate: :math:`\eta \ge 0`, a float, traced scalar or schedule (then no
            ``warmup_steps``: put the warmup in the schedule); not a controller.
        warmup_steps: :math:`T_{warmup} > 0` (may be traced), or None.
        b1: :math:`\beta_1 \in (0, 1]`, the interpolation between :math:`z` and :math:`x`.
        b2: :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon > 0`.
        weight_decay: :math:`\lambda \ge 0`, at :math:`y_t`.
        weight_lr_power: :math:`p \ge 0`.
        state_dtype: dtype of :math:`z` (default: the parameters').

    Returns:
        An ``optax.GradientTransformationExtraArgs`` whose update needs ``params``.

    Example:
        >>> import jax.numpy as jnp, optax, jaxlr
        >>> opt = jaxlr.schedule_free_adamw(0.1, warmup_steps=10)
        >>> params = jnp.array([1.0, -2.0])
        >>> state = opt.init(params)
        >>> for _ in range(5):
        ...     updates, state = opt.update(2 * params, state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> print(f"{float(jaxlr.current_lr(state)):.2g}")  # 0.1 * 4 / 10
        0.04
        >>> jaxlr.schedule_free_eval_params(state, params).shape
        (2,)

    References:
        Defazio et al. 2024, https://arxiv.org/abs/2405.15682;
        ``optax.contrib.schedule_free_adamw``:
        https://optax.readthedocs.io/en/latest/api/contrib.html#optax.contrib.schedule_free_adamw;
        the authors' code: https://github.com/facebookresearch/schedule_free
    """
    learning_rate = _learning_rate(learning_rate, "schedule_free_adamw")
    if warmup_steps is not None:
        if callable(learning_rate):
            raise ValueError("warmup_steps needs a constant learning_rate; with a schedule, put "
                             "the warmup in it (e.g. jaxlr.warmup(schedule, steps)) and leave "
                             "warmup_steps=None")
        warmup = _checks.hparam("warmup_steps", warmup_steps, gt=0, integer=True,
                                fix=_FIX["warmup_steps"])
        learning_rate = _warmup_constant(learning_rate, warmup)
    inner = _contrib.schedule_free_adamw(
        learning_rate, warmup_steps=None, b1=_num("b1", b1, gt=0, le=1),
        b2=_num("b2", b2, ge=0, lt=1), eps=_num("eps", eps, gt=0),
        weight_decay=_num("weight_decay", weight_decay, ge=0),
        weight_lr_power=_num("weight_lr_power", weight_lr_power, ge=0),
        state_dtype=state_dtype)
    return _recording(
        "schedule_free_adamw", inner,
        lambda s: _lr_at(learning_rate, jnp.zeros([], jnp.int32)),
        lambda old, new, count, params: _lr_at(learning_rate, count))


def _eval_params(found: _contrib.ScheduleFreeState, params: optax.Params) -> optax.Params:
    """:math:`x = (y - (1-\\beta_1) z) / \\beta_1`, with ``b1`` broadcast over leading (member)
    axes when the state is stacked."""

    def leaf(y, z):
        b1 = jnp.asarray(found.b1)
        b1 = b1.reshape(b1.shape + (1,) * (jnp.ndim(y) - b1.ndim))
        return ((y - (1.0 - b1) * z) / b1).astype(jnp.asarray(y).dtype)

    return jax.tree.map(leaf, params, found.z)


def schedule_free_eval_params(opt_state: optax.OptState, params: optax.Params) -> optax.Params:
    r"""The parameters at which to evaluate a Schedule-Free model: :math:`x_t`, not :math:`y_t`.

    .. math::
        x_t = \frac{y_t - (1-\beta_1) z_t}{\beta_1}

    with :math:`y_t` = ``params`` (what the optimizer trains) and :math:`z_t`, :math:`\beta_1`
    from the ``optax.contrib.ScheduleFreeState`` found in ``opt_state`` (anywhere: a
    :func:`schedule_free_adamw` state, an ``optax.chain``'s, a bare optax one). The result has
    the parameters' dtypes. A state stacked over members (leading axis) with stacked params
    works too.

    Args:
        opt_state: an optimizer state holding a ``ScheduleFreeState``.
        params: the parameters the optimizer trains (:math:`y_t`).

    Returns:
        The evaluation parameters, shaped like ``params``; equal to
        ``optax.contrib.schedule_free_eval_params(found_state, params)``.

    Example:
        >>> import jax.numpy as jnp, optax, jaxlr
        >>> opt = jaxlr.schedule_free_adamw(0.1)
        >>> params = jnp.array([1.0, -2.0])
        >>> state = opt.init(params)
        >>> updates, state = opt.update(2 * params, state, params)
        >>> params = optax.apply_updates(params, updates)
        >>> x = jaxlr.schedule_free_eval_params(state, params)  # x_2 = z_2 after one update
        >>> [round(float(v), 4) for v in x]
        [0.9, -1.9]

    References:
        Defazio et al. 2024, https://arxiv.org/abs/2405.15682;
        ``optax.contrib.schedule_free_eval_params``:
        https://optax.readthedocs.io/en/latest/api/contrib.html#optax.contrib.schedule_free_eval_params
    """
    found = _find(opt_state, _contrib.ScheduleFreeState)
    if found is None:
        raise ValueError("schedule_free_eval_params found no optax.contrib.ScheduleFreeState in "
                         "opt_state: it needs the state of jaxlr.schedule_free_adamw (or of "
                         "optax.contrib.schedule_free); use jaxlr.eval_params to get params "
                         "unchanged for other optimizers")
    return _eval_params(found, params)


def eval_params(opt_state: optax.OptState, params: optax.Params) -> optax.Params:
    """The parameters to evaluate a model at: Schedule-Free's :math:`x_t` when ``opt_state``
    holds a ``ScheduleFreeState`` anywhere, else ``params`` unchanged.

    What a sweep calls before computing a validation loss, whatever the optimizer (see
    :func:`schedule_free_eval_params`); for every other optimizer it returns ``params`` itself,
    at no cost.

    Args:
        opt_state: any optimizer state.
        params: the parameters the optimizer trains.

    Returns:
        The evaluation parameters, shaped like ``params``.

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> params = jnp.array([1.0, -2.0])
        >>> jaxlr.eval_params(jaxlr.adam(1e-3).init(params), params) is params
        True

    References:
        Defazio et al. 2024, https://arxiv.org/abs/2405.15682
    """
    found = _find(opt_state, _contrib.ScheduleFreeState)
    return params if found is None else _eval_params(found, params)
