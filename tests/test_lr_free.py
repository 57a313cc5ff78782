"""LR-free and adaptive methods (jaxlr/_optim/lr_free.py): numerics against each paper's
algorithm written out in numpy (with optax.contrib's deviations marked ``# optax:``), the
recorded effective LR, traced/vmapped hyperparameters, x64, chains, eval_params, argument checks
and a sweep member of each."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax import contrib

import jaxlr

# --- a small least-squares problem: f(x) = 0.5 mean((A x - y)^2), x = concat(w, b) ----------
_rng = np.random.default_rng(0)
A = _rng.standard_normal((8, 5))
Y = _rng.standard_normal(8)
X0 = {"w": np.array([0.5, -1.0, 0.3]), "b": np.array([0.2, -0.4])}
STEPS = 8


def flat(p):
    return np.concatenate([np.asarray(p["w"]), np.asarray(p["b"])])


def np_grad(x):
    return A.T @ (A @ x - Y) / len(Y)


def loss(params):
    x = jnp.concatenate([params["w"], params["b"]])
    return 0.5 * jnp.mean((jnp.asarray(A, x.dtype) @ x - jnp.asarray(Y, x.dtype)) ** 2)


def run(opt, steps=STEPS, dtype=jnp.float32, plain=False):
    """Params (flattened) and jaxlr.current_lr after each update, and the final state, the loss
    passed as ``value=`` (as a sweep does; not to a ``plain`` optax transform). Eager: these
    tiny steps run faster op by op than they compile (jit, vmap and scan are tested below)."""
    p = jax.tree.map(lambda a: jnp.asarray(a, dtype), X0)
    s = opt.init(p)
    xs, lrs = [], []
    for _ in range(steps):
        value, g = jax.value_and_grad(loss)(p)
        u, s = opt.update(g, s, p) if plain else opt.update(g, s, p, value=value)
        p = optax.apply_updates(p, u)
        xs.append(jnp.concatenate([p["w"], p["b"]]))
        lrs.append(None if plain else jaxlr.current_lr(s))
    return jnp.stack(xs), None if plain else jnp.stack(lrs), s


# --- each paper's algorithm in numpy (float64) ---------------------------------------------
def np_prodigy(lr, b1, b2, eps, d0, coef, wd, steps=STEPS):
    """Prodigy, Adam version (Mishchenko & Defazio, arXiv 2306.06101)."""
    x0 = flat(X0)
    x, d, r = x0.copy(), d0, 0.0
    m, v, s = np.zeros(5), np.zeros(5), np.zeros(5)
    b3 = np.sqrt(b2)
    xs, lrs = [], []
    for k in range(steps):
        g = np_grad(x)
        # optax: Adam's bias correction folded into gamma_k (the paper: gamma_k = lr_k)
        gamma = lr(k) * np.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1))
        m = b1 * m + (1 - b1) * d * g
        v = b2 * v + (1 - b2) * d**2 * g**2
        # the paper's (1 - sqrt(b2)) factors on r and s cancel in r / |s|_1
        r = b3 * r + gamma * d**2 * (g @ (x0 - x))
        s = b3 * s + gamma * d**2 * g
        lrs.append(d * lr(k))  # the recorded LR: d_k * lr_k
        d_next = max(d, coef * r / np.abs(s).sum())
        # eps is scaled by d_{k+1} (optax and the authors' code)
        x = x - gamma * d * (m / (np.sqrt(v) + d_next * eps) + wd * x)
        d = d_next
        xs.append(x)
    return np.array(xs), np.array(lrs)


def np_dadapt(lr, b1, b2, eps, d0, wd, steps=STEPS):
    """D-Adaptation, Adam variant (Defazio & Mishchenko, arXiv 2301.07733; the authors' v3)."""
    x = flat(X0)
    d, r = d0, 0.0
    m, v, s = np.zeros(5), np.zeros(5), np.zeros(5)
    sb2 = np.sqrt(b2)
    xs, lrs = [], []
    for k in range(steps):
        g = np_grad(x)
        # optax: Adam's bias correction always on (the authors' default: off)
        dlr = d * lr(k) * np.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1))
        r = sb2 * r + (1 - sb2) * dlr * (g @ (s / (np.sqrt(v) + eps)))  # old s and v
        m = b1 * m + (1 - b1) * dlr * g
        v = b2 * v + (1 - b2) * g**2
        s = sb2 * s + (1 - sb2) * dlr * g
        x = x - m / (np.sqrt(v) + eps) - wd * dlr * x  # decoupled decay
        lrs.append(d * lr(k))
        d = max(d, r / ((1 - sb2) * np.abs(s).sum()))
        xs.append(x)
    return np.array(xs), np.array(lrs)


