"""Optimizers: optax parity, PyTorch parity, chaining, vmap over hyperparameters, dtypes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlr

# --- a small problem: a tiny regression with a nonlinearity, params as a pytree -------------
# float32 whatever jax_enable_x64 says (the file runs with x64 on and off; float64 parameters
# are tested in tests/test_optim_x64.py)
X = jax.random.normal(jax.random.key(0), (16, 3), jnp.float32)
Y = jnp.tanh(X @ jnp.array([[1.0], [-2.0], [0.5]], jnp.float32))
PARAMS0 = {"w": jnp.full((3, 1), 0.1, jnp.float32), "b": jnp.zeros((1,), jnp.float32)}


def loss(params):
    pred = jnp.tanh(X @ params["w"] + params["b"])
    return jnp.mean((pred - Y) ** 2)


GRAD = jax.jit(jax.grad(loss))


def trajectory(opt, steps=100, params=PARAMS0, **extra):
    """Parameters after each of ``steps`` updates (one compiled scan)."""

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            u, s = opt.update(jax.grad(loss)(p), s, p, **extra)
            p = optax.apply_updates(p, u)
            return (p, s), p

        return jax.lax.scan(body, (params, opt.init(params)), None, length=steps)[1]

    return run(params)


# init_value float32: the schedule is float32 with x64 on too (else optax computes it in float64)
SCHEDULE = optax.cosine_decay_schedule(jnp.float32(3e-2), 100, alpha=0.1)

OPTAX_PAIRS = {
    "sgd": (lambda lr: jaxlr.sgd(lr), lambda lr: optax.sgd(lr)),
    "momentum": (lambda lr: jaxlr.sgd(lr, momentum=0.9), lambda lr: optax.sgd(lr, momentum=0.9)),
    "nesterov": (lambda lr: jaxlr.sgd(lr, 0.9, True), lambda lr: optax.sgd(lr, 0.9, True)),
    "adagrad": (lambda lr: jaxlr.adagrad(lr), lambda lr: optax.adagrad(lr)),
    "rmsprop": (lambda lr: jaxlr.rmsprop(lr), lambda lr: optax.rmsprop(lr)),
    "rmsprop_centered_mom": (
        lambda lr: jaxlr.rmsprop(lr, centered=True, momentum=0.5),
        lambda lr: optax.rmsprop(lr, centered=True, momentum=0.5),
    ),
    "adam": (lambda lr: jaxlr.adam(lr), lambda lr: optax.adam(lr)),
    "adam_nesterov": (lambda lr: jaxlr.adam(lr, nesterov=True),
                      lambda lr: optax.adam(lr, nesterov=True)),
    "adamw": (lambda lr: jaxlr.adamw(lr, weight_decay=0.1),
              lambda lr: optax.adamw(lr, weight_decay=0.1)),
}


@pytest.mark.parametrize("lr", [3e-2, SCHEDULE], ids=["float", "schedule"])
@pytest.mark.parametrize("name", sorted(OPTAX_PAIRS))
def test_default_convention_equals_optax(name, lr):
    ours, ref = OPTAX_PAIRS[name]
    a, b = trajectory(ours(lr)), trajectory(ref(lr))
    diff = max(float(jnp.max(jnp.abs(x - y)))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert diff <= 1e-6
    moved = float(jnp.max(jnp.abs(a["w"][-1] - PARAMS0["w"])))
    assert moved > 1e-2  # the comparison is not vacuous


# --- PyTorch's update rules, written out in numpy from the torch docs' pseudo-code ----------
# https://pytorch.org/docs/stable/generated/torch.optim.SGD.html
# https://pytorch.org/docs/stable/generated/torch.optim.Adagrad.html
# https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html
# https://pytorch.org/docs/stable/generated/torch.optim.Adam.html
# https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html


def torch_reference(name, lr_fn, steps, **hp):
    """float64 numpy implementation of torch.optim's algorithm; returns the flat trajectory."""
    theta = np.concatenate([np.asarray(PARAMS0["w"]).ravel(), np.asarray(PARAMS0["b"])])
    theta = theta.astype(np.float64)

    def grad(th):
        p = {"w": jnp.asarray(th[:3].reshape(3, 1), jnp.float32),
             "b": jnp.asarray(th[3:], jnp.float32)}
        g = GRAD(p)
        return np.concatenate([np.asarray(g["w"]).ravel(), np.asarray(g["b"])]).astype(np.float64)

    state = {"t": 0, "buf": None, "sum": np.zeros_like(theta), "sq": np.zeros_like(theta),
             "gavg": np.zeros_like(theta), "m": np.zeros_like(theta), "v": np.zeros_like(theta)}
    out = []
    for t in range(1, steps + 1):
        g, lr = grad(theta), lr_fn(t - 1)
        if name == "sgd":  # SGD: b_t = mu b_{t-1} + g_t (b_1 = g_1); nesterov g + mu b_t
            mu = hp.get("momentum", 0.0)
            if mu:
                state["buf"] = g.copy() if state["buf"] is None else mu * state["buf"] + g
                g = g + mu * state["buf"] if hp.get("nesterov") else state["buf"]
            theta = theta - lr * g
        elif name == "adagrad":  # state_sum += g^2; theta -= lr g / (sqrt(state_sum) + eps)
            state["sum"] += g * g
            theta = theta - lr * g / (np.sqrt(state["sum"]) + 1e-10)
        elif name == "rmsprop":  # v = a v + (1-a) g^2; centered: v - g_avg^2; eps outside sqrt
            a, mu = 0.99, hp.get("momentum", 0.0)
            state["sq"] = a * state["sq"] + (1 - a) * g * g
            v = state["sq"]
            if hp.get("centered"):
                state["gavg"] = a * state["gavg"] + (1 - a) * g
                v = v - state["gavg"] ** 2
            step = g / (np.sqrt(v) + 1e-8)
            if mu:  # b = mu b + g / avg; theta -= lr b
                state["buf"] = step if state["buf"] is None else mu * state["buf"] + step
                step = state["buf"]
            theta = theta - lr * step
        elif name in ("adam", "adamw"):
            b1, b2, eps = 0.9, 0.999, 1e-8
            if name == "adamw":  # theta <- theta (1 - lr lambda), lambda = 1e-2 by default
                theta = theta * (1 - lr * 1e-2)
            state["m"] = b1 * state["m"] + (1 - b1) * g
            state["v"] = b2 * state["v"] + (1 - b2) * g * g
            mhat = state["m"] / (1 - b1**t)
            denom = np.sqrt(state["v"]) / np.sqrt(1 - b2**t) + eps
            theta = theta - lr * mhat / denom
        out.append(theta.copy())
    return np.stack(out)


