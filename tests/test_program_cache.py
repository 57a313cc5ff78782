"""Every sweep call sees the values its functions read NOW (issue 14 §1).

Research code changes a function between two calls in many ways: a module global, a closure
cell, a default argument, an attribute of a closed-over object, a module's attribute, a cell
re-run with the same source, another ``init`` shape, other data. Each case below sweeps, makes
one such change, sweeps again, and compares the second result with an independent reference:
a hand-written full-batch optax loop with the new value. The two references differ, so a stale
program (the first call's) fails the test.

The only program kept across calls is the batch-index program, which depends on nothing but
static integers (chunk length, example count, batch size) and the device set: the last tests
prove a cached one gives what a fresh computation gives.
"""

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlr
from jaxlr._sweep import api, compiled, placement
from jaxlr._sweep.data import batch_indices

X = jax.random.normal(jax.random.key(0), (32, 4))
Y = X @ jnp.array([1.0, -2.0, 0.5, 0.0])
DATA = (X, Y)
STEPS = 8
LR = 0.05


def init_linear(key):
    return {"w": 0.1 * jax.random.normal(key, (4,)), "b": jnp.zeros(())}


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def reference(momentum, init=init_linear, loss=mse, data=DATA, steps=STEPS):
    """Full-batch SGD with momentum, written with optax (the seed's shuffle only permutes the
    examples of a full batch, so the loss curve is the same)."""
    params = init(jax.random.key(0))
    opt = optax.sgd(LR, momentum=momentum)
    state = opt.init(params)
    losses = []
    for _ in range(steps):
        value, grads = jax.value_and_grad(loss)(params, data)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        losses.append(value)
    return np.asarray(losses)


def sweep(optimizer, init=init_linear, loss=mse, data=DATA):
    res = jaxlr.sweep(init, loss, data, optimizer, jaxlr.grid(lr=[LR]), steps=STEPS,
                      batch_size=len(jax.tree.leaves(data)[0]), progress=False)
    return res.loss[0]


def check(first, second, before=0.0, after=0.9):
    ref_before, ref_after = reference(before), reference(after)
    assert not np.allclose(ref_before, ref_after, rtol=1e-3)  # the change matters
    np.testing.assert_allclose(first, ref_before, rtol=2e-5)
    np.testing.assert_allclose(second, ref_after, rtol=2e-5)


# --- the ways a function changes between calls -------------------------------------------------
MOMENTUM = 0.0


def opt_reading_a_global(hp):
    return jaxlr.sgd(hp["lr"], momentum=MOMENTUM)


def test_module_global():
    global MOMENTUM
    try:
        MOMENTUM = 0.0
        first = sweep(opt_reading_a_global)
        MOMENTUM = 0.9
        check(first, sweep(opt_reading_a_global))
    finally:
        MOMENTUM = 0.0


def test_closure_cell():
    momentum = 0.0

    def opt(hp):
        return jaxlr.sgd(hp["lr"], momentum=momentum)

    first = sweep(opt)
    momentum = 0.9
    check(first, sweep(opt))


def test_closure_cell_of_a_loop_lambda():
    """The issue's loop: a new lambda per iteration, the same code."""
    out = [sweep(lambda hp: jaxlr.sgd(hp["lr"], momentum=m)) for m in (0.0, 0.9)]
    check(*out)


def test_default_argument():
    def opt(hp, momentum=0.0):
        return jaxlr.sgd(hp["lr"], momentum=momentum)

    first = sweep(opt)
    opt.__defaults__ = (0.9,)
    check(first, sweep(opt))


def test_attribute_of_a_closed_over_object():
    cfg = types.SimpleNamespace(momentum=0.0)

    def opt(hp):
        return jaxlr.sgd(hp["lr"], momentum=cfg.momentum)

    first = sweep(opt)
    cfg.momentum = 0.9
    check(first, sweep(opt))


def test_attribute_of_a_module():
    mod = types.ModuleType("jaxlr_test_settings")
    mod.momentum = 0.0
    sys.modules[mod.__name__] = mod
    try:
        ns = {"jaxlr": jaxlr, "settings": mod}
        exec("def opt(hp):\n    return jaxlr.sgd(hp['lr'], momentum=settings.momentum)\n", ns)
        first = sweep(ns["opt"])
        mod.momentum = 0.9
        check(first, sweep(ns["opt"]))
    finally:
        del sys.modules[mod.__name__]


def test_notebook_cell_rerun_with_the_same_source():
    """A notebook cell re-run: the same source compiled again in the same globals (an equal
    code object), after another cell changed the global it reads."""
    cell = "def opt(hp):\n    return jaxlr.sgd(hp['lr'], momentum=MOMENTUM)\n"
    ns = {"jaxlr": jaxlr, "MOMENTUM": 0.0}
    exec(cell, ns)
    first = sweep(ns["opt"])
    ns["MOMENTUM"] = 0.9
    exec(cell, ns)
    check(first, sweep(ns["opt"]))