def np_dog(c, kind, value, eps, wd, steps=STEPS):
    """DoG (Ivgi et al., arXiv 2302.12022), + eps under the root (optax and the authors)."""
    x0 = flat(X0)
    x = x0.copy()
    rbar = {"heuristic": value * (1 + np.linalg.norm(x0)), "distance": value,
            "learning_rate": 0.0}[kind]
    big_g = 0.0
    xs, lrs = [], []
    for t in range(steps):
        g = np_grad(x) + wd * x
        rbar = max(rbar, np.linalg.norm(x - x0))
        big_g += g @ g
        eta = value if (kind == "learning_rate" and t == 0) else rbar / np.sqrt(big_g + eps)
        x = x - c * eta * g
        lrs.append(c * eta)
        xs.append(x)
    return np.array(xs), np.array(lrs)


def np_mechanic(base_lr, wd, eps, s_init, n, steps=STEPS):
    """Mechanic (Cutkosky et al., arXiv 2306.00144, Algorithm 1) over SGD(base_lr)."""
    x_ref = flat(X0)
    x = x_ref.copy()
    betas = 1 - 0.1 ** np.arange(1, n + 1)
    s = np.full(n, s_init)  # optax (the paper: s_1 = 0; the same here, as Delta_1 = 0)
    m, v, r = np.zeros(n), np.zeros(n), np.zeros(n)
    xs, lrs = [], []
    for _ in range(steps):
        g = np_grad(x)
        u = -base_lr * g  # the base optimizer's update
        big_s = s.sum()
        delta = (x - x_ref) / (big_s + eps)  # optax recomputes Delta_t (the paper stores it)
        g_tilde = g + wd * big_s * np.linalg.norm(g) / (np.linalg.norm(x) + eps) * x
        h = g_tilde @ -delta  # the paper's -<Delta_t, g~_t>: r grows when Delta descends
        r = betas * r + s * np.clip(h, -m, m)  # optax: h clipped to +-m_{t-1} (not the paper)
        m = np.maximum(betas * m, abs(h) + eps)  # optax: + eps
        v = betas**2 * v + h**2
        wealth = s_init / n * m + np.maximum(r, 0)  # optax: r itself stays unclamped
        s = wealth / (np.sqrt(v) + eps)
        x = x_ref + s.sum() * (delta + u)
        lrs.append(s.sum() * base_lr)
        xs.append(x)
    return np.array(xs), np.array(lrs)


def np_cocob(c, alpha, eps, wd, steps=STEPS):
    """COCOB-Backprop (Orabona & Tommasi, arXiv 1705.07795, Algorithm 2)."""
    x1 = flat(X0)
    x = x1.copy()
    big_l = np.full(5, eps)  # optax: L_0 = eps (the paper: 0)
    big_g, reward, theta = np.zeros(5), np.zeros(5), np.zeros(5)
    xs, lrs = [], []
    for _ in range(steps):
        g = c * (np_grad(x) + wd * x)  # optax's weight decay and learning-rate scaling
        big_l = np.maximum(big_l, abs(g))
        big_g = big_g + abs(g)
        reward = np.maximum(reward - g * (x - x1), 0)
        theta = theta - g
        x = x1 + theta / (big_l * np.maximum(big_g + big_l, alpha * big_l)) * (big_l + reward)
        lrs.append(c * np.linalg.norm(x - x1) / np.linalg.norm(theta))
        xs.append(x)
    return np.array(xs), np.array(lrs)


def np_schedule_free(lr, warmup, b1, b2, eps, wd, power, steps=STEPS):
    """Schedule-Free AdamW (Defazio et al., arXiv 2405.15682, Algorithm 1)."""
    sched = (lambda t: lr * min(1.0, t / warmup)) if warmup else (lambda t: lr)
    y = z = x = flat(X0)
    v, weight_sum, lr_max = np.zeros(5), 0.0, 0.0
    xs, lrs = [], []
    for t in range(1, steps + 1):
        g = np_grad(y)
        v = b2 * v + (1 - b2) * g**2
        # optax: v bias-corrected in the root (the paper: gamma_t * sqrt(1 - b2^t), eps outside)
        u = g / (np.sqrt(v / (1 - b2**t)) + eps) + wd * y
        gamma_z = sched(t - 1)  # optax: the z step runs one schedule step behind the weights
        z = z - gamma_z * u
        lr_max = max(lr_max, sched(t))
        weight = lr_max**power
        weight_sum += weight
        ck = weight / weight_sum if weight_sum > 0 else 0.0
        x = (1 - ck) * x + ck * z
        y = b1 * x + (1 - b1) * z
        lrs.append(gamma_z)
        xs.append(y)
    return np.array(xs), np.array(lrs), x