def flat(traj):
    return np.concatenate([np.asarray(traj["w"]).reshape(-1, 3), np.asarray(traj["b"])], axis=1)


def drop_at_50(lr):
    """An LR drop (10x at step 50), the same function for jaxlr (traced t) and numpy (int t)."""
    return lambda t: jnp.where(t < 50, lr, lr / 10) if isinstance(t, jax.Array) else (
        lr if t < 50 else lr / 10)


TORCH_CASES = {
    "sgd": ("sgd", 0.3, {}),
    "sgd_momentum": ("sgd", 0.1, {"momentum": 0.9}),
    "sgd_nesterov": ("sgd", 0.1, {"momentum": 0.9, "nesterov": True}),
    "adagrad": ("adagrad", 0.1, {}),
    "rmsprop": ("rmsprop", 1e-2, {}),
    "rmsprop_momentum": ("rmsprop", 3e-3, {"momentum": 0.9}),
    "rmsprop_centered": ("rmsprop", 3e-3, {"centered": True, "momentum": 0.5}),
    "adam": ("adam", 3e-2, {}),
    "adamw": ("adamw", 3e-2, {}),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_torch_convention_equals_torch_formulas_across_lr_drop(case):
    name, lr, hp = TORCH_CASES[case]
    lr_fn = drop_at_50(lr)
    ours = flat(trajectory(getattr(jaxlr, name)(lr_fn, convention="torch", **hp)))
    ref = torch_reference(name, lr_fn, 100, **hp)
    np.testing.assert_allclose(ours, ref, rtol=2e-4, atol=2e-5)
    assert np.abs(ref[-1] - ref[0]).max() > 1e-2


def test_torch_convention_differs_from_optax_where_torch_differs():
    """Guard against a convention flag that does nothing: adagrad and rmsprop must differ."""
    for name in ("adagrad", "rmsprop"):
        a = flat(trajectory(getattr(jaxlr, name)(1e-2)))
        b = flat(trajectory(getattr(jaxlr, name)(1e-2, convention="torch")))
        assert np.abs(a - b).max() > 1e-4, name


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_torch_convention_equals_real_torch(case):
    torch = pytest.importorskip("torch")
    name, lr, hp = TORCH_CASES[case]
    torch.set_default_dtype(torch.float64)
    try:
        start = flat({"w": PARAMS0["w"][None], "b": PARAMS0["b"][None]})[0]
        p = torch.nn.Parameter(torch.tensor(start))
        cls = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad,
               "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam,
               "adamw": torch.optim.AdamW}[name]
        opt = cls([p], lr=lr, **hp)
        xs, ys = torch.tensor(np.asarray(X)), torch.tensor(np.asarray(Y))
        ref = []
        for t in range(100):
            for group in opt.param_groups:
                group["lr"] = lr if t < 50 else lr / 10
            opt.zero_grad()
            pred = torch.tanh(xs @ p[:3].reshape(3, 1) + p[3:])
            torch.mean((pred - ys) ** 2).backward()
            opt.step()
            ref.append(p.detach().numpy().copy())
    finally:
        torch.set_default_dtype(torch.float32)
    ours = flat(trajectory(getattr(jaxlr, name)(drop_at_50(lr), convention="torch", **hp)))
    np.testing.assert_allclose(ours, np.stack(ref), rtol=2e-4, atol=2e-5)