def test_weight_decay_global_as_in_the_report():
    """The report's case: adamw's weight decay read from a global; |w| after training equals
    a hand-written optax.adamw loop for each value."""
    ns = {"jaxlr": jaxlr, "WD": 0.0}
    cell = "def opt(hp):\n    return jaxlr.adamw(hp['lr'], weight_decay=WD)\n"
    norms = []
    for wd in (0.0, 50.0):
        ns["WD"] = wd
        exec(cell, ns)
        res = jaxlr.sweep(init_linear, mse, DATA, ns["opt"], jaxlr.grid(lr=[0.01]), steps=STEPS,
                          batch_size=32, progress=False)
        params = init_linear(jax.random.key(0))
        opt = optax.adamw(0.01, weight_decay=wd)
        state = opt.init(params)
        for _ in range(STEPS):
            grads = jax.grad(mse)(params, DATA)
            updates, state = opt.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(res.params(0)["w"], params["w"], rtol=1e-5, atol=1e-7)
        norms.append(float(jnp.linalg.norm(params["w"])))
    assert abs(norms[0] - norms[1]) > 1e-3


def test_init_output_shape():
    """The issue's width loop, at module level (``width`` a global): the second call trains
    the 64-wide model, not the first."""
    ns = {"jax": jax, "jnp": jnp, "jaxlr": jaxlr, "DATA": DATA, "STEPS": STEPS, "out": {}}
    exec(
        "def loss(p, batch):\n"
        "    x, y = batch\n"
        "    return jnp.mean((jnp.tanh(x @ p['w']) @ p['v'] - y) ** 2)\n"
        "for width in (4, 64):\n"
        "    r = jaxlr.sweep(lambda k: {'w': 0.3 * jax.random.normal(k, (4, width)),\n"
        "                               'v': jnp.ones((width,))},\n"
        "                    loss, DATA, lambda hp: jaxlr.adam(hp['lr']), jaxlr.grid(lr=[0.01]),\n"
        "                    steps=STEPS, batch_size=32, progress=False)\n"
        "    out[width] = r\n", ns)
    for width, res in ns["out"].items():
        assert res.stacked()[0]["w"].shape == (1, 4, width)
        assert res.params(0)["v"].shape == (width,)


def test_data_shape_dtype_and_values():
    """Other data with the same functions: more examples, another dtype, other values."""
    def opt(hp):
        return jaxlr.sgd(hp["lr"], momentum=0.9)

    for data in (DATA, (X[:16], Y[:16]), (X.astype(jnp.bfloat16), Y), (2 * X, Y)):
        got = sweep(opt, data=data)
        np.testing.assert_allclose(got, reference(0.9, data=data), rtol=2e-2 if
                                   data[0].dtype == jnp.bfloat16 else 2e-5)


# --- the one program kept across calls ---------------------------------------------------------
def test_batch_index_program_is_cached_on_static_values_only():
    """The batch-index program depends only on (k, n, batch_size) and the devices: a cached one
    gives exactly what batch_indices computes afresh, for other seeds and chunk starts."""
    place = placement.Placement(jax.local_devices()[:1])
    first = compiled.batch_table(5, 32, 8, place)
    assert compiled.batch_table(5, 32, 8, place) is first  # cached
    assert compiled.batch_table(5, 33, 8, place) is not first  # another n: another program
    compiled.clear_caches()
    for seeds, t0 in (([0, 1], 0), ([3], 5), ([7, 2, 9], 35), ([0, 1], 5), ([0, 2], 0),
                      ([0, 1], 0)):
        host = np.asarray(seeds, np.int32)
        got = first(jnp.asarray(host), np.int32(t0), host)
        want = jax.jit(batch_indices, static_argnums=(2, 3, 4))(
            jnp.asarray(host), jnp.int32(t0), 5, 32, 8)
        np.testing.assert_array_equal(got, want)