# name -> (jaxlr optimizer, numpy reference (params, LRs))
lin = jaxlr.linear(1.0, 0.5, STEPS)  # a decaying LR multiplier (jaxlr schedule)
lin_np = lambda k: 1.0 + (0.5 - 1.0) * min(k / STEPS, 1.0)  # noqa: E731
CASES = {
    "prodigy": (lambda: jaxlr.prodigy(lin, betas=(0.9, 0.99), estim_lr0=1e-3, weight_decay=0.1),
                lambda: np_prodigy(lin_np, 0.9, 0.99, 1e-8, 1e-3, 1.0, 0.1)),
    "prodigy_coef": (lambda: jaxlr.prodigy(0.5, beta3=0.9, estim_lr0=1e-2, estim_lr_coef=2.0),
                     lambda: _np_prodigy_beta3()),
    "dadapt_adamw": (lambda: jaxlr.dadapt_adamw(lin, betas=(0.9, 0.99), estim_lr0=1e-3,
                                                weight_decay=0.1),
                     lambda: np_dadapt(lin_np, 0.9, 0.99, 1e-8, 1e-3, 0.1)),
    "dog": (lambda: jaxlr.dog(0.8, init_step=("heuristic", 1e-2), weight_decay=0.05),
            lambda: np_dog(0.8, "heuristic", 1e-2, 1e-8, 0.05)),
    "dog_lr": (lambda: jaxlr.dog(1.0, init_step=("learning_rate", 0.05)),
               lambda: np_dog(1.0, "learning_rate", 0.05, 1e-8, 0.0)),
    "mechanize": (lambda: jaxlr.mechanize(jaxlr.sgd(0.5), s_init=1e-4, num_betas=3),
                  lambda: np_mechanic(0.5, 1e-2, 1e-8, 1e-4, 3)),
    "cocob": (lambda: jaxlr.cocob(0.7, alpha=10.0, weight_decay=0.01),
              lambda: np_cocob(0.7, 10.0, 1e-8, 0.01)),
    "schedule_free_adamw": (
        lambda: jaxlr.schedule_free_adamw(0.1, warmup_steps=3, b1=0.8, weight_decay=0.05),
        lambda: np_schedule_free(0.1, 3, 0.8, 0.999, 1e-8, 0.05, 2.0)[:2]),
}


def _np_prodigy_beta3():
    """Prodigy with beta3 != sqrt(b2) (a separate decay for r and s) and estim_lr_coef."""
    x0 = flat(X0)
    x, d, r = x0.copy(), 1e-2, 0.0
    m, v, s = np.zeros(5), np.zeros(5), np.zeros(5)
    b1, b2, b3, lr, coef, eps = 0.9, 0.999, 0.9, 0.5, 2.0, 1e-8
    xs, lrs = [], []
    for k in range(STEPS):
        g = np_grad(x)
        gamma = lr * np.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1))
        m = b1 * m + (1 - b1) * d * g
        v = b2 * v + (1 - b2) * d**2 * g**2
        r = b3 * r + gamma * d**2 * (g @ (x0 - x))
        s = b3 * s + gamma * d**2 * g
        lrs.append(d * lr)
        d_next = max(d, coef * r / np.abs(s).sum())
        x = x - gamma * d * m / (np.sqrt(v) + d_next * eps)
        d = d_next
        xs.append(x)
    return np.array(xs), np.array(lrs)


# --- 1. numerics and the recorded effective LR ---------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("x64", [False, True])
def test_matches_the_papers_algorithm(name, x64):
    """Params and recorded LR after each of 8 updates == the numpy algorithm (float64): with
    float32 params (x64 off) and with float64 params (x64 on; the LR is float32 still)."""
    make, reference = CASES[name]
    xs_np, lrs_np = reference()
    with jax.enable_x64(x64):
        xs, lrs, _ = run(make(), dtype=jnp.float64 if x64 else jnp.float32)
        assert lrs.dtype == jnp.float32
        assert xs.dtype == (jnp.float64 if x64 else jnp.float32)
    # float32: 8 steps of float32 rounding (near 0 it is absolute: the params are O(1))
    rtol, atol = (1e-5, 1e-9) if x64 else (5e-5, 1e-5)
    np.testing.assert_allclose(np.asarray(xs), xs_np, rtol=rtol, atol=atol)
    np.testing.assert_allclose(np.asarray(lrs), lrs_np, rtol=rtol)


