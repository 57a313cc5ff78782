"""Bad input is caught before step 0, named, with the fix (issue 14, section 3).

Each test gives ``jaxlr.sweep`` (or ``jaxlr.grid``) one mistake a user makes and checks the
error: its type, that it names the argument and the bad value, and that it says the fix; where
the mistake used to surface only after training, the test also checks that nothing was trained
(no checkpoint written, the optimizer never stepped).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlr

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 3)).astype(np.float32)
Y = (X @ np.array([1.0, -2.0, 0.5], np.float32)).astype(np.float32)
DATA = (X, Y)


def init_linear(key):
    return {"w": 0.1 * jax.random.normal(key, (3,)), "b": jnp.zeros(())}


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def sgd(hp):
    return jaxlr.sgd(hp["lr"])


def sweep(data=DATA, loss_fn=mse, optimizer=sgd, grid=None, **kw):
    kw = {"steps": 4, "batch_size": 8, "progress": False, **kw}
    grid = jaxlr.grid(lr=[0.01, 0.1]) if grid is None else grid
    return jaxlr.sweep(init_linear, loss_fn, data, optimizer, grid, **kw)


# --- 1. eval_data that does not fit the model: before step 0 ---------------------------------
@pytest.mark.parametrize("eval_data, match", [
    ((X[:, :2], Y), r"(?s)eval_data.*\[0\]: float32\[32, 2\].*\[0\]: float32\[8, 3\]"),
    ({"x": X, "y": Y}, r"(?s)eval_data.*\['x'\]: float32\[32, 3\].*\[0\]: float32\[8, 3\]"),
])
def test_eval_data_of_the_wrong_width_or_structure_fails_before_training(
        tmp_path, eval_data, match):
    ckpt = tmp_path / "ckpt"
    with pytest.raises(ValueError, match=match):
        sweep(eval_data=eval_data, eval_every=2, chunk_size=2, checkpoint=ckpt)
    assert not ckpt.exists() or not any(ckpt.iterdir())  # nothing trained, nothing written


def test_eval_data_that_fits_is_evaluated():
    res = sweep(eval_data=(X[:12], Y[:12]))
    assert res.eval.shape == (2, 1) and np.isfinite(res.eval).all()


# --- 2. non-finite values in the data ----------------------------------------------------------
def _with(a, row, col, value):
    a = a.copy()
    a[row, col] = value
    return a


@pytest.mark.parametrize("data, eval_data, match", [
    ((_with(X, 5, 1, np.inf), Y), None, r"data\[0\] holds inf .* row 5 "),
    ((X, np.where(np.arange(32) == 9, np.nan, Y)), None, r"data\[1\] holds nan .* row 9 "),
    ({"x": jnp.asarray(_with(X, 30, 2, -np.inf)), "y": Y}, None,
     r"data\['x'\] holds -inf .* row 30 "),
    (DATA, (_with(X, 3, 0, np.nan), Y), r"eval_data\[0\] holds nan .* row 3 "),
])
def test_non_finite_data_is_named_with_its_first_bad_row(data, eval_data, match):
    loss_fn_calls = []

    def loss_fn(params, batch):
        loss_fn_calls.append(1)
        return mse(params, batch)

    with pytest.raises(ValueError, match=match) as err:
        sweep(data=data, loss_fn=loss_fn, eval_data=eval_data)
    assert "whatever its LR" in str(err.value) and "np.isfinite" in str(err.value)
    assert not loss_fn_calls  # caught up front, before anything was traced


def test_integer_and_finite_data_pass_the_check():
    labels = (Y > 0).astype(np.int32)
    res = sweep(data=(X, Y, labels), loss_fn=lambda p, b: mse(p, b[:2]))
    assert np.isfinite(res.loss).all()


# --- 3. clear errors instead of deep ones ------------------------------------------------------
def test_loss_fn_returning_loss_and_logits_says_put_extras_in_a_dict():
    def loss_fn(params, batch):
        x, y = batch
        pred = x @ params["w"]
        return jnp.mean((pred - y) ** 2), pred

    with pytest.raises(ValueError, match=re.escape(
            "return (loss, {'name': value}): put extra outputs in a dict")) as err:
        sweep(loss_fn=loss_fn)
    assert f"{jnp.zeros(()).dtype.name}[8]" in str(err.value)  # names what was returned (x64: f64)


@pytest.mark.parametrize("data, where", [
    ((X.tolist(), Y.tolist()), r"data\[0\]"),
    ({"x": X, "y": Y.tolist()}, r"data\['y'\]"),
    (X.tolist(), "data"),
])
def test_data_as_python_lists_says_convert_with_np_asarray(data, where):
    with pytest.raises(ValueError, match=where + r" is a Python list.*np\.asarray"):
        sweep(data=data)


def test_a_list_of_arrays_says_use_a_tuple():
    with pytest.raises(ValueError, match=r"data is a list of arrays of different shapes "
                                         r"\[\(32, 3\), \(32,\)\].*data=\(x, y\)"):
        sweep(data=[X, Y])


def _batches(n, bs):
    """A loader without drop_last: batches of bs rows, the last one smaller."""
    return [(X[i:min(i + bs, n)], Y[i:min(i + bs, n)]) for i in range(0, n, bs)]


@pytest.mark.parametrize("chunk_size", [3, 1])
def test_a_smaller_last_batch_names_the_batch_and_drop_last(chunk_size):
    batches = _batches(20, 8)  # 8, 8, 4
    assert [len(b[0]) for b in batches] == [8, 8, 4]
    with pytest.raises(ValueError, match=r"data's batch 2 has 4 rows, the first batch 8.*"
                                         r"drop_last=True"):
        sweep(data=iter(batches), steps=3, chunk_size=chunk_size)


def test_iterable_batches_of_one_size_train():
    res = sweep(data=iter(_batches(24, 8)), steps=3)
    assert res.loss.shape == (2, 3) and np.isfinite(res.loss).all()


def test_loss_fn_with_x_and_y_arguments_says_the_expected_form():
    def loss_fn(params, x, y):
        return jnp.mean((x @ params["w"] - y) ** 2)

    with pytest.raises(ValueError, match=r"loss_fn must be loss_fn\(model, batch\).*"
                                         r"got loss_fn\(params, x, y\).*x, y = batch"):
        sweep(loss_fn=loss_fn)


# --- 4. hp: a key typo, an axis nobody reads ----------------------------------------------------
def test_hp_key_typo_lists_the_keys_there_are():
    with pytest.raises(KeyError) as err:
        sweep(optimizer=lambda hp: jaxlr.sgd(hp["learning_rate"]))
    assert str(err.value) == (
        "hp['learning_rate']: no such hyperparameter; hp has 'lr', 'seed' (the grid's axes "
        "and 'seed'): fix the name in optimizer, or add the axis to the grid")


def test_hp_typo_close_to_a_key_suggests_it():
    g = jaxlr.grid(lr=[0.1], warmup_steps=[0, 2])
    with pytest.raises(KeyError, match=r"hp\['warmup_step'\].*did you mean 'warmup_steps'"):
        sweep(grid=g, optimizer=lambda hp: jaxlr.sgd(
            jaxlr.warmup(jaxlr.constant(hp["lr"]), hp["warmup_step"])))


def test_an_axis_the_optimizer_never_reads_is_named():
    g = jaxlr.grid(lr=[0.1], warmup=[0, 2], seed=2)  # misspelt: the optimizer uses a constant
    with pytest.raises(ValueError, match=r"grid axis 'warmup' is never read by optimizer\(hp\) "
                                         r"\(it reads 'lr'\).*identical"):
        sweep(grid=g, optimizer=lambda hp: jaxlr.sgd(jaxlr.warmup(jaxlr.constant(hp["lr"]), 2)))


def test_an_underscore_label_axis_need_not_be_read():
    g = jaxlr.Grid.zip(lr=[0.1, 0.1], _tag=[0, 1])
    res = sweep(grid=g)
    np.testing.assert_array_equal(res.loss[0], res.loss[1])  # identical settings, by design


def test_hp_read_lazily_in_update_counts_as_read():
    """optax's schedule is called in update, not init: the check must trace update too."""
    g = jaxlr.grid(lr=[0.1], decay=[0.5, 1.0])

    def optimizer(hp):
        return optax.sgd(lambda count: hp["lr"] * hp["decay"] ** count)

    res = sweep(grid=g, optimizer=optimizer)
    # member 0 (decay 0.5) moved less than member 1 (decay 1.0): both members train, differently
    assert not np.allclose(res.loss[0, 1:], res.loss[1, 1:])


