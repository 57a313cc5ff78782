"""Optimizers as optax transforms whose every hyperparameter (and LR) may be traced.

Each alias is a chain of optax primitives plus :func:`jaxlr.scale_by_learning_rate`, wrapped so
that the arithmetic runs in at least float32 while the state keeps the parameters' dtype (bf16
parameters do not round ``b2=0.999`` to 1). ``convention="torch"`` switches to PyTorch's numerics.

The learning rate is float32 whatever the parameters' dtype and ``jax_enable_x64`` (it lives in
the state, see :func:`jaxlr.current_lr`); so is every traced hyperparameter. A concrete one is
passed on to optax as the Python float given (weakly typed: float32 arithmetic with float32
parameters, x64 or not), which keeps the numbers identical to optax's. The state layout
never depends on a hyperparameter's value: ``momentum=None`` (optax's default) keeps no momentum
buffer, any given momentum (0.0 included, concrete or traced) keeps one, exactly as optax's
``sgd``/``rmsprop`` (``optax/_src/alias.py``: ``if momentum is not None: transform.trace(...)``).
So ``optax.inject_hyperparams(jaxlr.sgd)`` and a vmapped sweep over ``momentum`` work, whether
``init`` runs eagerly or under ``jit``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxlr._optim import checks as _checks
from jaxlr._optim.learning_rate import LearningRate, scale_by_learning_rate
from jaxlr._optim.types import ArrayLike

_CONVENTIONS = ("optax", "torch")


def _convention(convention: str) -> bool:
    """True for the torch convention; validates the name."""
    if convention not in _CONVENTIONS:
        raise ValueError(f"convention must be 'optax' or 'torch', got convention={convention!r}")
    return convention == "torch"


# What to do instead, appended to a range error (house style: argument, value and fix).
_IN_0_1 = "; use a value in [0, 1)"
_FIX = {
    "momentum": f"{_IN_0_1}, e.g. 0.9, or momentum=None for no momentum buffer",
    "decay": f"{_IN_0_1}, e.g. 0.9 (optax) or 0.99 (torch's alpha); 1 never lets a gradient in",
    "b1": f"{_IN_0_1}, e.g. b1=0.9",
    "b2": f"{_IN_0_1}, e.g. b2=0.999",
}


def _h(name: str, value: ArrayLike, **bounds: float) -> float | jax.Array:
    """A float hyperparameter, checked when concrete: a Python float (weakly typed, exactly as
    optax gets it: optax does Python arithmetic on it, e.g. ``1 - decay``, so rounding it first
    would change the numbers) or, when traced, a float32 scalar."""
    value = _checks.hparam(name, value, fix=_FIX.get(name, ""), **bounds)
    return _checks.f32(value) if _checks.is_traced(value) else float(value)


def _at_least_f32(x: ArrayLike) -> jax.Array:
    """bf16/f16 leaves as float32 (others unchanged): the optimizer's arithmetic dtype."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype.itemsize < 4:
        return x.astype(jnp.float32)
    return x


def _momentum(momentum: ArrayLike | None, nesterov: bool) -> optax.GradientTransformation:
    """optax's rule (alias.py, ``sgd`` and ``rmsprop``): a buffer iff ``momentum is not None``.

    Never a branch on the value: a concrete 0.0 keeps a buffer too, so the state has the same
    layout whether ``momentum`` is concrete or traced (inject_hyperparams, vmap).
    """
    if momentum is None:
        return optax.identity()
    return optax.trace(decay=_h("momentum", momentum, ge=0, lt=1), nesterov=nesterov)