def test_the_same_numbers_as_optax_contrib():
    """The wrappers change no number of optax.contrib's (where optax's d stays finite)."""
    pairs = [
        (jaxlr.prodigy(0.7, weight_decay=0.1), contrib.prodigy(0.7, weight_decay=0.1)),
        (jaxlr.dadapt_adamw(0.7), contrib.dadapt_adamw(0.7)),
        (jaxlr.dog(0.9, weight_decay=0.1), contrib.dog(0.9, weight_decay=0.1)),
        (jaxlr.mechanize(optax.adam(0.1)), contrib.mechanize(optax.adam(0.1))),
        (jaxlr.cocob(0.5), contrib.cocob(0.5)),
        (jaxlr.schedule_free_adamw(0.1, warmup_steps=4), contrib.schedule_free_adamw(0.1, 4)),
    ]
    for ours, theirs in pairs:
        xs, _, state = run(ours, steps=4)
        xs_optax, _, state_optax = run(theirs, steps=4, plain=True)
        np.testing.assert_allclose(np.asarray(xs), np.asarray(xs_optax), rtol=1e-6, atol=1e-8)
        chex.assert_trees_all_close(state[1], state_optax, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("make, expected", [
    (lambda: jaxlr.prodigy(0.5, estim_lr0=1e-4), 0.5e-4),
    (lambda: jaxlr.dadapt_adamw(jaxlr.warmup(jaxlr.constant(1.0), 4, 0.2), estim_lr0=1e-3),
     0.2e-3),
    (lambda: jaxlr.dog(0.5, init_step=("learning_rate", 0.1)), 0.05),
    (lambda: jaxlr.dog(), np.nan),
    (lambda: jaxlr.mechanize(jaxlr.adam(0.01), s_init=1e-5, num_betas=4), 4e-5 * 0.01),
    (lambda: jaxlr.mechanize(optax.inject_hyperparams(optax.sgd)(0.2), s_init=1e-5), 6e-5 * 0.2),
    (lambda: jaxlr.mechanize(optax.sgd(0.2), s_init=1e-5), 6e-5),
    (lambda: jaxlr.cocob(), np.nan),
    (lambda: jaxlr.schedule_free_adamw(0.3), 0.3),
    (lambda: jaxlr.schedule_free_adamw(0.3, warmup_steps=10), 0.0),
])
def test_current_lr_before_any_update(make, expected):
    lr = jaxlr.current_lr(make().init(jax.tree.map(jnp.asarray, X0)))
    assert lr.dtype == jnp.float32 and lr.shape == ()
    np.testing.assert_allclose(float(lr), expected, rtol=1e-6)


def test_mechanic_records_its_scale_times_the_base_lr():
    """With a jaxlr base (its own LearningRateState further in the tree) the first LR state
    found is Mechanic's: sum(s) * the base's LR of that update (a schedule here)."""
    base = jaxlr.sgd(jaxlr.linear(0.4, 0.1, 4))
    _, lrs, state = run(jaxlr.mechanize(base, s_init=1e-3, num_betas=2), steps=6)
    mech = state[1]
    base_lr = float(jaxlr.current_lr(mech.base_optimizer_state))
    np.testing.assert_allclose(base_lr, 0.1, rtol=1e-6)
    np.testing.assert_allclose(float(lrs[-1]), float(jnp.sum(mech.s)) * 0.1, rtol=1e-6)


def test_cocob_lr_is_invariant_to_a_constant_learning_rate():
    """COCOB ignores the scale of the gradients (up to eps): its recorded LR, in the gradient's
    own units, does not change with the learning rate either."""
    xs1, lrs1, _ = run(jaxlr.cocob(1.0))
    xs2, lrs2, _ = run(jaxlr.cocob(4.0))
    np.testing.assert_allclose(np.asarray(xs1), np.asarray(xs2), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(lrs1), np.asarray(lrs2), rtol=1e-5)


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_d_stays_finite_through_a_warmup_from_zero(name):
    """optax.contrib's estimate is 0/0 when the first LR is 0 and makes d (then the params) NaN
    for good; jaxlr keeps d, as the authors' code does."""
    schedule = jaxlr.linear(0.0, 1.0, 4)
    ours = getattr(jaxlr, name)(schedule)
    theirs = getattr(contrib, name)(schedule)
    xs, lrs, state = run(ours)
    assert np.isfinite(np.asarray(xs)).all() and np.isfinite(np.asarray(lrs)).all()
    assert float(lrs[0]) == 0.0 and float(state[1].estim_lr) > 1e-6
    xs_optax, _, _ = run(theirs, plain=True)
    assert np.isnan(np.asarray(xs_optax)[-1]).all()  # what the guard avoids


# --- 2. traced hyperparameters, vmap, x64 --------------------------------------------------
TRACED = {  # every numeric argument from hp (traced in the test)
    "prodigy": lambda hp: jaxlr.prodigy(hp["lr"], betas=(hp["b1"], hp["b2"]), beta3=hp["b3"],
                                        eps=hp["eps"], estim_lr0=hp["d0"],
                                        estim_lr_coef=hp["coef"], weight_decay=hp["wd"]),
    "dadapt_adamw": lambda hp: jaxlr.dadapt_adamw(hp["lr"], betas=(hp["b1"], hp["b2"]),
                                                  eps=hp["eps"], estim_lr0=hp["d0"],
                                                  weight_decay=hp["wd"]),
    "dog": lambda hp: jaxlr.dog(hp["lr"], init_step=("distance", hp["d0"]), eps=hp["eps"],
                                weight_decay=hp["wd"]),
    "mechanize": lambda hp: jaxlr.mechanize(jaxlr.adam(hp["lr"], b1=hp["b1"]),
                                            weight_decay=hp["wd"], eps=hp["eps"],
                                            s_init=hp["d0"], num_betas=3),
    "cocob": lambda hp: jaxlr.cocob(hp["lr"], alpha=hp["alpha"], eps=hp["eps"],
                                    weight_decay=hp["wd"]),
    "schedule_free_adamw": lambda hp: jaxlr.schedule_free_adamw(
        hp["lr"], warmup_steps=hp["warmup"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"],
        weight_decay=hp["wd"], weight_lr_power=hp["power"]),
}
HP = dict(lr=0.3, b1=0.8, b2=0.99, b3=0.95, eps=1e-8, d0=1e-3, coef=1.5, wd=0.02, alpha=20.0,
          warmup=3, power=1.5)


@pytest.mark.parametrize("name", sorted(TRACED))
def test_traced_hyperparameters_and_vmap_member_equals_solo(name):
    """Every hyperparameter traced (float32 scalars; warmup_steps int32), the LR vmapped over
    two members, the steps in a jitted scan: each member == the eager run with the same values
    given as Python numbers."""
    lrs = [0.1, 0.5]
    hp = {k: jnp.asarray(v, jnp.int32 if k == "warmup" else jnp.float32) for k, v in HP.items()}

    @jax.jit
    def sweep(lr, hp, params):
        def member(lr):
            opt = TRACED[name](dict(hp, lr=lr))

            def step(carry, _):
                p, s = carry
                value, g = jax.value_and_grad(loss)(p)
                u, s = opt.update(g, s, p, value=value, grad=g)
                p = optax.apply_updates(p, u)
                return (p, s), (jnp.concatenate([p["w"], p["b"]]), jaxlr.current_lr(s))

            return jax.lax.scan(step, (params, opt.init(params)), None, length=STEPS)[1]

        return jax.vmap(member)(lr)

    xs_v, lrs_v = sweep(jnp.asarray(lrs, jnp.float32), hp,
                        jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), X0))
    for i, lr in enumerate(lrs):
        xs_s, lrs_s, _ = run(TRACED[name](dict(HP, lr=lr)))
        # traced float32 values vs Python floats: rounding differs near 0 (params are O(1))
        np.testing.assert_allclose(np.asarray(xs_v[i]), np.asarray(xs_s), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(lrs_v[i]), np.asarray(lrs_s), rtol=1e-5)
        assert np.isfinite(np.asarray(lrs_v[i])).all()


