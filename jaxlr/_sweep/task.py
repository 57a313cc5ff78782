"""What a sweep trains, in one value: the model, its loss, the data (``jaxlr.Task``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import chex
    import jax
    from flax import nnx


class Task(NamedTuple):
    """A training task: what ``jaxlr sweep --task FILE.py:FUNCTION`` trains.

    ``FUNCTION(**options)`` returns one; the command then sweeps it like a built-in model
    (``--optimizer``, ``--lr``, ``--schedule``, lists as grid axes, ``--prune``, ``--pbt``,
    ``--seeds``, ``resume``, ``report``, ``jaxlr.load(DIR).best().params``). In Python,
    ``jaxlr.sweep(task.init, task.loss_fn, task.data, optimizer, grid,
    eval_data=task.eval_data, ...)`` is the same sweep.

    Attributes:
        init: ``key -> params`` (a pytree, or linen variables), ``key -> nnx.Module`` or an
            ``nnx.Module``: as :func:`jaxlr.sweep`'s ``init``.
        loss_fn: ``(model_or_params, batch) -> loss`` or ``(loss, aux_dict)``; ``batch`` is
            ``data`` cut along axis 0.
        data: a tuple or dict of arrays, the training examples on axis 0.
        eval_data: held-out data in the same form, evaluated in full (None: none); the
            command ranks and recommends by its loss.

    Example:
        >>> import jax.numpy as jnp, numpy as np, jaxlr
        >>> x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
        >>> task = jaxlr.Task(init=lambda key: jnp.zeros(1),
        ...                   loss_fn=lambda w, b: jnp.mean((b[0] @ w - 2 * b[0][:, 0]) ** 2),
        ...                   data=(x,))
        >>> res = jaxlr.sweep(task.init, task.loss_fn, task.data,
        ...                   lambda hp: jaxlr.sgd(hp["lr"]), jaxlr.grid(lr=[0.1, 0.5]),
        ...                   steps=20, batch_size=16, progress=False)
        >>> res.best(by="loss").hparams
        {'lr': 0.5}
    """

    init: Callable[[jax.Array], chex.ArrayTree] | nnx.Module
    loss_fn: Callable
    data: chex.ArrayTree
    eval_data: chex.ArrayTree | None = None