# --- chaining both ways, NNX -----------------------------------------------------------------
def test_chain_clip_then_jaxlr_adam_equals_by_hand():
    chained = optax.chain(optax.clip_by_global_norm(0.05), jaxlr.adam(1e-2))
    a = trajectory(chained, steps=30)
    # by hand: clip the gradient ourselves, then jaxlr.adam
    adam = jaxlr.adam(1e-2)
    p, s = PARAMS0, adam.init(PARAMS0)
    for _ in range(30):
        g = GRAD(p)
        norm = optax.tree.norm(g)
        g = jax.tree.map(lambda x: x * jnp.minimum(1.0, 0.05 / norm), g)
        u, s = adam.update(g, s, p)
        p = optax.apply_updates(p, u)
    chex_close(jax.tree.map(lambda x: x[-1], a), p, atol=1e-6)


def test_chain_jaxlr_sgd_then_weight_decay_equals_by_hand():
    chained = optax.chain(jaxlr.sgd(0.1), optax.add_decayed_weights(0.01))
    a = trajectory(chained, steps=20)
    p = PARAMS0
    for _ in range(20):  # u = -lr g + wd p
        p = jax.tree.map(lambda x, g: x - 0.1 * g + 0.01 * x, p, GRAD(p))
    chex_close(jax.tree.map(lambda x: x[-1], a), p, atol=1e-6)


def test_current_lr_through_chains():
    opt = optax.chain(optax.clip(1.0), jaxlr.sgd(lambda t: 0.1 / (1.0 + t)))
    state = opt.init(PARAMS0)
    assert float(jaxlr.current_lr(state)) == pytest.approx(0.1)  # step-0 LR before any update
    for t in range(3):
        _, state = opt.update(GRAD(PARAMS0), state, PARAMS0)
        assert float(jaxlr.current_lr(state)) == pytest.approx(0.1 / (1 + t))
    with pytest.raises(ValueError, match="no jaxlr learning-rate state"):
        jaxlr.current_lr(optax.adam(1e-3).init(PARAMS0))