def test_hp_read_in_bulk_counts_as_read():
    g = jaxlr.grid(lr=[0.1], momentum=[0.0, 0.5])
    res = sweep(grid=g, optimizer=lambda hp: jaxlr.sgd(
        **{("learning_rate" if k == "lr" else k): v for k, v in hp.items() if k != "seed"}))
    assert not np.allclose(res.loss[0, 2:], res.loss[1, 2:])


# --- 5. negative learning rates -----------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: jaxlr.grid(lr=[-0.1, 0.1]),
    lambda: jaxlr.Grid.zip(lr=[0.1, -0.1], momentum=[0.0, 0.9]),
    lambda: jaxlr.Grid({"lr": np.array([0.1, -0.1], np.float32)}),
])
def test_negative_lr_in_the_grid_is_refused(make):
    with pytest.raises(ValueError, match=r"grid axis 'lr' must be >= 0 .*gradient ascent.*"
                                         r"got lr=-0\.1"):
        make()


def test_zero_lr_and_negative_values_of_other_axes_are_accepted():
    g = jaxlr.grid(lr=[0.0, 0.1], shift=[-1.0])
    assert len(g) == 2 and g[0]["lr"] == 0.0 and g[0]["shift"] == -1.0


# --- a negative LR made of traced values, before step 0 -----------------------------------------
def test_a_negative_traced_lr_at_step_0_is_refused_naming_the_member():
    """The grid's values are positive; the optimizer makes the LR negative from them (a sign
    slip, a schedule starting at a negative axis value): refused before step 0."""
    calls = {"loss": 0}

    def counting(params, batch):
        calls["loss"] += 1
        return jnp.mean((batch[0] @ params["w"] - batch[1]) ** 2)

    init = lambda key: {"w": jnp.zeros(4, jnp.float32)}  # noqa: E731
    with pytest.raises(ValueError, match=r"negative learning rate at step 0 for member 1 "
                                         r"\{'lr': 0\.1\} -> -0\.1"):
        jaxlr.sweep(init, counting, DATA_NEG, lambda hp: jaxlr.sgd(0.2 - 3 * hp["lr"]),
                    jaxlr.grid(lr=[0.05, 0.1]), steps=3, batch_size=8, progress=False)
    with pytest.raises(ValueError, match=r"member 0 \{'start': -0\.5\} -> -0\.5"):
        jaxlr.sweep(init, counting, DATA_NEG, lambda hp: jaxlr.sgd(jaxlr.linear(
            hp["start"], 0.1, 10)), jaxlr.grid(start=[-0.5, 0.5]), steps=3, batch_size=8,
            progress=False)
    # positive LRs, and an optax optimizer (no jaxlr LR state): accepted
    for opt in (lambda hp: jaxlr.sgd(0.2 - hp["lr"]), lambda hp: optax.sgd(-hp["lr"])):
        jaxlr.sweep(init, counting, DATA_NEG, opt, jaxlr.grid(lr=[0.05, 0.1]), steps=3,
                    batch_size=8, progress=False)


