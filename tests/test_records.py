"""Run records: save/load round trip, summary, digests, run directories, finder records."""

import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlr
from jaxlr import _records
from jaxlr._records import load

X = jax.random.normal(jax.random.key(0), (96, 4))
Y = X @ jnp.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * jax.random.normal(jax.random.key(1), (96,))
JAXLR_CONFIG = {"command": "sweep", "jaxlr_version": jaxlr.__version__, "settings": {}}


def init(key):
    return {"w": 0.1 * jax.random.normal(key, (4,)), "b": jnp.zeros(())}


def loss_fn(params, batch):
    x, y = batch
    err = x @ params["w"] + params["b"] - y
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


@pytest.fixture(scope="module")
def result():
    # lr 3.0 diverges; 30 steps (the diagnosis needs >= 20)
    return jaxlr.sweep(init, loss_fn, (X, Y), lambda hp: jaxlr.sgd(hp["lr"]),
                       jaxlr.grid(lr=[0.003, 0.03, 0.3, 3.0], seed=2), steps=30, batch_size=16,
                       eval_data=(X, Y), eval_every=10, progress=False)


def assert_same_result(a, b):
    for key in ("loss", "lr", "eval", "eval_steps", "diverged", "diverged_at"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert sorted(a.eval_aux) == sorted(b.eval_aux)
    for k in a.eval_aux:
        np.testing.assert_array_equal(a.eval_aux[k], b.eval_aux[k], err_msg=k)
    assert list(a.hparams) == list(b.hparams)
    for k in a.hparams:
        np.testing.assert_array_equal(a.hparams[k], b.hparams[k])
        assert a.hparams[k].dtype == b.hparams[k].dtype


def test_save_load_round_trip(result, tmp_path):
    summary = result.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"results.npz", "summary.json", "sweep.png"}
    back = load(tmp_path)
    assert isinstance(back, jaxlr.SweepResult)
    assert_same_result(result, back)
    assert back.grid[5] == result.grid[5]
    assert back.table() == result.table()
    assert summary == json.loads((tmp_path / "summary.json").read_text())


def test_loaded_result_has_the_same_best_and_diagnosis(result, tmp_path):
    result.save(tmp_path)
    back = load(tmp_path)
    a, b = result.best(over="seed"), back.best(over="seed")
    assert (a.index, a.hparams, a.value, a.std) == (b.index, b.hparams, b.value, b.std)
    assert b.params is None  # not stored, and this run has no checkpoint to restore from
    assert [d.label for d in back.diagnose()] == [d.label for d in result.diagnose()]
    assert _records.summarize(back) == _records.summarize(result)


def test_params_of_a_loaded_result_is_a_clear_error(result, tmp_path):
    result.save(tmp_path)
    with pytest.raises(ValueError, match="trained params are not stored in results.npz"):
        load(tmp_path).params(0)
    with pytest.raises(ValueError, match="trained params are not stored in results.npz"):
        load(tmp_path).stacked()
    with pytest.raises(ValueError, match="member index"):
        load(tmp_path).params(99)


def test_summary_rows_and_recommendation(result):
    s = _records.summarize(result)
    assert s["members"] == 8 and s["axes"] == ["lr"] and s["seeds"] == [0, 1]
    assert s["metric_names"] == ["eval loss", "mae"]
    assert [r["hparams"]["lr"] for r in s["rows"]] == [0.003, 0.03, 0.3, 3.0]
    last = s["rows"][-1]
    assert last["diverged"] == 2 and last["metrics"]["eval loss"]["mean"] is None
    assert last["diagnosis"] == "diverged"
    best = result.best(by="eval", over="seed")
    assert s["recommended"]["hparams"] == best.hparams
    assert s["recommended"]["value"] == pytest.approx(best.value)
    idx = np.asarray(s["rows"][1]["members"])
    ev = result.eval[idx, -1]
    assert s["rows"][1]["metrics"]["eval loss"]["mean"] == pytest.approx(float(ev.mean()))
    assert s["rows"][1]["metrics"]["eval loss"]["std"] == pytest.approx(float(ev.std()))
    assert sum(s["label_counts"].values()) == 8
    table = _records.format_table(s)
    lines = table.splitlines()
    assert len(lines) == 2 + 4 and "diagnosis" in lines[0]
    assert sum(line.startswith("*") for line in lines) == 1
    assert "recommended: lr=" in _records.format_recommendation(s)


