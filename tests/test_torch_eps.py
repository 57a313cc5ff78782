"""convention="torch" with a LARGE eps (0.1) against torch.optim with the same eps.

With torch's default eps (1e-8 / 1e-10) the place of eps hardly shows in the numbers; with
eps = 0.1 and gradients of ~0.1 it is visible: torch's Adagrad, RMSprop and Adam all add eps
OUTSIDE the square root (``g / (sqrt(s) + eps)``; torch docs, pseudo-code of
https://pytorch.org/docs/stable/generated/torch.optim.Adagrad.html, .../torch.optim.RMSprop.html,
.../torch.optim.Adam.html), where optax's Adagrad and RMSProp put it inside
(``g / sqrt(s + eps)``). Each case is checked against real torch (float64) and shown to be
far from the eps-inside variant, so a test passing cannot be a test that cannot see eps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlr

torch = pytest.importorskip("torch")

EPS = 0.1
STEPS = 60
X = jax.random.normal(jax.random.key(0), (64, 3), jnp.float32)
Y = jnp.tanh(X @ jnp.array([[1.0], [-2.0], [0.5]], jnp.float32) + 0.3)
P0 = np.array([0.1, -0.2, 0.3, 0.0])  # w (3) then b (1)


def loss(p):
    return jnp.mean((jnp.tanh(X @ p[:3, None] + p[3:]) - Y) ** 2)


def jax_trajectory(opt):
    """Parameters after each update, float32 (one compiled scan)."""

    @jax.jit
    def run(p):
        def body(carry, _):
            p, s = carry
            u, s = opt.update(jax.grad(loss)(p), s, p)
            p = optax.apply_updates(p, u)
            return (p, s), p

        return jax.lax.scan(body, (p, opt.init(p)), None, length=STEPS)[1]

    return np.asarray(run(jnp.asarray(P0, jnp.float32)), np.float64)


def torch_trajectory(cls, **hp):
    """The same problem with torch.optim in float64."""
    p = torch.nn.Parameter(torch.tensor(P0, dtype=torch.float64))
    opt = cls([p], **hp)
    xs = torch.tensor(np.asarray(X), dtype=torch.float64)
    ys = torch.tensor(np.asarray(Y), dtype=torch.float64)
    out = []
    for _ in range(STEPS):
        opt.zero_grad()
        torch.mean((torch.tanh(xs @ p[:3].reshape(3, 1) + p[3:]) - ys) ** 2).backward()
        opt.step()
        out.append(p.detach().numpy().copy())
    return np.stack(out)


# name: (jaxlr torch-convention optimizer, torch.optim class and kwargs, the eps-inside variant)
CASES = {
    "adagrad": (lambda: jaxlr.adagrad(0.1, eps=EPS, convention="torch"),
                (torch.optim.Adagrad, dict(lr=0.1, eps=EPS)),
                # torch's Adagrad with eps inside the root: s_0 = 0, g / sqrt(s + eps)
                lambda: optax.chain(optax.scale_by_rss(0.0, EPS), optax.scale(-0.1))),
    "rmsprop": (lambda: jaxlr.rmsprop(1e-2, eps=EPS, convention="torch"),
                (torch.optim.RMSprop, dict(lr=1e-2, eps=EPS)),
                lambda: optax.rmsprop(1e-2, decay=0.99, eps=EPS, eps_in_sqrt=True)),
    "rmsprop_momentum": (
        lambda: jaxlr.rmsprop(3e-3, eps=EPS, momentum=0.9, convention="torch"),
        (torch.optim.RMSprop, dict(lr=3e-3, eps=EPS, momentum=0.9)),
        lambda: optax.rmsprop(3e-3, decay=0.99, eps=EPS, eps_in_sqrt=True, momentum=0.9)),
    "rmsprop_centered": (
        lambda: jaxlr.rmsprop(3e-3, eps=EPS, centered=True, convention="torch"),
        (torch.optim.RMSprop, dict(lr=3e-3, eps=EPS, centered=True)),
        lambda: optax.rmsprop(3e-3, decay=0.99, eps=EPS, eps_in_sqrt=True, centered=True)),
    "adam": (lambda: jaxlr.adam(3e-2, eps=EPS, convention="torch"),
             (torch.optim.Adam, dict(lr=3e-2, eps=EPS)),
             # eps inside the root: sqrt(v_hat + eps)
             lambda: optax.adam(3e-2, eps=0.0, eps_root=EPS)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_convention_with_large_eps_equals_torch(case):
    ours, (cls, hp), inside = CASES[case]
    torch.set_default_dtype(torch.float64)
    try:
        ref = torch_trajectory(cls, **hp)
    finally:
        torch.set_default_dtype(torch.float32)
    got = jax_trajectory(ours())
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert np.abs(ref[-1] - P0).max() > 1e-2  # the parameters moved
    # eps is visible: its other place (inside the root) is 10x the tolerance away or more
    other = jax_trajectory(inside())
    assert np.abs(other - ref).max() > 10 * (1e-5 + 1e-4 * np.abs(ref).max())
