"""Adapters: Flax NNX modules, linen variables or plain pytrees -> one functional interface.

The sweep trains ``params`` (NNX ``nnx.Param`` / linen ``variables["params"]`` / the whole
pytree) and carries ``rest`` (BatchNorm statistics, NNX RNG streams, other linen collections)
unchanged by the optimizer but updated by the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlr._sweep.data import describe

if TYPE_CHECKING:
    import chex
    import optax


class Model(NamedTuple):
    """What the sweep needs from a model: pure functions over ``(params, rest)``."""

    # (key, seed) -> (params, rest)
    init: Callable[[jax.Array, jax.Array], tuple[optax.Params, chex.ArrayTree]]
    # (params, rest, batch, train) -> (loss, aux, new rest)
    loss: Callable[..., tuple[jax.Array, dict, chex.ArrayTree]]
    # (params, rest) -> what init returned
    assemble: Callable[[optax.Params, chex.ArrayTree], chex.ArrayTree | nnx.Module]
    kind: str  # "nnx", "linen" or "pytree"


def _split_output(out: chex.ArrayTree) -> tuple[jax.Array, dict]:
    """``loss`` or ``(loss, aux_dict)``; any other tuple is a structural mistake (e.g. ``(loss,
    logits)``, the ``has_aux`` idiom), raised at trace time with the fix."""
    if not isinstance(out, tuple):
        return out, {}
    if len(out) == 2 and isinstance(out[1], dict):
        return out[0], out[1]
    raise ValueError(f"loss_fn must return a scalar loss or (loss, aux_dict), got a tuple of "
                     f"{len(out)} ({describe(out)}); return (loss, {{'name': value}}): put extra "
                     "outputs in a dict")


def _reseed(rest: chex.ArrayTree, seed: jax.Array) -> chex.ArrayTree:
    """Give every member its own RNG streams when all start from one module instance."""
    def fold(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.fold_in(x, seed)
        return x

    return jax.tree.map(fold, rest)


def _nnx(init: Callable[[jax.Array], nnx.Module] | nnx.Module, loss_fn: Callable,
         probe: nnx.Module) -> Model:
    instance = init if isinstance(init, nnx.Module) else None
    graph_train, _, _ = nnx.split(probe, nnx.Param, ...)
    eval_module = nnx.merge(*nnx.split(probe))  # a copy whose flags we may change
    eval_module.eval()
    graph_eval, _, _ = nnx.split(eval_module, nnx.Param, ...)

    def init_fn(key, seed):
        if instance is not None:
            _, params, rest = nnx.split(instance, nnx.Param, ...)
            return params, _reseed(rest, seed)
        _, params, rest = nnx.split(init(key), nnx.Param, ...)
        return params, rest

    def loss(params, rest, batch, train=True):
        model = nnx.merge(graph_train if train else graph_eval, params, rest)
        value, aux = _split_output(loss_fn(model, batch))
        _, _, new_rest = nnx.split(model, nnx.Param, ...)
        return value, aux, new_rest

    return Model(init_fn, loss, lambda params, rest: nnx.merge(graph_train, params, rest), "nnx")


def _pytree(init: Callable[[jax.Array], chex.ArrayTree], loss_fn: Callable,
            probe: chex.ArrayTree) -> Model:
    linen = isinstance(probe, dict) and "params" in probe

    def init_fn(key, seed):
        del seed
        out = init(key)
        if linen:
            return out["params"], {k: v for k, v in out.items() if k != "params"}
        return out, ()

    def assemble(params, rest):
        return {**rest, "params": params} if linen else params

    def loss(params, rest, batch, train=True):
        del train
        value, aux = _split_output(loss_fn(assemble(params, rest), batch))
        return value, aux, rest

    return Model(init_fn, loss, assemble, "linen" if linen else "pytree")


def adapt(init: Callable[[jax.Array], chex.ArrayTree] | nnx.Module, loss_fn: Callable) -> Model:
    """The :class:`Model` for ``init`` (``key -> params | linen variables | nnx.Module``, or an
    ``nnx.Module`` instance) and ``loss_fn(model_or_params, batch) -> loss | (loss, aux)``."""
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be a function (model, batch) -> loss, got {loss_fn!r}")
    if isinstance(init, nnx.Module):
        return _nnx(init, loss_fn, init)
    if not callable(init):
        raise ValueError("init must be a function key -> params/model or an nnx.Module, got "
                         f"{type(init).__name__}")
    probe = jax.eval_shape(init, jax.random.key(0))
    if isinstance(probe, nnx.Module):
        return _nnx(init, loss_fn, probe)
    return _pytree(init, loss_fn, probe)