@pytest.mark.parametrize("name", sorted(TRACED))
@pytest.mark.parametrize("x64, dtype", [(False, "float32"), (True, "float32"),
                                        (True, "float64")])
def test_state_dtypes_are_stable_with_and_without_x64(name, x64, dtype):
    """A scan carry keeps its dtypes: the state after an update has the init state's dtypes
    (traced hyperparameters given as float64 under x64), the LR is float32, the updates have
    the parameters' dtype."""
    with jax.enable_x64(x64):
        hp_dtype = jnp.float64 if x64 else jnp.float32
        hp = {k: jnp.asarray(v, jnp.int32 if k == "warmup" else hp_dtype) for k, v in HP.items()}
        params = jax.tree.map(lambda a: jnp.asarray(a, dtype), X0)

        def step(hp, params):
            opt = TRACED[name](hp)
            state = opt.init(params)
            updates, new = opt.update(jax.grad(loss)(params), state, params, value=1.0)
            return state, updates, new

        state, updates, new = jax.eval_shape(step, hp, params)  # traced, nothing compiled
        dtypes = lambda tree: jax.tree.map(lambda a: a.dtype, tree)  # noqa: E731
        assert dtypes(new) == dtypes(state)
        assert jaxlr.current_lr(new).dtype == jnp.float32
        assert dtypes(updates) == dtypes(params)


