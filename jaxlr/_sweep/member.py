"""The member program: what ONE member does, written once and vmapped over the member axis.

A member's step is a loss, its gradients, an optax update, and the divergence quarantine
(frozen at the last good parameters and model state when the loss or gradients become
non-finite or the loss blows up); a chunk is ``lax.scan`` of K steps. Nothing here knows the
member axis, devices, files or the loop: ``compiled.py`` maps and jits these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlr._optim import eval_params, hparam, lr_or_none
from jaxlr._sweep import checks
from jaxlr._sweep.data import gather
from jaxlr._sweep.models import Model

if TYPE_CHECKING:
    import chex


class DivergenceRule(NamedTuple):
    """An in-program stop rule: ``update(state, step, loss) -> (state, bad)`` per member.

    Non-finite losses and gradients always count as divergence; a rule adds a test on the
    loss curve (the default: :func:`blowup_rule`; :func:`jaxlr.find_lr` brings its own).
    """

    init: Callable[[], chex.ArrayTree]
    update: Callable[[chex.ArrayTree, jax.Array, jax.Array], tuple[chex.ArrayTree, jax.Array]]


def blowup_rule(factor: float) -> DivergenceRule:
    r"""Diverged when :math:`loss_t - loss_0 > factor \cdot |loss_0|` (``loss_0``: step 0's)."""
    hparam("divergence_factor", factor, gt=0)

    def update(loss0, t, loss):
        loss0 = jnp.where(t == 0, loss, loss0)
        return loss0, loss - loss0 > factor * jnp.abs(loss0)

    return DivergenceRule(init=lambda: jnp.float32(jnp.nan), update=update)


class MemberStatus(NamedTuple):
    """Per-member bookkeeping carried through the scan (leading axis M)."""

    alive: jax.Array  # shape (), bool: not diverged
    diverged_at: jax.Array  # shape (), int32: step of divergence, -1 if never
    rule: chex.ArrayTree  # the DivergenceRule's state


class Carry(NamedTuple):
    params: optax.Params
    rest: chex.ArrayTree  # the model's state (BatchNorm statistics, RNG counters)
    opt_state: optax.OptState
    status: MemberStatus


OWN_DOT = 1024  # tree_finite on CPU: leaves of at least this many values get a dot of their own


def tree_finite(tree: chex.ArrayTree, via_dot: bool = False) -> jax.Array:
    """Whether every float in ``tree`` is finite, as ``isfinite`` of one float32 sum of ``0 * x``
    over all leaves: each term is 0, or NaN for an inf or a NaN, so the test is exact (no
    overflow however large the values).

    ``via_dot`` (CPU): XLA's CPU backend emits a float sum reduction as an in-order loop (float
    addition is not associative) but hands a dot to a vectorized matrix-vector kernel. A leaf of
    at least ``OWN_DOT`` values is dotted with a vector of ZEROS (``x . 0`` is 0, or NaN where
    ``x`` holds an inf or a NaN): the gradient is read once and nothing is written. The smaller
    leaves keep the previous form, concatenated, times 0, dotted with ones (one kernel for all
    of them). That form for every leaf copied all gradients twice per step: in the MLP of
    ``benchmarks/step_cost.py`` (M=16 and 32, one thread, per-kernel medians of a
    ``jax.profiler`` trace) its kernels took ~15 µs of a ~450-530 µs member-step, the dots
    ~3.5 µs. The optimization barrier keeps the large leaves' dots out of the gradients' own
    fusions: without it three cases of ``tests/test_engine_digest.py`` changed in their last
    bits, and with the small leaves dotted too the 4-device halving case did; a tree without
    large leaves compiles exactly as before. Otherwise (GPU) the leaves are concatenated, which
    fuses into the reduction (one kernel)."""
    flat = [jnp.ravel(jnp.abs(x) if jnp.iscomplexobj(x) else x).astype(jnp.float32)
            for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    if not flat:
        return jnp.bool_(True)
    if not via_dot:
        return jnp.isfinite(jnp.sum(jnp.concatenate(flat) * np.float32(0.0)))
    large = [x for x in flat if x.size >= OWN_DOT]
    small = [x for x in flat if x.size < OWN_DOT]
    terms = []
    if small:
        zeros = jnp.concatenate(small) * np.float32(0.0)  # NaN where a value is not finite
        terms.append(jnp.dot(zeros, jnp.ones_like(zeros)))
    if large:
        large = jax.lax.optimization_barrier(large)
        terms += [jnp.dot(x, jnp.zeros(x.shape, jnp.float32)) for x in large]
    return jnp.isfinite(sum(terms[1:], terms[0]))


def state(carry: Carry) -> tuple[optax.Params, chex.ArrayTree, MemberStatus]:
    """What a result keeps of a member, and what is evaluated: params, rest and status. The
    params are the optimizer's evaluation parameters (:func:`jaxlr.eval_params`): for
    Schedule-Free its averaged :math:`x_t`, for every other optimizer the trained params
    themselves (the same object, no cost)."""
    return eval_params(carry.opt_state, carry.params), carry.rest, carry.status


class Program:
    """The per-member functions that are vmapped and compiled."""

    def __init__(self, model: Model, optimizer: Callable, steps: int, rule: DivergenceRule,
                 platform: str = "cpu"):
        self.model, self.optimizer = model, optimizer
        self.steps, self.rule = steps, rule
        self.check_via_dot = platform == "cpu"  # see tree_finite

    def transform(self, hp: dict) -> optax.GradientTransformationExtraArgs:
        tx = self.optimizer(hp)
        if not isinstance(tx, optax.GradientTransformation):
            raise ValueError("optimizer(hp) must return an optax transform (e.g. jaxlr.adam("
                             f"hp['lr'])), got {type(tx).__name__}")
        return optax.with_extra_args_support(tx)

    def check(self, hp: dict, batch: chex.ArrayTree,
              eval_data: chex.ArrayTree | None = None) -> list[str]:
        """Trace one member's init, step (optimizer included) and, given ``eval_data``, its
        evaluation abstractly: bad outputs, hp keys and axes, eval_data fail here, with names
        (see ``checks.program``). Returns the names of the aux metrics ``loss_fn`` returns."""

        return checks.program(self, hp, batch, eval_data)

    def initial_lr(self, hp: dict) -> jax.Array | None:
        """The LR ``optimizer(hp)`` gives its first update, or None when its state has no
        jaxlr LR (an optax optimizer: nothing to check, decided while tracing): the optimizer
        initialised on zeros shaped like the parameters (XLA keeps only the LR's
        computation)."""
        like = jax.eval_shape(lambda: self.model.init(jax.random.key(0), hp["seed"])[0])
        params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), like)
        lr = lr_or_none(self.transform(hp).init(params))
        return None if lr is None else jnp.asarray(lr, jnp.float32)

    def init(self, hp: dict) -> Carry:
        params, rest = self.model.init(jax.random.key(hp["seed"]), hp["seed"])
        status = MemberStatus(alive=jnp.bool_(True), diverged_at=jnp.int32(-1),
                              rule=self.rule.init())
        return Carry(params, rest, self.transform(hp).init(params), status)

    def chunk(self, carry: Carry, hp: dict, xs: chex.ArrayTree, t0: jax.Array,
              data: chex.ArrayTree | None, seed_pos: jax.Array):
        """K steps of one member; ``xs`` is the chunk's batch indices into ``data`` per seed
        [S, K, bs] (the member's row: ``seed_pos``), or the batches themselves when ``data`` is
        None (an iterable's stacked chunk, [K, ...])."""
        tx = self.transform(hp)
        has_lr = lr_or_none(carry.opt_state) is not None

        def step(carry: Carry, inp):
            t, x = inp
            batch = x if data is None else gather(data, xs[seed_pos, t - t0])
            return self.step(tx, has_lr, carry, t, batch)

        k = xs.shape[1] if data is not None else jax.tree.leaves(xs)[0].shape[0]
        ts = jnp.asarray(t0, jnp.int32) + jnp.arange(k, dtype=jnp.int32)  # int32 under x64
        carry, record = jax.lax.scan(step, carry, (ts, None if data is not None else xs))
        if not has_lr:
            record.append(jnp.full_like(record[0], jnp.nan))
        return carry, tuple(record)

    def step(self, tx: optax.GradientTransformationExtraArgs, has_lr: bool, carry: Carry,
             t: jax.Array, batch: chex.ArrayTree) -> tuple[Carry, list[jax.Array]]:
        """One step of one member on ``batch``: ``(carry, [loss] or [loss, lr])``."""
        # rest (BatchNorm stats, RNG counters) is differentiated too, and its cotangent
        # dropped: NNX may only mutate variables created at the trace level of the grad.
        (loss, (_, rest)), (grads, _) = jax.value_and_grad(
            self._loss, has_aux=True, allow_int=True)((carry.params, carry.rest), batch)
        updates, opt_state = tx.update(grads, carry.opt_state, carry.params, value=loss)
        st = carry.status
        rule_state, blown = self.rule.update(st.rule, t, loss)
        # The gradients, not the updates, are checked: they exist in memory anyway, so the
        # check is one extra pass over them, and the optimizer's maths stays fused into the
        # parameter update (the select below), as in a plain optax loop. An update that is
        # non-finite although loss and gradients are finite (a NaN learning rate) shows
        # in the next step's loss and freezes the member there.
        bad = ~jnp.isfinite(loss) | ~tree_finite(grads, self.check_via_dot) | blown
        active = (t < self.steps) & st.alive
        keep = active & ~bad
        params = optax.apply_updates(carry.params, jax.tree.map(
            lambda u: jnp.where(keep, u, jnp.zeros((), u.dtype)), updates))
        # a frozen member's optimizer state runs on (it is never used again): no select
        out = Carry(params, jax.tree.map(lambda a, b: jnp.where(keep, a, b), rest,
                                         carry.rest), opt_state, st)
        rule_state = jax.tree.map(lambda a, b: jnp.where(active, a, b), rule_state, st.rule)
        status = MemberStatus(alive=st.alive & ~(active & bad),
                              diverged_at=jnp.where(active & bad, t, st.diverged_at),
                              rule=rule_state)
        record = [jnp.where(active, loss, jnp.nan).astype(jnp.float32)]
        if has_lr:  # without an LR in the state, no per-step write of a NaN
            record.append(jnp.where(active, lr_or_none(opt_state), jnp.nan))
        return out._replace(status=status), record

    def _loss(self, params_rest, batch):
        loss, aux, new_rest = self.model.loss(*params_rest, batch, True)
        return loss.astype(jnp.float32), (aux, new_rest)

    def evaluate(self, state: tuple, eval_data: chex.ArrayTree):
        """The loss and aux metrics of ``state`` (``(params, rest, status)``) on ``eval_data``."""
        params, rest, _ = state
        loss, aux, _ = self.model.loss(params, rest, eval_data, False)
        return loss, aux