def test_batch_index_tables_are_kept_by_seed_values_and_start_within_a_budget(monkeypatch):
    """A repeated call with the same seeds' values and first step gets the table kept from the
    earlier call (its program does not run again); other seeds, another start or another
    program compute their own; the least recently used table goes when the kept ones would
    exceed the budget, and a table over the budget is never kept."""
    place = placement.Placement(jax.local_devices()[:1])
    compiled.clear_caches()
    table = compiled.batch_table(5, 32, 8, place)  # each table: 2 x 5 x 8 int32 = 320 bytes
    runs = []
    jitted = table.jitted
    monkeypatch.setattr(table, "jitted", lambda s, t: runs.append(1) or jitted(s, t))
    a, b = np.asarray([0, 1], np.int32), np.asarray([0, 2], np.int32)
    first = table(jnp.asarray(a), np.int32(0), a)
    assert table(jnp.asarray(a), np.int32(0), a.copy()) is first and len(runs) == 1
    table(jnp.asarray(b), np.int32(0), b)
    table(jnp.asarray(a), np.int32(5), a)
    assert len(runs) == 3
    other = compiled.batch_table(5, 33, 8, place)  # another n: its own table
    assert not np.array_equal(other(jnp.asarray(a), np.int32(0), a), first)
    monkeypatch.setattr(compiled, "KEEP_TABLE_BYTES", 3 * 320)  # room for three
    table(jnp.asarray(a), np.int32(0), a)  # kept, now the most recently used
    table(jnp.asarray(a), np.int32(10), a)  # a fourth: (b, 0) goes, the least recently used
    assert len(runs) == 4
    table(jnp.asarray(a), np.int32(0), a)
    assert len(runs) == 4
    table(jnp.asarray(b), np.int32(0), b)
    assert len(runs) == 5
    monkeypatch.setattr(compiled, "KEEP_TABLE_BYTES", 319)  # smaller than one table
    table(jnp.asarray(b), np.int32(15), b)
    table(jnp.asarray(b), np.int32(15), b)
    assert len(runs) == 7


class Counting:
    """A jitted function whose calls are counted (``eval_shape`` passes through)."""

    def __init__(self, jitted, runs):
        self.jitted, self.runs, self.eval_shape = jitted, runs, jitted.eval_shape

    def __call__(self, *args):
        self.runs.append(1)
        return self.jitted(*args)


def test_a_repeated_sweep_reuses_its_batch_table_and_trains_the_same(compiles):
    """The second of two identical sweeps runs neither a compile nor the batch-index program,
    and its curves are bit-identical to the first's; with other seeds it computes the table
    of those seeds (a sweep with those seeds alone, after clearing every cache, agrees)."""
    jaxlr.clear_caches()
    g = jaxlr.grid(lr=[LR], seed=[0, 1])
    first = jaxlr.sweep(init_linear, mse, DATA, lambda hp: jaxlr.sgd(hp["lr"]), g,
                        steps=STEPS, batch_size=8, progress=False)
    compiles.clear()
    runs = []
    table = compiled.batch_table(STEPS, 32, 8, placement.Placement(None))  # the sweep's
    jitted = table.jitted
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(table, "jitted", Counting(jitted, runs))
        again = jaxlr.sweep(init_linear, mse, DATA, lambda hp: jaxlr.sgd(hp["lr"]), g,
                            steps=STEPS, batch_size=8, progress=False)
    assert dict(compiles) == {} and runs == []
    assert len(compiled._TABLES) == 1
    np.testing.assert_array_equal(again.loss, first.loss)
    other = jaxlr.grid(lr=[LR], seed=[2, 3])
    got = jaxlr.sweep(init_linear, mse, DATA, lambda hp: jaxlr.sgd(hp["lr"]), other,
                      steps=STEPS, batch_size=8, progress=False)
    assert len(compiled._TABLES) == 2
    jaxlr.clear_caches()
    assert len(compiled._TABLES) == 0
    fresh = jaxlr.sweep(init_linear, mse, DATA, lambda hp: jaxlr.sgd(hp["lr"]), other,
                        steps=STEPS, batch_size=8, progress=False)
    np.testing.assert_array_equal(got.loss, fresh.loss)
    assert not np.array_equal(got.loss, first.loss)


def test_sweeps_share_the_batch_index_program(monkeypatch):
    """Two sweeps of different functions with the same (k, n, batch_size) build the batch-index
    program once; the training programs are built for each call."""
    built = []
    original = api.build
    monkeypatch.setattr(api, "build", lambda *a, **k: built.append(1) or original(*a, **k))
    compiled._batch_table.cache_clear()
    sweep(lambda hp: jaxlr.sgd(hp["lr"]))
    sweep(lambda hp: jaxlr.sgd(hp["lr"]))
    assert len(built) == 2
    assert compiled._batch_table.cache_info().misses == 1
    assert compiled._batch_table.cache_info().hits == 1