def _alias(*transforms: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Chain ``transforms``, run them in at least float32 and cast updates and state back to
    their incoming dtypes (a no-op for float32/float64 trees)."""
    inner = optax.chain(*transforms)

    def update_fn(updates, state, params=None, **extra_args):
        up = lambda tree: jax.tree.map(_at_least_f32, tree)
        # the raw gradient as optax's ``grad=`` extra argument (a GradientController such as
        # jaxlr.hypergradient needs it in the LR step, which sees only the scaled direction)
        extra_args = {"grad": up(updates), **extra_args}
        new_updates, new_state = inner.update(up(updates), up(state), up(params), **extra_args)
        cast = lambda new, old: jnp.asarray(new).astype(jnp.asarray(old).dtype)
        return jax.tree.map(cast, new_updates, updates), jax.tree.map(cast, new_state, state)

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)


def _scale_by_rss_torch(initial_accumulator_value: ArrayLike,
                        eps: ArrayLike) -> optax.GradientTransformation:
    """Adagrad's scaling as torch computes it: g / (sqrt(sum g^2) + eps)."""

    def init_fn(params):
        return optax.ScaleByRssState(
            sum_of_squares=optax.tree.full_like(params, initial_accumulator_value))

    def update_fn(updates, state, params=None):
        del params
        ss = jax.tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)
        updates = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps), updates, ss)
        return updates, optax.ScaleByRssState(sum_of_squares=ss)

    return optax.GradientTransformation(init_fn, update_fn)


def sgd(
    learning_rate: LearningRate,
    momentum: float | None = None,
    nesterov: bool = False,
    *,
    convention: str = "optax",
) -> optax.GradientTransformationExtraArgs:
    r"""Stochastic gradient descent with optional (Nesterov) momentum.

    .. math::
        m_t = g_t + \mu m_{t-1}, \qquad
        \theta_{t+1} = \theta_t - \eta_t\, m_t \;\;(\text{Nesterov: } \eta_t (g_t + \mu m_t))

    Both conventions agree (torch's buffer starts at :math:`g_1`, optax's at 0: the same
    :math:`m_1`; both apply :math:`\eta_t` after the momentum, so an LR drop acts at once).

    Args:
        learning_rate: float, traced scalar, schedule or controller.
        momentum: :math:`\mu \in [0, 1)`, or ``None`` (the default, optax's): plain SGD with no
            momentum buffer. Any value, 0.0 included, concrete or traced, keeps a buffer (as
            ``optax.sgd``), so the state layout never depends on the value.
        nesterov: use Nesterov momentum (ignored when ``momentum`` is None, as in optax).
        convention: ``"optax"`` or ``"torch"`` (identical numerics for SGD).

    Returns:
        An ``optax.GradientTransformationExtraArgs``.

    Example:
        >>> import jax.numpy as jnp, optax, jaxlr
        >>> opt = jaxlr.sgd(0.1, momentum=0.9)
        >>> params = jnp.array([1.0, -2.0])
        >>> state = opt.init(params)
        >>> updates, state = opt.update(2 * params, state)
        >>> optax.apply_updates(params, updates)
        Array([ 0.8, -1.6], dtype=float32)

    References:
        ``optax.sgd``: https://optax.readthedocs.io/en/latest/api/optimizers.html#optax.sgd;
        ``torch.optim.SGD``: https://pytorch.org/docs/stable/generated/torch.optim.SGD.html
    """
    _convention(convention)
    return _alias(_momentum(momentum, nesterov), scale_by_learning_rate(learning_rate))


def adagrad(
    learning_rate: LearningRate,
    initial_accumulator_value: float | None = None,
    eps: float | None = None,
    *,
    convention: str = "optax",
) -> optax.GradientTransformationExtraArgs:
    r"""Adagrad: per-coordinate steps shrinking with the sum of squared gradients.

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad
        \theta_{t+1} = \theta_t - \eta_t \frac{g_t}{\sqrt{s_t + \epsilon}}\;(\text{optax}),\quad
        \eta_t \frac{g_t}{\sqrt{s_t} + \epsilon}\;(\text{torch})

    Defaults: optax :math:`s_0 = 0.1, \epsilon = 10^{-7}`; torch :math:`s_0 = 0,
    \epsilon = 10^{-10}`.

    Args:
        learning_rate: float, traced scalar, schedule or controller.
        initial_accumulator_value: :math:`s_0 \ge 0` (default per convention).
        eps: :math:`\epsilon \ge 0` (default per convention).
        convention: ``"optax"`` or ``"torch"``.

    Returns:
        An ``optax.GradientTransformationExtraArgs``.

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> opt = jaxlr.adagrad(0.1, convention="torch")
        >>> state = opt.init(jnp.zeros(1))
        >>> updates, state = opt.update(jnp.array([3.0]), state)
        >>> round(float(updates[0]), 6)
        -0.1

    References:
        Duchi et al. 2011, https://jmlr.org/papers/v12/duchi11a.html;
        ``torch.optim.Adagrad``: https://pytorch.org/docs/stable/generated/torch.optim.Adagrad.html
    """
    torch = _convention(convention)
    init = _h("initial_accumulator_value",
              (0.0 if torch else 0.1) if initial_accumulator_value is None
              else initial_accumulator_value, ge=0)
    eps = _h("eps", (1e-10 if torch else 1e-7) if eps is None else eps, ge=0)
    scale = _scale_by_rss_torch(init, eps) if torch else optax.scale_by_rss(init, eps)
    return _alias(scale, scale_by_learning_rate(learning_rate))


