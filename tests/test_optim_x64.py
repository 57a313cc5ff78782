"""jaxlr's bottom layer (schedules, plateau, the LR step, optimizers) with jax_enable_x64 on.

DESIGN §2: hyperparameters are float32 whatever the mode; step counters are int32, so a scan
carry keeps its dtypes from one iteration to the next. Each test switches x64 itself with
``jax.enable_x64(...)`` (both ways: the file also runs under ``JAX_ENABLE_X64=1``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlr

X64_ON, X64_OFF = (lambda: jax.enable_x64(True)), (lambda: jax.enable_x64(False))

_rng = np.random.default_rng(0)
X_NP = _rng.standard_normal((16, 3)).astype(np.float32)
Y_NP = np.tanh(X_NP @ np.array([[1.0], [-2.0], [0.5]], np.float32))
PARAMS_NP = {"w": np.full((3, 1), 0.1, np.float32), "b": np.zeros((1,), np.float32)}
# a metric that improves, then stalls: the plateau controller cuts (patience 2) several times
METRICS_NP = np.r_[np.linspace(1.0, 0.5, 10), np.full(30, 0.5)]


def loss(params, x, y):
    return jnp.mean((jnp.tanh(x @ params["w"] + params["b"]) - y) ** 2)


HP = dict(lr=0.05, momentum=0.9, eps=1e-7, decay=0.9, b1=0.9, b2=0.999, wd=1e-2, factor=0.5,
          patience=2.0)


def controller(hp):
    base = jaxlr.warmup(jaxlr.cosine_decay(hp["lr"], 60), 5)
    return jaxlr.reduce_on_plateau(base, factor=hp["factor"], patience=hp["patience"])


OPTIMIZERS = {
    "sgd": lambda hp, c: jaxlr.sgd(controller(hp), hp["momentum"], True, convention=c),
    "adagrad": lambda hp, c: jaxlr.adagrad(controller(hp), eps=hp["eps"], convention=c),
    "rmsprop": lambda hp, c: jaxlr.rmsprop(controller(hp), decay=hp["decay"], centered=True,
                                           momentum=hp["momentum"], convention=c),
    "adam": lambda hp, c: jaxlr.adam(controller(hp), hp["b1"], hp["b2"], convention=c),
    "adamw": lambda hp, c: jaxlr.adamw(controller(hp), hp["b1"], hp["b2"],
                                       weight_decay=hp["wd"], convention=c),
}


def scan_run(name, convention, float_dtype):
    """Params and LR after each update, every hyperparameter traced (given as ``float_dtype``)
    and the metric too, in one jitted ``lax.scan``; also the initial and final states."""
    hp = {k: jnp.asarray(v, float_dtype) for k, v in HP.items()}
    params = jax.tree.map(jnp.asarray, PARAMS_NP)
    x, y, metrics = jnp.asarray(X_NP), jnp.asarray(Y_NP), jnp.asarray(METRICS_NP, float_dtype)

    @jax.jit
    def run(hp, params, metrics):
        opt = OPTIMIZERS[name](hp, convention)
        state0 = opt.init(params)

        def body(carry, m):
            p, s = carry
            u, s = opt.update(jax.grad(loss)(p, x, y), s, p, value=m)
            p = optax.apply_updates(p, u)
            return (p, s), (p, jaxlr.current_lr(s))

        (_, state), out = jax.lax.scan(body, (params, state0), metrics)
        return state0, state, out

    return run(hp, params, metrics)


def lr_states(state):
    is_lr = lambda x: isinstance(x, jaxlr.LearningRateState)  # noqa: E731
    return [x for x in jax.tree.leaves(state, is_leaf=is_lr) if is_lr(x)]


@pytest.mark.parametrize("convention", ["optax", "torch"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_scan_with_plateau_controller_under_x64_equals_x64_off(name, convention):
    """Consistency check (x64 on == x64 off); the numbers themselves are checked against optax,
    torch and formulas in test_optimizers.py / test_plateau.py, which also run under x64."""
    with X64_OFF():
        _, _, (ref_params, ref_lrs) = scan_run(name, convention, jnp.float32)
    with X64_ON():
        state0, state, (params, lrs) = scan_run(name, convention, jnp.float64)
    # dtypes: float32 hyperparameters and LR, int32 counters, unchanged by the scan
    assert [x.dtype for x in jax.tree.leaves(state)] == [x.dtype for x in jax.tree.leaves(state0)]
    (lr_state,) = lr_states(state)
    assert lr_state.count.dtype == jnp.int32 and lr_state.lr.dtype == jnp.float32
    plateau = lr_state.controller
    assert plateau.scale.dtype == plateau.best.dtype == plateau.acc_sum.dtype == jnp.float32
    for counter in (plateau.num_bad, plateau.cooldown_counter, plateau.acc_count,
                    plateau.num_cuts):
        assert counter.dtype == jnp.int32
    assert lrs.dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    # numbers: the same as with x64 off
    np.testing.assert_allclose(lrs, ref_lrs, rtol=1e-6, atol=0)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(plateau.num_cuts) >= 2  # the controller did cut: not a vacuous comparison
    assert float(jnp.max(jnp.abs(params["w"][-1] - PARAMS_NP["w"]))) > 1e-2


SCHEDULES = {
    "constant": lambda: jaxlr.constant(0.3),
    "linear": lambda: jaxlr.linear(1.0, 0.1, 20, 5),
    "polynomial_decay": lambda: jaxlr.polynomial_decay(1.0, 0.1, 2.0, 20, 5),
    "exponential_decay": lambda: jaxlr.exponential_decay(1.0, 10, 0.5, 5, True, 0.05),
    "cosine_decay": lambda: jaxlr.cosine_decay(1.0, 30, 0.1, 2.0),
    "warmup_cosine_decay": lambda: jaxlr.warmup_cosine_decay(0.0, 1.0, 5, 30, 0.1),
    "join": lambda: jaxlr.join([jaxlr.linear(0.0, 1.0, 10), jaxlr.constant(0.05)], [10]),
    "step_decay": lambda: jaxlr.step_decay(1.0, 7, 0.5),
    "multistep_decay": lambda: jaxlr.multistep_decay(1.0, [5, 12, 12, 30], 0.5),
    "one_cycle": lambda: jaxlr.one_cycle(40, 1.0, three_phase=True),
    "cyclic": lambda: jaxlr.cyclic(0.1, 1.0, 6, 4, mode="exp_range", gamma=0.99),
    "inverse_time_decay": lambda: jaxlr.inverse_time_decay(1.0, 5, 0.5, True),
    "cosine_restarts": lambda: jaxlr.cosine_restarts(1.0, 5, 2.0, 0.8, 0.1),
    "warmup": lambda: jaxlr.warmup(jaxlr.cosine_decay(1.0, 20), 5, 0.1),
    "warmup_stable_decay": lambda: jaxlr.warmup_stable_decay(1.0, 40, 5, 10, 0.1, 0.01,
                                                             "1-sqrt"),
    "tabulated": lambda: jaxlr.tabulated(np.linspace(1.0, 0.1, 30)),
}


def test_schedule_table_covers_every_schedule():
    import inspect

    from jaxlr._optim import schedules as _schedules

    public = {n for n, f in vars(_schedules).items() if inspect.isfunction(f)
              and f.__module__ == _schedules.__name__ and not n.startswith("_")}
    assert set(SCHEDULES) == public


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_under_x64_is_float32_and_equals_x64_off(name):
    """Consistency check; test_schedules.py compares the values with optax/torch/formulas."""
    with X64_OFF():
        ref = np.asarray(SCHEDULES[name]()(jnp.arange(64)))
    with X64_ON():
        s = SCHEDULES[name]()
        steps64 = jnp.arange(64)  # int64 under x64
        assert steps64.dtype == jnp.int64
        for steps in (steps64, steps64.astype(jnp.int32), np.arange(64)):
            out = s(steps)
            assert out.dtype == jnp.float32
            np.testing.assert_array_equal(out, ref)
        assert s(7).dtype == jnp.float32  # a Python int step
        # traced float64 hyperparameters (a vmapped sweep under x64) give float32 values too
        assert jax.jit(lambda v: jaxlr.cosine_decay(v, 30)(steps64))(1.0).dtype == jnp.float32


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw"])
def test_float64_params_float32_learning_rate_and_traced_hyperparameters(name):
    """With float64 parameters (x64 on) the learning rate is float32, and so is every traced
    hyperparameter (DESIGN §2); a concrete one reaches optax as the Python float given (optax
    does Python arithmetic on it, e.g. ``1 - decay``: rounding it would break parity). The
    references are optax given exactly that: the float32 LR and the other values as Python
    floats; then every value as a traced float32 array (where optax computes e.g. Adam's bias
    correction 1 - b1**t in float32)."""
    kwargs = {"sgd": dict(momentum=0.9), "adagrad": dict(initial_accumulator_value=0.1, eps=1e-7),
              "rmsprop": dict(decay=0.9, eps=1e-8, momentum=0.9),
              "adam": dict(b1=0.9, b2=0.999, eps=1e-8),
              "adamw": dict(b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4)}[name]
    with X64_ON():
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), PARAMS_NP)
        x, y = jnp.asarray(X_NP, jnp.float64), jnp.asarray(Y_NP, jnp.float64)

        def trajectory(make, hp):
            @jax.jit
            def run(hp):
                opt = make(hp)

                def body(carry, _):
                    p, s = carry
                    u, s = opt.update(jax.grad(loss)(p, x, y), s, p)
                    return (optax.apply_updates(p, u), s), None

                return jax.lax.scan(body, (params, opt.init(params)), None, length=30)[0][0]

            return run(hp)

        ours, theirs = getattr(jaxlr, name), getattr(optax, name)
        lr32 = float(np.float32(0.03))
        hp64 = {k: jnp.float64(v) for k, v in {"learning_rate": 0.03, **kwargs}.items()}
        concrete = trajectory(lambda _: ours(0.03, **kwargs), 0.0)
        reference = trajectory(lambda _: theirs(lr32, **kwargs), 0.0)
        traced = trajectory(lambda h: ours(**h), hp64)
        traced_reference = trajectory(
            lambda h: theirs(**{k: v.astype(jnp.float32) for k, v in h.items()}), hp64)
        unrounded = trajectory(lambda _: theirs(0.03, **kwargs), 0.0)
    for got, ref in ((concrete, reference), (traced, traced_reference)):
        assert all(a.dtype == np.float64 for a in jax.tree.leaves(got))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # the float32 rounding is visible in float64: the comparisons above can tell
    for a, b in ((reference, unrounded), (traced_reference, concrete)):
        diff = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
                   for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        assert diff > 1e-11


def test_lr_step_passes_an_int32_count_to_a_schedule_under_x64():
    seen = []

    def schedule(t):
        seen.append(jnp.result_type(t))
        return 0.1 * (1.0 + t)

    with X64_ON():
        opt = jaxlr.sgd(schedule)
        params = jnp.zeros(2, jnp.float32)
        state = opt.init(params)
        _, state = jax.jit(opt.update)(jnp.ones(2, jnp.float32), state)
        assert jaxlr.current_lr(state).dtype == jnp.float32
        assert lr_states(state)[0].count.dtype == jnp.int32
    assert seen == [jnp.int32, jnp.int32]


def test_inject_hyperparams_under_x64():
    """optax.inject_hyperparams stores hyperparameters in the params' dtype; with float32
    params under x64, wrapped == unwrapped (cf. test_optimizers' inject test)."""
    with X64_ON():
        params = jax.tree.map(jnp.asarray, PARAMS_NP)
        grads = jax.grad(loss)(params, jnp.asarray(X_NP), jnp.asarray(Y_NP))
        for factory, kw in ((jaxlr.sgd, {}), (jaxlr.rmsprop, dict(momentum=0.9)),
                            (jaxlr.adam, {})):
            outs = []
            for opt in (factory(0.1, **kw), optax.inject_hyperparams(factory)(0.1, **kw)):
                state = opt.init(params)
                for _ in range(3):
                    updates, state = jax.jit(opt.update)(grads, state, params)
                outs.append(updates)
            for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True):
                assert a.dtype == b.dtype == jnp.float32
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