def test_nnx_optimizer_trains_a_small_model():
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(3, 8, rngs=rngs)
            self.l2 = nnx.Linear(8, 1, rngs=rngs)

        def __call__(self, x):
            return self.l2(nnx.relu(self.l1(x)))

    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, jaxlr.adam(jaxlr.cosine_decay(1e-2, 200)), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        def f(m):
            return jnp.mean((m(X) - Y) ** 2)

        value, grads = nnx.value_and_grad(f)(model)
        optimizer.update(model, grads)
        return value

    losses = [float(step(model, optimizer)) for _ in range(200)]
    assert losses[-1] < 0.2 * losses[0]
    assert float(jaxlr.current_lr(optimizer.opt_state)) == pytest.approx(
        float(jaxlr.cosine_decay(1e-2, 200)(199)), rel=1e-5)


def test_nnx_optimizer_passes_value_to_a_controller():
    from flax import nnx

    model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
    ctrl = jaxlr.reduce_on_plateau(1e-2, patience=0)
    optimizer = nnx.Optimizer(model, jaxlr.sgd(ctrl), wrt=nnx.Param)
    grads = nnx.grad(lambda m: jnp.mean((m(X) - Y) ** 2))(model)
    for _ in range(3):  # a flat metric: patience=0 cuts on every bad value after the first
        optimizer.update(model, grads, value=1.0)
    assert float(jaxlr.current_lr(optimizer.opt_state)) == pytest.approx(1e-4)


def chex_close(a, b, atol):
    import chex

    chex.assert_trees_all_close(a, b, atol=atol, rtol=0)


# --- vmap over every float hyperparameter == per-value loops --------------------------------
VMAP_TABLE = [
    ("sgd", "learning_rate", [0.05, 0.1, 0.3], {}),
    ("sgd", "momentum", [0.0, 0.5, 0.9], {"learning_rate": 0.05}),
    ("adagrad", "learning_rate", [0.05, 0.1], {}),
    ("adagrad", "initial_accumulator_value", [0.0, 0.1, 1.0], {"learning_rate": 0.1}),
    ("adagrad", "eps", [1e-7, 1e-3], {"learning_rate": 0.1}),
    ("rmsprop", "learning_rate", [1e-3, 1e-2], {}),
    ("rmsprop", "decay", [0.9, 0.99], {"learning_rate": 1e-2}),
    ("rmsprop", "eps", [1e-8, 1e-3], {"learning_rate": 1e-2}),
    ("rmsprop", "initial_scale", [0.0, 1.0], {"learning_rate": 1e-2}),
    ("rmsprop", "momentum", [0.0, 0.9], {"learning_rate": 1e-3}),
    ("adam", "learning_rate", [1e-3, 1e-2, 3e-2], {}),
    ("adam", "b1", [0.5, 0.8, 0.9], {"learning_rate": 1e-2}),
    ("adam", "b2", [0.9, 0.999], {"learning_rate": 1e-2}),
    ("adam", "eps", [1e-8, 1e-2], {"learning_rate": 1e-2}),
    ("adam", "eps_root", [0.0, 1e-4], {"learning_rate": 1e-2}),
    ("adamw", "learning_rate", [1e-3, 1e-2], {}),
    ("adamw", "weight_decay", [0.0, 0.1, 1.0], {"learning_rate": 1e-2}),
    ("adamw", "b1", [0.8, 0.9], {"learning_rate": 1e-2}),
    ("adamw", "b2", [0.99, 0.999], {"learning_rate": 1e-2}),
    ("adamw", "eps", [1e-8, 1e-2], {"learning_rate": 1e-2}),
    ("adamw", "eps_root", [0.0, 1e-4], {"learning_rate": 1e-2}),
]


