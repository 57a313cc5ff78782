"""The divergence freeze of jaxlr.sweep on a FINITE blow-up, against hand-written loops.

The rule (``jaxlr.sweep``'s docstring, DESIGN 3b): a member whose loss at step t exceeds its
first loss by more than ``divergence_factor * |loss_0|`` is frozen at its last good parameters
and model state. The step semantics, read from ``jaxlr/_sweep/member.py`` (``Program.chunk``):
step t computes the loss of the parameters after t updates (and, for NNX, runs the forward
pass that updates BatchNorm's statistics); if that loss blows up, ``diverged_at = t``, the
update of step t is not applied and the forward pass's new statistics are dropped. So a
member with ``diverged_at = d`` holds

- the parameters after exactly d updates (those whose loss blew up),
- the model state after exactly d forward passes (steps 0 .. d-1),

and records the losses of steps 0 .. d (step d's the blown, finite one), NaN after. The
references below are plain loops (optax for the pytree, ``nnx.Optimizer`` for NNX) stopped at
the first blown step, whose loss they compute themselves. Full batches: the sweep's shuffle
only permutes the examples, the loss and BatchNorm's batch moments are the same up to rounding.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxlr

X = jax.random.normal(jax.random.key(0), (96, 4), jnp.float32)
Y = X @ jnp.array([1.0, -2.0, 0.5, 0.0], jnp.float32) + 0.1 * jax.random.normal(
    jax.random.key(1), (96,), jnp.float32)
DATA = (X, Y)
FACTOR = 100.0  # jaxlr.sweep's default divergence_factor
STEPS = 30


def init_linear(key):
    return {"w": 0.1 * jax.random.normal(key, (4,), jnp.float32), "b": jnp.zeros((), jnp.float32)}


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def blown(loss, loss0, factor=FACTOR):
    """The documented rule: loss_t - loss_0 > factor * |loss_0|."""
    return loss - loss0 > factor * abs(loss0)


def optax_loop(lr, seed, steps=STEPS, stop=True):
    """SGD with momentum 0.5 (optax) from init(key(seed)); stops at the first blown step d and
    returns the losses 0..d, d (-1 if none) and the params after d updates (``stop=False``:
    never stops, the params after ``steps`` updates)."""
    params = init_linear(jax.random.key(seed))
    opt = optax.sgd(lr, momentum=0.5)
    state = opt.init(params)
    losses = []
    for t in range(steps):
        loss, grads = jax.value_and_grad(mse)(params, DATA)
        losses.append(float(loss))
        if stop and blown(losses[-1], losses[0]):
            return np.array(losses), t, params
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return np.array(losses), -1, params


def test_finite_blow_up_freezes_params_after_diverged_at_updates():
    lrs = [0.05, 1.3]  # 1.3: unstable (SGD with momentum 0.5 on this least squares), finite
    res = jaxlr.sweep(init_linear, mse, DATA, lambda hp: jaxlr.sgd(hp["lr"], momentum=0.5),
                      jaxlr.grid(lr=lrs, seed=[3]), steps=STEPS, batch_size=96,
                      divergence_factor=FACTOR, progress=False)
    ref_losses, d, ref_params = optax_loop(lrs[1], seed=3)
    assert d > 2, "the reference must blow up after a few good steps"
    # a clear crossing: finite, step d well above the threshold, step d-1 well below it
    threshold = ref_losses[0] + FACTOR * abs(ref_losses[0])
    assert np.isfinite(ref_losses).all()
    assert ref_losses[d] > 1.2 * threshold and ref_losses[d - 1] < threshold / 1.2
    assert res.diverged.tolist() == [False, True] and res.diverged_at.tolist() == [-1, d]
    np.testing.assert_allclose(res.loss[1, :d + 1], ref_losses, rtol=1e-5)
    assert np.isnan(res.loss[1, d + 1:]).all()
    # frozen at the params after d updates: neither d - 1 nor d + 1 updates
    chex.assert_trees_all_close(res.params(1), ref_params, rtol=1e-5)
    for n in (d - 1, d + 1):
        other = optax_loop(lrs[1], 3, steps=n, stop=False)[2]
        assert not np.allclose(np.asarray(res.params(1)["w"]), np.asarray(other["w"]), rtol=0.1)
    # the healthy member is the same plain loop run to the end
    ok_losses, ok_d, ok_params = optax_loop(lrs[0], seed=3)
    assert ok_d == -1
    np.testing.assert_allclose(res.loss[0], ok_losses, rtol=1e-5)
    chex.assert_trees_all_close(res.params(0), ok_params, rtol=1e-5, atol=1e-7)


# --- NNX: BatchNorm's statistics are model state ------------------------------------------------
class BNNet(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(4, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, momentum=0.5, rngs=rngs)  # fast stats: each step shows
        self.l2 = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.bn(self.l1(x))))[:, 0]


def bn_loss(model, batch):
    return jnp.mean((model(batch[0]) - batch[1]) ** 2)


def nnx_loop(lr, seed, steps=STEPS):
    """Stateful NNX: ``nnx.Optimizer`` with optax SGD; the state (params and BatchNorm stats) is
    copied before each step, and restored when that step's loss blew up (its forward pass has
    already updated the stats in place)."""
    model = BNNet(nnx.Rngs(jax.random.key(seed)))
    opt = nnx.Optimizer(model, optax.sgd(lr), wrt=nnx.Param)
    losses = []
    for t in range(steps):
        before = jax.tree.map(jnp.copy, nnx.state(model))
        loss, grads = nnx.value_and_grad(bn_loss)(model, DATA)
        losses.append(float(loss))
        if blown(losses[-1], losses[0]):
            nnx.update(model, before)
            return np.array(losses), t, model
        opt.update(model, grads)
    return np.array(losses), -1, model


def test_finite_blow_up_freezes_nnx_batchnorm_stats_too():
    lr = 1.4
    res = jaxlr.sweep(lambda key: BNNet(nnx.Rngs(key)), bn_loss, DATA,
                      lambda hp: jaxlr.sgd(hp["lr"]), jaxlr.grid(lr=[lr], seed=[2]),
                      steps=STEPS, batch_size=96, progress=False)
    ref_losses, d, ref_model = nnx_loop(lr, seed=2)
    assert d > 2 and np.isfinite(ref_losses).all()
    threshold = ref_losses[0] + FACTOR * abs(ref_losses[0])
    assert ref_losses[d] > 1.2 * threshold and ref_losses[d - 1] < threshold / 1.2
    assert res.diverged_at.tolist() == [d]
    np.testing.assert_allclose(res.loss[0, :d + 1], ref_losses, rtol=1e-4)
    model = res.params(0)
    # the statistics after d forward passes, not d + 1 (the blown step's are dropped)
    for name in ("mean", "var"):
        got = np.asarray(getattr(model.bn, name)[...])
        np.testing.assert_allclose(got, np.asarray(getattr(ref_model.bn, name)[...]),
                                   rtol=1e-4, atol=1e-6, err_msg=name)
    one_more = BNNet(nnx.Rngs(0))
    nnx.update(one_more, nnx.state(ref_model))
    bn_loss(one_more, DATA)  # the blown step's forward pass: its stats must not be kept
    assert not np.allclose(np.asarray(model.bn.mean[...]), np.asarray(one_more.bn.mean[...]),
                           rtol=1e-3)
    # (l1's bias sits before BatchNorm: its gradient is ~0, its value rounding noise ~1e-6)
    chex.assert_trees_all_close(nnx.state(model, nnx.Param), nnx.state(ref_model, nnx.Param),
                                rtol=1e-4, atol=2e-5)


def test_frozen_member_is_independent_of_the_others():
    """Consistency check (labelled as one): the frozen member of an M=2 sweep equals the same
    member swept alone (the reference tests above are the promise)."""
    both = jaxlr.sweep(init_linear, mse, DATA, lambda hp: jaxlr.sgd(hp["lr"], momentum=0.5),
                       jaxlr.grid(lr=[0.05, 1.3], seed=[3]), steps=STEPS, batch_size=96,
                       progress=False)
    alone = jaxlr.sweep(init_linear, mse, DATA, lambda hp: jaxlr.sgd(hp["lr"], momentum=0.5),
                        jaxlr.grid(lr=[1.3], seed=[3]), steps=STEPS, batch_size=96,
                        progress=False)
    assert both.diverged_at[1] == alone.diverged_at[0]
    chex.assert_trees_all_close(both.params(1), alone.params(0), rtol=1e-5, atol=1e-7)