def rmsprop(
    learning_rate: LearningRate,
    decay: float | None = None,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    *,
    convention: str = "optax",
) -> optax.GradientTransformationExtraArgs:
    r"""RMSProp, optionally centered and with momentum.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2,\quad
        (\text{centered: } \bar g_t = \rho \bar g_{t-1} + (1-\rho) g_t,\;
        v_t \leftarrow v_t - \bar g_t^2)

    optax: :math:`u_t = \eta_t g_t / \sqrt{v_t + \epsilon}`, then momentum
    :math:`m_t = u_t + \mu m_{t-1}`, :math:`\theta \mathrel{-}= m_t` (the LR enters before the
    momentum buffer). torch: :math:`m_t = \mu m_{t-1} + g_t / (\sqrt{v_t} + \epsilon)`,
    :math:`\theta \mathrel{-}= \eta_t m_t` (LR after momentum, so an LR drop acts at once).
    Default :math:`\rho`: 0.9 (optax), 0.99 (torch's ``alpha``).

    Args:
        learning_rate: float, traced scalar, schedule or controller.
        decay: :math:`\rho \in [0, 1)` (default per convention).
        eps: :math:`\epsilon \ge 0`.
        initial_scale: :math:`v_0 \ge 0`.
        centered: subtract the squared running mean of gradients.
        momentum: :math:`\mu \in [0, 1)`, or ``None`` (the default, optax's): no momentum
            buffer. Any value, 0.0 included, concrete or traced, keeps one (as
            ``optax.rmsprop``; with ``convention="torch"`` a momentum of 0 is torch's no-momentum
            update, with a buffer).
        nesterov: Nesterov momentum (an optax extension; torch's RMSprop has none; ignored
            when ``momentum`` is None).
        convention: ``"optax"`` or ``"torch"``.

    Returns:
        An ``optax.GradientTransformationExtraArgs``.

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> opt = jaxlr.rmsprop(1e-2, momentum=0.9, convention="torch")
        >>> state = opt.init(jnp.zeros(3))
        >>> updates, state = opt.update(jnp.ones(3), state)
        >>> updates.shape
        (3,)

    References:
        Hinton, Lecture 6e, https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf;
        ``torch.optim.RMSprop``: https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html
    """
    torch = _convention(convention)
    decay = _h("decay", (0.99 if torch else 0.9) if decay is None else decay, ge=0, lt=1)
    kwargs = dict(decay=decay, eps=_h("eps", eps, ge=0),
                  initial_scale=_h("initial_scale", initial_scale, ge=0), eps_in_sqrt=not torch)
    scale = optax.scale_by_stddev(**kwargs) if centered else optax.scale_by_rms(**kwargs)
    mom, lr = _momentum(momentum, nesterov), scale_by_learning_rate(learning_rate)
    return _alias(scale, mom, lr) if torch else _alias(scale, lr, mom)