@pytest.mark.parametrize("convention", ["optax", "torch"])
@pytest.mark.parametrize("name, hp, values, base", VMAP_TABLE,
                         ids=[f"{r[0]}-{r[1]}" for r in VMAP_TABLE])
def test_vmap_over_hyperparameter_equals_loop(name, hp, values, base, convention):
    make = lambda v: getattr(jaxlr, name)(**{**base, hp: v}, convention=convention)
    steps = 20

    def final(v):
        return trajectory_nojit(make(v), steps)

    values = jnp.asarray(values, jnp.float32)
    vmapped = jax.jit(jax.vmap(final))(values)
    # The loop: each concrete float32 value of the same vector. XLA's vectorized kernels may
    # differ from the scalar ones in the last ulp, which adaptive methods amplify to ~1e-6
    # over 20 steps; a wrong hyperparameter moves the result by > 1e-3.
    for i, v in enumerate(values):
        chex_close(jax.tree.map(lambda x: x[i], vmapped), final(v), atol=1e-5)
    assert float(jnp.max(jnp.abs(vmapped["w"][0] - vmapped["w"][-1]))) > 0  # values matter


def trajectory_nojit(opt, steps):
    def body(carry, _):
        p, s = carry
        u, s = opt.update(jax.grad(loss)(p), s, p)
        return (optax.apply_updates(p, u), s), None

    return jax.lax.scan(body, (PARAMS0, opt.init(PARAMS0)), None, length=steps)[0][0]


def test_vmap_table_covers_every_float_hyperparameter():
    import inspect

    covered = {(n, h) for n, h, _, _ in VMAP_TABLE}
    non_numeric = {"nesterov", "convention", "centered", "mask"}
    for name in ("sgd", "adagrad", "rmsprop", "adam", "adamw"):
        for p in inspect.signature(getattr(jaxlr, name)).parameters:
            if p not in non_numeric:
                assert (name, p) in covered, (name, p)


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw"])
def test_array_of_lrs_without_vmap_is_an_error(name):
    with pytest.raises(ValueError, match="learning_rate must be a scalar.*vmap.*jaxlr.sweep"):
        getattr(jaxlr, name)(jnp.array([1e-3, 1e-2]))
    with pytest.raises(ValueError, match="vmap"):
        getattr(jaxlr, name)(np.logspace(-4, -1, 4))


def test_array_of_lrs_traced_without_vmap_is_an_error():
    @jax.jit
    def f(lrs):
        return jaxlr.adam(lrs).init(PARAMS0)

    with pytest.raises(ValueError, match="vmap"):
        f(jnp.array([1e-3, 1e-2]))


