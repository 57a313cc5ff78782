"""Shared pytest set-up for jaxlr's tests."""

from __future__ import annotations

import jax
import pytest


def pytest_report_header(config):
    """Show the versions and the JAX backend the tests run against."""
    import flax
    import optax

    devices = ", ".join(str(d) for d in jax.devices())
    return [
        f"jax {jax.__version__}, optax {optax.__version__}, flax {flax.__version__}",
        f"jax backend: {jax.default_backend()} ({devices})",
    ]


@pytest.fixture
def strict_promotion():
    """Run the test with ``jax_numpy_dtype_promotion="strict"``, then restore the old setting.

    Use it where it helps: schedules are pure float32 maths, so strict promotion catches an
    accidental float64/int mix-up or a weakly-typed constant that changes a result's dtype.
    optax's own moments are not strict-clean (``float32 ** int32`` in its bias correction), so
    the optimizer tests do not use it.
    """
    previous = jax.config.jax_numpy_dtype_promotion
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    try:
        yield
    finally:
        jax.config.update("jax_numpy_dtype_promotion", previous)


@pytest.fixture
def built(monkeypatch):
    """The compiled functions each sweep call of the test built (a spy on ``build``)."""
    out = []
    from jaxlr._sweep import api

    original = api.build

    def spy(*args, **kwargs):
        out.append(original(*args, **kwargs))
        return out[-1]

    monkeypatch.setattr(api, "build", spy)
    return out


@pytest.fixture
def compiles():
    """XLA compiles during the test, by program name (``"jit(run_chunk)"``, ...): a
    ``jax.monitoring`` listener on the backend-compile event."""
    import collections

    from jax import monitoring

    counts: collections.Counter = collections.Counter()

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            counts[kwargs.get("fun_name")] += 1

    monitoring.register_event_duration_secs_listener(listen)
    try:
        yield counts
    finally:
        monitoring.unregister_event_duration_listener(listen)