# --- 3. chains and extra arguments ---------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TRACED))
def test_chains_with_optax_both_ways(name):
    opt = TRACED[name](HP)
    # after a clip: the same as the method on clipped gradients
    clipped = optax.chain(optax.clip_by_global_norm(0.1), opt)
    xs_chain, lrs_chain, state = run(clipped)

    def clip(g):
        norm = optax.tree.norm(g)
        return jax.tree.map(lambda x: x * jnp.minimum(1.0, 0.1 / norm), g)

    by_hand = optax.GradientTransformationExtraArgs(
        opt.init, lambda g, s, p=None, **kw: opt.update(clip(g), s, p, **kw))
    xs_hand, lrs_hand, _ = run(by_hand)
    np.testing.assert_allclose(np.asarray(xs_chain), np.asarray(xs_hand), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(lrs_chain), np.asarray(lrs_hand), rtol=1e-5)
    assert jaxlr.current_lr(state) == lrs_chain[-1]
    # before another transform: identity changes nothing, extra args pass through the chain
    xs_first, lrs_first, _ = run(optax.chain(opt, optax.identity()))
    xs_solo, lrs_solo, _ = run(opt)
    np.testing.assert_allclose(np.asarray(xs_first), np.asarray(xs_solo), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lrs_first), np.asarray(lrs_solo), rtol=1e-6)


def test_extra_args_reach_mechanics_base_optimizer():
    """value= reaches a reduce_on_plateau base (the metric drives its LR), grad= is accepted."""
    base = jaxlr.sgd(jaxlr.reduce_on_plateau(0.1, factor=0.5, patience=0))
    opt = jaxlr.mechanize(base, num_betas=2)
    params = jax.tree.map(jnp.asarray, X0)
    state = opt.init(params)
    for metric in (1.0, 2.0, 3.0):  # worse every time: the base LR is cut
        g = jax.grad(loss)(params)
        updates, state = opt.update(g, state, params, value=metric, grad=g)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(float(jaxlr.current_lr(state[1].base_optimizer_state)), 0.025)


def test_update_without_params_names_the_fix():
    opt = jaxlr.dog()
    state = opt.init(jax.tree.map(jnp.asarray, X0))
    with pytest.raises(ValueError, match=r"jaxlr\.dog needs the parameters.*params\)"):
        opt.update(jax.tree.map(jnp.asarray, X0), state)


# --- 4. schedule-free's evaluation parameters ----------------------------------------------
def test_eval_params():
    opt = jaxlr.schedule_free_adamw(0.1, warmup_steps=2)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), X0)
    state = opt.init(params)
    for _ in range(4):
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    expected = contrib.schedule_free_eval_params(state[1], params)
    chex.assert_trees_all_close(jaxlr.eval_params(state, params), expected, rtol=1e-6)
    chex.assert_trees_all_close(jaxlr.schedule_free_eval_params(state, params), expected,
                                rtol=1e-6)
    # found anywhere in the tree: in a chain, and optax's own schedule-free
    chained = (optax.EmptyState(), state)
    chex.assert_trees_all_close(jaxlr.eval_params(chained, params), expected, rtol=1e-6)
    sf = contrib.schedule_free_sgd(0.1)
    sf_state = sf.init(params)
    _, sf_state = sf.update(jax.grad(loss)(params), sf_state, params)
    chex.assert_trees_all_close(jaxlr.eval_params(sf_state, params),
                                contrib.schedule_free_eval_params(sf_state, params), rtol=1e-6)
    # the eval point differs from the trained one; the numpy algorithm's x matches it
    assert not np.allclose(flat(expected), flat(params))
    *_, x_np = np_schedule_free(0.1, 2, 0.9, 0.999, 1e-8, 0.0, 2.0, steps=4)
    np.testing.assert_allclose(flat(jaxlr.eval_params(state, params)), x_np, rtol=1e-5)
    # another optimizer: params unchanged (the same object)
    other = jaxlr.prodigy()
    assert jaxlr.eval_params(other.init(params), params) is params
    with pytest.raises(ValueError, match="no optax.contrib.ScheduleFreeState"):
        jaxlr.schedule_free_eval_params(other.init(params), params)