@pytest.mark.parametrize("call, match", [
    (lambda: jaxlr.sgd(-0.1), "learning_rate must be >= 0, got learning_rate=-0.1"),
    (lambda: jaxlr.sgd(0.1, momentum=-0.5), "momentum must be >= 0"),
    (lambda: jaxlr.adam(1e-3, b1=1.0), "b1 must be < 1, got b1=1"),
    (lambda: jaxlr.adam(1e-3, b2=-0.1), "b2 must be >= 0"),
    (lambda: jaxlr.adam(1e-3, eps=-1e-8), "eps must be >= 0"),
    (lambda: jaxlr.adamw(1e-3, weight_decay=-1.0), "weight_decay must be >= 0"),
    (lambda: jaxlr.rmsprop(1e-3, decay=1.5), r"decay must be < 1, got decay=1.5; .*\[0, 1\)"),
    (lambda: jaxlr.rmsprop(1e-3, decay=1.0), r"decay must be < 1, got decay=1;"),
    (lambda: jaxlr.rmsprop(1e-3, decay=-0.1, convention="torch"), "decay must be >= 0"),
    (lambda: jaxlr.rmsprop(1e-3, eps=-1.0), "eps must be >= 0, got eps=-1"),
    (lambda: jaxlr.rmsprop(1e-3, momentum=1.0, convention="torch"),
     r"momentum must be < 1, got momentum=1; .*momentum=None"),
    (lambda: jaxlr.sgd(0.1, momentum=1.5), r"momentum must be < 1, got momentum=1.5; .*\[0, 1\)"),
    (lambda: jaxlr.sgd(0.1, momentum=1.0, nesterov=True), "momentum must be < 1"),
    (lambda: jaxlr.adagrad(1e-3, eps=-1.0), "eps must be >= 0, got eps=-1"),
    (lambda: jaxlr.adamw(1e-3, b2=1.0), r"b2 must be < 1, got b2=1; .*\[0, 1\)"),
    (lambda: jaxlr.adamw(1e-3, b1=-0.5, convention="torch"), "b1 must be >= 0, got b1=-0.5"),
    (lambda: jaxlr.adam(1e-3, eps_root=-1.0), "eps_root must be >= 0"),
    (lambda: jaxlr.sgd(jaxlr.constant(-0.1)), r"value must be >= 0, got value=-0.1"),
    (lambda: jaxlr.adagrad(1e-3, initial_accumulator_value=-1), "initial_accumulator_value"),
    (lambda: jaxlr.adam(1e-3, convention="keras"), "convention must be 'optax' or 'torch'"),
    (lambda: jaxlr.sgd(float("nan")), "learning_rate must be finite"),
    (lambda: jaxlr.sgd("fast"), "learning_rate must be a number"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- dtypes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw"])
def test_bf16_params_keep_their_dtype_and_hyperparameters_stay_float32(name):
    opt = getattr(jaxlr, name)(1e-2, **({"momentum": 0.9} if name in ("sgd", "rmsprop") else {}))
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS0)
    state = opt.init(params)

    def body(carry, _):
        p, s = carry
        g = jax.tree.map(lambda x: x.astype(jnp.bfloat16), GRAD(jax.tree.map(
            lambda x: x.astype(jnp.float32), p)))
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (p, s), _ = jax.lax.scan(body, (params, state), None, length=5)  # scan: carry types fixed
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(p))
    assert jaxlr.current_lr(s).dtype == jnp.float32
    leaves_in, leaves_out = jax.tree.leaves(state), jax.tree.leaves(s)
    assert [x.dtype for x in leaves_in] == [x.dtype for x in leaves_out]


def test_bf16_adam_matches_float32_within_bf16_precision():
    p32 = trajectory(jaxlr.adam(1e-2), steps=10)
    p16 = trajectory(jaxlr.adam(1e-2), steps=10,
                     params=jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS0))
    chex_close(jax.tree.map(lambda x: x.astype(jnp.float32), p16), p32, atol=2e-2)


def test_extra_args_are_accepted_and_ignored_without_controller():
    opt = jaxlr.adam(1e-3)
    state = opt.init(PARAMS0)
    u1, _ = opt.update(GRAD(PARAMS0), state, PARAMS0, value=3.0)
    u2, _ = opt.update(GRAD(PARAMS0), state, PARAMS0)
    chex_close(u1, u2, atol=0)


def test_jit_equals_eager():
    opt = jaxlr.rmsprop(jaxlr.exponential_decay(1e-2, 10, 0.5), momentum=0.9, convention="torch")
    state = opt.init(PARAMS0)
    eager = opt.update(GRAD(PARAMS0), state, PARAMS0)
    jitted = jax.jit(opt.update)(GRAD(PARAMS0), state, PARAMS0)
    chex_close(eager, jitted, atol=1e-7)