DATA_NEG = (np.ones((16, 4), np.float32), np.ones(16, np.float32))


def test_the_step_0_lr_program_runs_only_when_an_optimizer_keeps_a_jaxlr_lr(compiles):
    """An optax optimizer keeps no jaxlr LR: nothing to check, so no step-0 LR program is
    compiled (nor run); a jaxlr optimizer's is. In a categorical grid whose first category is
    optax's, a negative LR of the second category is still refused, naming its member."""
    init = lambda key: {"w": jnp.zeros(4, jnp.float32)}  # noqa: E731
    jaxlr.clear_caches()

    def run(opt, g=None):
        g = jaxlr.grid(lr=[0.05, 0.1]) if g is None else g
        return jaxlr.sweep(init, mse4, DATA_NEG, opt, g, steps=3, batch_size=8, progress=False)

    run(lambda hp: optax.sgd(hp["lr"]))
    assert compiles["jit(initial_lr)"] == 0 and compiles["jit(run_whole)"] == 1
    run(lambda hp: jaxlr.sgd(hp["lr"]))
    assert compiles["jit(initial_lr)"] == 1
    opts = {"optax": lambda lr: optax.sgd(lr), "jaxlr": lambda lr: jaxlr.sgd(-lr)}
    with pytest.raises(ValueError, match=r"negative learning rate at step 0 for member 1 "
                                         r"\{'optimizer': 'jaxlr', 'lr': 0\.1\} -> -0\.1"):
        run(lambda hp: opts[hp["optimizer"]](hp["lr"]),
            jaxlr.grid(optimizer=["optax", "jaxlr"], lr=[0.1]))


def mse4(params, batch):
    return jnp.mean((batch[0] @ params["w"] - batch[1]) ** 2)