def test_eval_params_of_a_stacked_state():
    """Members stacked on axis 0 (b1 per member): each member's eval params."""
    members = [run(jaxlr.schedule_free_adamw(0.1, b1=b1), steps=2)[2] for b1 in (0.5, 0.9)]
    # any params of the right shape (a different one per member): x is algebra on y and z
    params = [jax.tree.map(lambda a, i=i: jnp.asarray(a + 0.1 * i, jnp.float32), X0)
              for i in range(2)]
    stacked_params = jax.tree.map(lambda *a: jnp.stack(a), *params)
    stacked_state = jax.tree.map(lambda *a: jnp.stack(a), *members)
    out = jaxlr.eval_params(stacked_state, stacked_params)
    inside = jax.vmap(jaxlr.eval_params)(stacked_state, stacked_params)
    chex.assert_trees_all_close(out, inside, rtol=1e-6)
    for i in range(2):
        one = jax.tree.map(lambda a, i=i: a[i], (stacked_state, stacked_params))
        chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: a[i], out),
                                    contrib.schedule_free_eval_params(one[0][1], one[1]),
                                    rtol=1e-6)


# --- 5. argument checks --------------------------------------------------------------------
@pytest.mark.parametrize("build, match", [
    (lambda: jaxlr.prodigy(-1.0), r"learning_rate must be >= 0, got learning_rate=-1"),
    (lambda: jaxlr.prodigy(betas=(1.0, 0.999)), r"betas\[0\] must be < 1, got betas\[0\]=1"),
    (lambda: jaxlr.prodigy(betas=0.9), r"betas must be a pair"),
    (lambda: jaxlr.prodigy(beta3=1.5), r"beta3 must be < 1, got beta3=1.5"),
    (lambda: jaxlr.prodigy(estim_lr0=0.0), r"estim_lr0 must be > 0, got estim_lr0=0; use"),
    (lambda: jaxlr.prodigy(estim_lr_coef=-1.0), r"estim_lr_coef must be > 0"),
    (lambda: jaxlr.prodigy(jaxlr.reduce_on_plateau(1.0)), r"learning_rate of jaxlr\.prodigy"),
    (lambda: jaxlr.dadapt_adamw(eps=0.0), r"eps must be > 0, got eps=0"),
    (lambda: jaxlr.dadapt_adamw(weight_decay=-0.1), r"weight_decay must be >= 0"),
    (lambda: jaxlr.dadapt_adamw(jnp.ones(2)), r"learning_rate must be a scalar"),
    (lambda: jaxlr.dog(init_step=("guess", 1e-6)), r"init_step's kind must be one of"),
    (lambda: jaxlr.dog(init_step=("distance", 0.0)), r"init_step must be > 0, got init_step=0"),
    (lambda: jaxlr.dog(init_step=1e-6), r"init_step must be a pair"),
    (lambda: jaxlr.dog(eps=-1.0), r"eps must be >= 0"),
    (lambda: jaxlr.mechanize("adam"), r"base_optimizer must be an optax transform"),
    (lambda: jaxlr.mechanize(jaxlr.sgd(0.1), num_betas=0), r"num_betas must be >= 1"),
    (lambda: jaxlr.mechanize(jaxlr.sgd(0.1), num_betas=2.5), r"num_betas must be a whole"),
    (lambda: jaxlr.mechanize(jaxlr.sgd(0.1), s_init=0.0), r"s_init must be > 0, got s_init=0"),
    (lambda: jaxlr.cocob(alpha=0.0), r"alpha must be > 0, got alpha=0"),
    (lambda: jaxlr.cocob(float("nan")), r"learning_rate must be finite"),
    (lambda: jaxlr.schedule_free_adamw(warmup_steps=0), r"warmup_steps must be > 0"),
    (lambda: jaxlr.schedule_free_adamw(warmup_steps=2.5), r"warmup_steps must be a whole"),
    (lambda: jaxlr.schedule_free_adamw(jaxlr.constant(0.1), warmup_steps=5),
     r"warmup_steps needs a constant learning_rate"),
    (lambda: jaxlr.schedule_free_adamw(b1=0.0), r"b1 must be > 0, got b1=0"),
    (lambda: jaxlr.schedule_free_adamw(b2=1.0), r"b2 must be < 1, got b2=1"),
    (lambda: jaxlr.schedule_free_adamw(weight_lr_power=-2.0), r"weight_lr_power must be >= 0"),
])
def test_bad_concrete_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_traced_num_betas_is_refused():
    with pytest.raises(ValueError, match="num_betas sets the shape"):
        jax.jit(lambda n: jaxlr.mechanize(jaxlr.sgd(0.1), num_betas=n).init(jnp.zeros(2)))(3)