def test_digest_is_equal_for_equal_arrays_only(result):
    a = _records.result_arrays(result)
    b = {k: v.copy() for k, v in a.items()}
    assert _records.digest(a) == _records.digest(b)
    b["loss"][0, 0] = np.nextafter(b["loss"][0, 0], np.float32(np.inf))
    assert _records.digest(a) != _records.digest(b)


def test_json_is_strict(tmp_path):
    _records.write_json(tmp_path / "x.json", {"a": np.float32(np.nan), "b": np.arange(2),
                                              "c": [np.inf, 1.5]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [0, 1],
                                                            "c": [None, 1.5]}


def test_without_eval_the_table_uses_the_training_loss(tmp_path):
    res = jaxlr.sweep(init, loss_fn, (X, Y), lambda hp: jaxlr.sgd(hp["lr"]),
                      jaxlr.grid(lr=[0.01, 0.1]), steps=25, batch_size=16, progress=False)
    s = res.save(tmp_path)
    assert s["metric_names"] == ["final loss"] and s["by"] == "loss"
    back = load(tmp_path)
    assert back.eval is None and back.eval_aux == {}
    np.testing.assert_array_equal(back.loss, res.loss)


def test_load_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no jaxlr run"):
        load(tmp_path)
    _records.write_json(tmp_path / "config.json", JAXLR_CONFIG)
    with pytest.raises(FileNotFoundError, match="jaxlr resume"):
        load(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load(tmp_path / "nope")


def test_make_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _records.make_run_dir(None, "sweep")
    assert a.parent.name == "runs" and a.name.endswith("-sweep") and a.is_dir()
    _records.write_json(a / "config.json", JAXLR_CONFIG)
    with pytest.raises(ValueError, match="already holds a jaxlr sweep run"):
        _records.make_run_dir(a, "sweep")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="existing file"):
        _records.make_run_dir(tmp_path / "file", "sweep")
    with pytest.raises(ValueError, match="cannot write"):
        _records.make_run_dir(tmp_path / "file" / "sub", "sweep")


def test_make_run_dir_in_a_read_only_directory(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write into a read-only (0o500) directory: as root the refusal "
                    "cannot happen, so it cannot be tested")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="cannot write"):
        _records.make_run_dir(ro / "run", "sweep")


def test_environment_names_versions_and_devices():
    env = _records.environment()
    for dist in ("jaxlr", "jax", "jaxlib", "optax", "flax", "numpy"):
        assert env["versions"][dist]
    assert env["backend"] == jax.default_backend()
    assert env["device_count"] == len(jax.devices()) == len(env["devices"])
    assert env["cpu_count"] >= 1 and "XLA_FLAGS" in env["env"] and env["python"]