def test_traced_hyperparameters_are_not_range_checked():
    """Out-of-range values are refused only when concrete: traced, they reach the maths."""
    g = {"w": jnp.ones((3, 1)), "b": jnp.ones((1,))}

    @jax.jit
    def two_updates(momentum):
        opt = jaxlr.sgd(0.1, momentum=momentum)
        state = opt.init(PARAMS0)
        _, state = opt.update(g, state)
        return opt.update(g, state)[0]

    # m_1 = g, m_2 = g + 1.5 g; update = -lr m_2 (optax.trace's formula)
    chex_close(two_updates(1.5), jax.tree.map(lambda x: -0.1 * 2.5 * x, g), atol=1e-6)
    # rmsprop with decay=1 (refused when concrete): nu stays 0, update = -lr g / sqrt(eps)
    u, _ = jax.jit(lambda d: jaxlr.rmsprop(0.1, decay=d, eps=1e-2).update(
        g, jaxlr.rmsprop(0.1, decay=d, eps=1e-2).init(PARAMS0)))(1.0)
    chex_close(u, jax.tree.map(lambda x: -0.1 * x / 0.1, g), atol=1e-6)


# --- momentum=None (optax's default), inject_hyperparams --------------------------------------
def trace_states(state):
    """The momentum buffers (optax.TraceState) in an optimizer state."""
    leaves = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.TraceState))
    return [x for x in leaves if isinstance(x, optax.TraceState)]


# Parameters whose jaxlr default is None because it depends on the convention (the optax value
# is checked by test_default_convention_equals_optax).
PER_CONVENTION = {("adagrad", "initial_accumulator_value"), ("adagrad", "eps"),
                  ("rmsprop", "decay"), ("adamw", "weight_decay")}


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw"])
def test_defaults_are_optax_defaults(name):
    import inspect

    ours = inspect.signature(getattr(jaxlr, name)).parameters
    theirs = inspect.signature(getattr(optax, name)).parameters
    shared = [p for p in ours if p in theirs and (name, p) not in PER_CONVENTION]
    assert "learning_rate" in shared
    for p in shared:
        assert ours[p].default == theirs[p].default, (name, p)


# optax alias.py: `if momentum is not None: opt = transform.trace(...)` (sgd) and
# `transform.trace(...) if momentum is not None else base.identity()` (rmsprop): a buffer for
# every given momentum, 0.0 included; none for None, whatever `nesterov`.
MOMENTUM_CASES = [
    ("sgd", {}), ("sgd", {"momentum": None}), ("sgd", {"momentum": 0.0}),
    ("sgd", {"momentum": 0.9}), ("sgd", {"nesterov": True}),
    ("sgd", {"momentum": 0.0, "nesterov": True}),
    ("rmsprop", {}), ("rmsprop", {"momentum": 0.0}), ("rmsprop", {"momentum": 0.5}),
    ("rmsprop", {"centered": True}), ("rmsprop", {"centered": True, "momentum": 0.0}),
    ("rmsprop", {"nesterov": True}),
]


@pytest.mark.parametrize("convention", ["optax", "torch"])
@pytest.mark.parametrize("name, kwargs", MOMENTUM_CASES,
                         ids=[f"{n}-{k}" for n, k in MOMENTUM_CASES])
def test_momentum_buffer_exactly_when_optax_has_one(name, kwargs, convention):
    ours = getattr(jaxlr, name)(0.1, **kwargs, convention=convention).init(PARAMS0)
    theirs = getattr(optax, name)(0.1, **kwargs).init(PARAMS0)
    assert len(trace_states(ours)) == len(trace_states(theirs))


@pytest.mark.parametrize("name", ["sgd", "rmsprop"])
def test_traced_momentum_always_has_a_buffer(name):
    # the same state structure as a concrete momentum, 0.0 included (so a vmapped sweep over
    # momentum, or inject_hyperparams, keeps one state layout)
    traced = jax.eval_shape(lambda m: getattr(jaxlr, name)(0.1, momentum=m).init(PARAMS0), 0.0)
    for m in (0.0, 0.9):
        concrete = getattr(jaxlr, name)(0.1, momentum=m).init(PARAMS0)
        assert jax.tree.structure(traced) == jax.tree.structure(concrete)
    assert len(trace_states(traced)) == 1