# --- executables: reused only for the same lowered program ------------------------------------
def test_the_same_program_reuses_its_executable_and_another_compiles(compiles):
    """A call whose functions trace to the program of an earlier call runs that call's XLA
    executable (no compile); a changed value the optimizer reads makes another program, which
    compiles, and trains with the new value (against the hand-written reference)."""
    jaxlr.clear_caches()  # earlier tests compiled this very program
    ns = {"jaxlr": jaxlr, "MOMENTUM": 0.0}
    cell = "def opt(hp):\n    return jaxlr.sgd(hp['lr'], momentum=MOMENTUM)\n"
    exec(cell, ns)
    first = sweep(ns["opt"])
    assert compiles["jit(run_whole)"] == 1
    exec(cell, ns)  # the cell re-run, nothing changed: the same program
    np.testing.assert_array_equal(sweep(ns["opt"]), first)
    assert compiles["jit(run_whole)"] == 1
    ns["MOMENTUM"] = 0.9
    exec(cell, ns)
    check(first, sweep(ns["opt"]))
    assert compiles["jit(run_whole)"] == 2


def test_a_closed_over_array_is_part_of_the_program(compiles):
    """An array the loss closes over (not data) is embedded in the program: changing its
    values gives another program (a fresh compile) that trains with the new values."""
    jaxlr.clear_caches()
    weights = np.ones(32, np.float32)

    def weighted(params, batch):
        x, y = batch
        return jnp.mean(jnp.asarray(weights) * (x @ params["w"] + params["b"] - y) ** 2)

    for n, w in enumerate((1.0, 3.0), start=1):
        weights[:] = w
        got = sweep(lambda hp: jaxlr.sgd(hp["lr"], momentum=0.0), loss=weighted)
        np.testing.assert_allclose(
            got, reference(0.0, loss=lambda p, b: w * mse(p, b)), rtol=2e-5)
        assert compiles["jit(run_whole)"] == n


@pytest.mark.parametrize("kw", [
    dict(chunk_size=5),
    dict(chunk_size=5, eval_data=DATA, eval_every=5),
    dict(prune=jaxlr.successive_halving(5, 2), grid=jaxlr.grid(lr=[LR, 0.01, 0.001, 1e-4])),
    dict(policy=jaxlr.population_based(5, fraction=0.5),
         grid=jaxlr.grid(lr=[LR, 0.01, 0.001, 1e-4])),
], ids=["chunks", "eval", "halving", "pbt"])
def test_a_repeated_chunked_sweep_compiles_nothing(compiles, kw, tmp_path):
    """Every program of a chunked sweep (init, chunk, eval, the chunks compiled ahead for
    halving's smaller batches, the row moves) goes through the executable cache."""
    jaxlr.clear_caches()
    g = kw.pop("grid", jaxlr.grid(lr=[LR]))
    args = (init_linear, mse, DATA, lambda hp: jaxlr.sgd(hp["lr"]), g)
    first = jaxlr.sweep(*args, steps=STEPS, batch_size=8, progress=False, **kw)
    assert compiles["jit(run_chunk)"] >= 1
    compiles.clear()
    again = jaxlr.sweep(*args, steps=STEPS, batch_size=8, progress=False, **kw)
    assert dict(compiles) == {}
    np.testing.assert_array_equal(again.loss, first.loss)


def test_the_program_key_sees_every_constant_and_no_source_location():
    """``program_key`` (the executable cache's key: MLIR bytecode without debug info) differs
    when one value of a large embedded constant differs (200,000 floats: far past any text
    elision limit), or a dtype or shape does; it is the same for one function defined at
    another source line (the locations are stripped from a copy: the lowered program keeps
    them)."""
    big = np.arange(200_000, dtype=np.float32)
    other = big.copy()
    other[123_457] += 1.0

    def closing_over(c):
        return jax.jit(lambda x: x * jnp.asarray(c)).lower(jnp.ones(200_000, jnp.float32))

    key = compiled.program_key
    assert key(closing_over(big)) == key(closing_over(big.copy()))
    assert key(closing_over(big)) != key(closing_over(other))
    f = jax.jit(lambda x: jnp.sin(x) * 2.0)
    assert key(f.lower(jnp.ones(3, jnp.float32))) != key(f.lower(jnp.ones(4, jnp.float32)))
    assert key(f.lower(jnp.ones(3, jnp.float32))) != key(f.lower(jnp.ones(3, jnp.int32)))
    src = "def g(x):\n    return jnp.sin(x) * 2.0\n"
    lowered = []
    for blank_lines in (0, 7):
        ns = {"jnp": jnp}
        exec(compile("\n" * blank_lines + src, "cell.py", "exec"), ns)
        lowered.append(jax.jit(ns["g"]).lower(jnp.ones(3, jnp.float32)))
    assert key(lowered[0]) == key(lowered[1])
    with_locations = [low.as_text(debug_info=True) for low in lowered]
    assert '"cell.py":2' in with_locations[0] and '"cell.py":9' in with_locations[1]