def adam(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    *,
    nesterov: bool = False,
    convention: str = "optax",
) -> optax.GradientTransformationExtraArgs:
    r"""Adam.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
        \quad \theta_{t+1} = \theta_t - \eta_t
        \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    optax and torch compute the same update (torch divides by
    :math:`\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon`, the same expression), so the two
    conventions agree.

    Args:
        learning_rate: float, traced scalar, schedule or controller.
        b1: :math:`\beta_1 \in [0, 1)`.
        b2: :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon \ge 0`.
        eps_root: :math:`\epsilon_{root} \ge 0` (inside the root, for meta-gradients).
        nesterov: NAdam-style Nesterov momentum (as ``optax.adam(nesterov=True)``).
        convention: ``"optax"`` or ``"torch"``.

    Returns:
        An ``optax.GradientTransformationExtraArgs``.

    Example:
        >>> import jax, jax.numpy as jnp, optax, jaxlr
        >>> opt = jaxlr.adam(jaxlr.cosine_decay(1e-2, 100))
        >>> params = jnp.ones(4)
        >>> state = opt.init(params)
        >>> grads = jax.grad(lambda p: jnp.sum(p ** 2))(params)
        >>> updates, state = opt.update(grads, state, params)
        >>> round(float(optax.apply_updates(params, updates)[0]), 4)
        0.99

    References:
        Kingma & Ba 2015, https://arxiv.org/abs/1412.6980;
        ``optax.adam``: https://optax.readthedocs.io/en/latest/api/optimizers.html#optax.adam
    """
    _convention(convention)
    return _alias(_scale_by_adam(b1, b2, eps, eps_root, nesterov),
                  scale_by_learning_rate(learning_rate))


def adamw(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float | None = None,
    mask: optax.Params | Callable[[optax.Params], optax.Params] | None = None,
    *,
    nesterov: bool = False,
    convention: str = "optax",
) -> optax.GradientTransformationExtraArgs:
    r"""AdamW: Adam with decoupled weight decay.

    .. math::
        \theta_{t+1} = \theta_t - \eta_t \left(\frac{\hat m_t}{\sqrt{\hat v_t +
        \epsilon_{root}} + \epsilon} + \lambda \theta_t\right)

    which is torch's :math:`\theta \leftarrow \theta(1 - \eta_t\lambda)` followed by the Adam
    step. The decay is scaled by the (scheduled) LR. Default :math:`\lambda`: 1e-4 (optax),
    1e-2 (torch).

    Args:
        learning_rate: float, traced scalar, schedule or controller.
        b1: :math:`\beta_1 \in [0, 1)`.
        b2: :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon \ge 0`.
        eps_root: :math:`\epsilon_{root} \ge 0`.
        weight_decay: :math:`\lambda \ge 0` (default per convention).
        mask: optional pytree of booleans (or callable) selecting the decayed leaves.
        nesterov: NAdam-style Nesterov momentum.
        convention: ``"optax"`` or ``"torch"``.

    Returns:
        An ``optax.GradientTransformationExtraArgs``.

    Example:
        >>> import jax.numpy as jnp, jaxlr
        >>> opt = jaxlr.adamw(1e-3, weight_decay=0.1)
        >>> state = opt.init(jnp.ones(2))
        >>> updates, state = opt.update(jnp.zeros(2), state, jnp.ones(2))
        >>> [round(float(u), 6) for u in updates]
        [-0.0001, -0.0001]

    References:
        Loshchilov & Hutter 2019, https://arxiv.org/abs/1711.05101;
        ``torch.optim.AdamW``: https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html
    """
    torch = _convention(convention)
    wd = _h("weight_decay", (1e-2 if torch else 1e-4) if weight_decay is None else weight_decay,
            ge=0)
    return _alias(_scale_by_adam(b1, b2, eps, eps_root, nesterov),
                  optax.add_decayed_weights(wd, mask), scale_by_learning_rate(learning_rate))


def _scale_by_adam(b1, b2, eps, eps_root, nesterov) -> optax.GradientTransformation:
    return optax.scale_by_adam(b1=_h("b1", b1, ge=0, lt=1), b2=_h("b2", b2, ge=0, lt=1),
                               eps=_h("eps", eps, ge=0), eps_root=_h("eps_root", eps_root, ge=0),
                               nesterov=nesterov)