INJECT_CASES = [
    ("sgd", {"learning_rate": 0.1}),
    ("sgd", {"learning_rate": 0.1, "momentum": 0.0}),
    ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ("adagrad", {"learning_rate": 1.0}),
    ("rmsprop", {"learning_rate": 5e-3}),
    ("rmsprop", {"learning_rate": 5e-3, "momentum": 0.9}),
    ("rmsprop", {"learning_rate": 5e-3, "momentum": 0.5, "centered": True}),
    ("adam", {"learning_rate": 1e-1}),
    ("adam", {"learning_rate": 1e-1, "nesterov": True}),
    ("adamw", {"learning_rate": 1e-1}),
]


@pytest.mark.parametrize("order", ["jit_both", "eager_init"])
@pytest.mark.parametrize("convention", ["optax", "torch"])
@pytest.mark.parametrize("name, kwargs", INJECT_CASES, ids=[f"{n}-{k}" for n, k in INJECT_CASES])
def test_inject_hyperparams_wrapped_equals_unwrapped(name, kwargs, convention, order):
    """optax's test_optimizers_can_be_wrapped_in_inject_hyperparams (optax/_src/alias_test.py),
    ported: the same updates and inner state as the unwrapped optimizer. ``eager_init`` runs
    init eagerly and update under jit (the hyperparameters are concrete at init, traced at
    update: the state layout must not depend on that)."""
    factory = getattr(jaxlr, name)
    opt = factory(**kwargs, convention=convention)
    opt_inject = optax.inject_hyperparams(factory)(**kwargs, convention=convention)
    params = [jnp.negative(jnp.ones((2, 3))), jnp.ones((2, 5, 2))]
    grads = [jnp.ones((2, 3)), jnp.negative(jnp.ones((2, 5, 2)))]

    def run(o):
        state = jax.jit(o.init)(params) if order == "jit_both" else o.init(params)
        update = jax.jit(o.update)
        for _ in range(3):  # three updates: a momentum buffer shows from the second on
            updates, state = update(grads, state, params)
        return updates, state

    updates, state = run(opt)
    updates_inject, state_inject = run(opt_inject)
    assert jax.tree.structure(state_inject.inner_state) == jax.tree.structure(state)
    # rtol: optax.adam and inject_hyperparams(optax.adam) themselves differ by 7e-6 here (the
    # float32 cancellation in 1 - b2**t depends on whether b2 is a constant or an array)
    chex.assert_trees_all_close(updates_inject, updates, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(state_inject.inner_state, state, rtol=1e-5, atol=1e-7)
    assert min(float(jnp.min(jnp.abs(u))) for u in updates) > 1e-4  # not vacuous


def test_inject_hyperparams_sgd_default_momentum():
    """The break found with optax's suite: eager init, then update under jit."""
    opt = optax.inject_hyperparams(jaxlr.sgd)(learning_rate=0.1)
    state = opt.init(PARAMS0)
    updates, state = jax.jit(opt.update)(GRAD(PARAMS0), state, PARAMS0)
    chex_close(updates, jax.tree.map(lambda g: -0.1 * g, GRAD(PARAMS0)), atol=1e-7)


# --- the learning-rate step with a schedule --------------------------------------------------
def test_lr_step_calls_a_schedule_once_per_trace_and_nothing_else():
    """Given a callable, the LR step evaluates it at the int32 update count and does no extra
    (eager) evaluation or check: validation belongs to the schedule's constructor."""
    calls = []

    def schedule(t):
        calls.append((type(t).__name__ if isinstance(t, jax.core.Tracer) else "concrete",
                      jnp.result_type(t)))
        return 0.1 / (1.0 + t)

    opt = jaxlr.sgd(schedule)
    state = opt.init(PARAMS0)
    assert calls == [("concrete", jnp.int32)]
    update = jax.jit(opt.update)
    for t in range(3):
        updates, state = update(GRAD(PARAMS0), state, PARAMS0)
        chex_close(updates, jax.tree.map(lambda g: -0.1 / (1 + t) * g, GRAD(PARAMS0)), atol=1e-7)
    assert len(calls) == 2 and calls[1][0] != "concrete" and calls[1][1] == jnp.int32