# --- 6. a sweep member of each -------------------------------------------------------------
SWEEP_X = np.asarray(_rng.standard_normal((32, 5)), np.float32)
SWEEP_Y = np.asarray(SWEEP_X @ np.array([1.0, -2.0, 0.5, 0.0, 1.5]), np.float32)
SWEEP = {
    "prodigy": lambda hp: jaxlr.prodigy(hp["lr"], estim_lr0=1e-3),
    "dadapt_adamw": lambda hp: jaxlr.dadapt_adamw(hp["lr"], estim_lr0=1e-3),
    "dog": lambda hp: jaxlr.dog(hp["lr"]),
    "mechanize": lambda hp: jaxlr.mechanize(jaxlr.sgd(hp["lr"])),
    "cocob": lambda hp: jaxlr.cocob(hp["lr"]),
    "schedule_free_adamw": lambda hp: jaxlr.schedule_free_adamw(hp["lr"], warmup_steps=5),
}


def sweep_init(key):
    del key
    return jnp.full((5,), 0.1, jnp.float32)


def sweep_loss(w, batch):
    x, y = batch
    return jnp.mean((x @ w - y) ** 2)


@pytest.mark.parametrize("name", sorted(SWEEP))
def test_runs_as_a_sweep_member(name):
    """Full batches (each a permutation of all 32 examples): the recorded LR of each member ==
    the effective LR of a hand-written loop with the member's LR."""
    steps, lrs = 12, [0.5, 1.0]
    res = jaxlr.sweep(sweep_init, sweep_loss, (SWEEP_X, SWEEP_Y), SWEEP[name],
                      jaxlr.grid(lr=lrs), steps=steps, batch_size=32, progress=False)
    assert res.lr.shape == (2, steps) and np.isfinite(res.lr).all() and not res.diverged.any()
    data = (jnp.asarray(SWEEP_X), jnp.asarray(SWEEP_Y))
    for i, lr in enumerate(lrs):
        opt = SWEEP[name]({"lr": lr})
        w = sweep_init(None)
        state, recorded = opt.init(w), []
        for _ in range(steps):
            value, g = jax.value_and_grad(sweep_loss)(w, data)
            u, state = opt.update(g, state, w, value=value)
            w = optax.apply_updates(w, u)
            recorded.append(float(jaxlr.current_lr(state)))
        np.testing.assert_allclose(res.lr[i], recorded, rtol=1e-4)


def test_a_schedule_free_member_is_evaluated_and_returned_at_its_evaluation_params():
    """A sweep member trained by Schedule-Free AdamW is evaluated at (and returns) x_t, the
    evaluation parameters, not the y_t its gradients are taken at (schedule_free#15): against a
    hand-written optax.contrib loop on full batches."""
    import optax.contrib

    x = jax.random.normal(jax.random.key(0), (32, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5])
    loss = lambda w, b: jnp.mean((b[0] @ w - b[1]) ** 2)
    res = jaxlr.sweep(lambda key: jnp.zeros(3), loss, (x, y),
                      lambda hp: jaxlr.schedule_free_adamw(hp["lr"]), jaxlr.grid(lr=[0.05]),
                      steps=15, batch_size=32, progress=False, eval_data=(x, y))
    opt = optax.contrib.schedule_free_adamw(0.05)
    w = jnp.zeros(3)
    state = opt.init(w)
    for _ in range(15):
        g = jax.grad(loss)(w, (x, y))
        updates, state = opt.update(g, state, w)
        w = optax.apply_updates(w, updates)
    x_eval = optax.contrib.schedule_free_eval_params(state, w)
    assert not np.allclose(x_eval, w, rtol=1e-3)  # the two differ: the test can tell them apart
    np.testing.assert_allclose(res.params(0), x_eval, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.eval[0, -1], loss(x_eval, (x, y)), rtol=1e-4)