def test_finder_round_trip(tmp_path):
    h = jnp.logspace(-1, 1, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = jaxlr.find_lr(lambda key: jnp.ones(8), lambda w, b: 0.5 * jnp.sum(h * w**2),
                            (jnp.zeros((4, 1)),), lambda lr: jaxlr.sgd(lr), batch_size=4,
                            seeds=2)
    summary = _records.save_finder(res, tmp_path)
    assert (tmp_path / "finder.npz").is_file() and (tmp_path / "finder.png").is_file()
    back = load(tmp_path)
    assert isinstance(back, jaxlr.FinderResult)
    assert back.suggestions == res.suggestions and back.suggestion == res.suggestion
    np.testing.assert_array_equal(back.diverged_at, res.diverged_at)
    np.testing.assert_array_equal(back.smoothed, res.smoothed)
    assert summary["suggestion"] == pytest.approx(res.suggestion)
    assert "suggested LR" in _records.format_finder(summary)


# --------------------------------------------------------------------------- verification


def _rewrite_npz(path, change):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    np.savez(path, **arrays)


def _bump_first(arrays, key):
    a = arrays[key].copy()
    a.flat[0] = np.nextafter(a.flat[0], np.inf)
    arrays[key] = a


def test_load_verifies_results_against_the_summary_digest(result, tmp_path):
    result.save(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    with np.load(tmp_path / "results.npz") as z:  # the digest is of the arrays as written
        assert _records.digest({k: z[k] for k in z.files}) == summary["arrays_sha256"]
    _rewrite_npz(tmp_path / "results.npz", lambda a: _bump_first(a, "loss"))  # one ulp
    with pytest.raises(ValueError, match="does not match the arrays_sha256") as e:
        load(tmp_path)
    assert str(tmp_path / "results.npz") in str(e.value)


def test_load_verifies_finder_arrays_against_the_summary_digest(tmp_path):
    h = jnp.logspace(-1, 1, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = jaxlr.find_lr(lambda key: jnp.ones(8), lambda w, b: 0.5 * jnp.sum(h * w**2),
                            (jnp.zeros((4, 1)),), lambda lr: jaxlr.sgd(lr), batch_size=4,
                            steps=20, seeds=1)
    _records.save_finder(res, tmp_path, plot=False)
    load(tmp_path)  # intact: loads
    _rewrite_npz(tmp_path / "finder.npz", lambda a: _bump_first(a, "losses"))
    with pytest.raises(ValueError, match="does not match the arrays_sha256") as e:
        load(tmp_path)
    assert str(tmp_path / "finder.npz") in str(e.value)


def test_load_without_a_digest_still_loads(result, tmp_path):
    """summary.json is optional: without it (or without its digest) nothing is verified."""
    result.save(tmp_path)
    (tmp_path / "summary.json").unlink()
    assert_same_result(result, load(tmp_path))


@pytest.mark.parametrize("name", ["results.npz", "finder.npz"])
@pytest.mark.parametrize("content, problem", [
    (b"PK\x03\x04 a truncated zip", "not a readable .npz"),
    (b"plain text, not numpy", "not a readable .npz"),
], ids=["truncated zip", "not a zip"])
def test_load_of_a_corrupt_file_is_one_value_error(tmp_path, name, content, problem):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=problem) as e:
        load(tmp_path)
    assert str(tmp_path / name) in str(e.value) and "\n" not in str(e.value)


def test_load_of_someone_elses_npz_names_the_missing_arrays(tmp_path):
    np.savez(tmp_path / "results.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="lacks the arrays .*hparam_names") as e:
        load(tmp_path)
    assert str(tmp_path / "results.npz") in str(e.value)
    (tmp_path / "results.npz").unlink()
    np.savez(tmp_path / "finder.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="lacks the arrays .*lrs"):
        load(tmp_path)


def test_load_of_results_with_inconsistent_shapes(result, tmp_path):
    result.save(tmp_path)
    (tmp_path / "summary.json").unlink()  # no digest: the shapes are still checked

    def drop_a_member(a):
        a["diverged"] = a["diverged"][:-1]

    _rewrite_npz(tmp_path / "results.npz", drop_a_member)
    with pytest.raises(ValueError, match="diverged has shape"):
        load(tmp_path)


@pytest.mark.parametrize("config", ['{"name": "my-app"}', '["a", "list"]', "not json {"])
def test_load_of_someone_elses_config_says_so(tmp_path, config):
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(FileNotFoundError, match="not written by jaxlr") as e:
        load(tmp_path)
    assert str(tmp_path / "config.json") in str(e.value) and "jaxlr resume" not in str(e.value)


def test_unfinished_run_hint_is_shell_quoted(tmp_path):
    d = tmp_path / "my runs" / "run b"
    d.mkdir(parents=True)
    _records.write_json(d / "config.json", JAXLR_CONFIG)
    with pytest.raises(FileNotFoundError) as e:
        load(d)
    assert f"jaxlr resume '{d}'" in str(e.value)
