"""A checkpoint is resumed only by the program that wrote it (issue 14 §2).

Each case writes a checkpoint, changes ONE thing a researcher changes between runs (the model's
width, the optimizer, one of its constants, the data, the eval data) and resumes: the call is
refused with one ValueError naming what differs. The control: the unchanged call resumes, to
the uninterrupted result. Then the manifest's own checksum, corrupt manifests, and the
temporary directories a killed or failing writer leaves.
"""

import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlr
from jaxlr._sweep import checkpoint as _checkpoint

X = jax.random.normal(jax.random.key(0), (32, 4))
Y = jnp.tanh(X @ jnp.array([1.0, -2.0, 0.5, 0.0]))
DATA = (X, Y)


def make_init(width):
    def init(key):
        k1, k2 = jax.random.split(key)
        return {"w": 0.5 * jax.random.normal(k1, (4, width)),
                "v": 0.5 * jax.random.normal(k2, (width,))}
    return init


def loss_fn(p, batch):
    x, y = batch
    return jnp.mean((jnp.tanh(x @ p["w"]) @ p["v"] - y) ** 2)


def run(ckpt, width=8, optimizer=None, data=DATA, eval_data=DATA, steps=20, loss=loss_fn):
    optimizer = optimizer or (lambda hp: jaxlr.adam(hp["lr"]))
    return jaxlr.sweep(make_init(width), loss, data, optimizer, jaxlr.grid(lr=[0.01, 0.1]),
                       steps=steps, batch_size=8, chunk_size=5, eval_data=eval_data,
                       eval_every=10, checkpoint=None if ckpt is None else str(ckpt),
                       progress=False)


@pytest.fixture(scope="module")
def uninterrupted():
    return run(None)


def keep_only_first(ckpt: Path, n: int = 1) -> None:
    """Leave the ``n`` oldest checkpoints, as a kill after chunk ``n`` would."""
    for p in sorted(ckpt.glob("ckpt-*"))[n:]:
        for f in p.iterdir():
            f.unlink()
        p.rmdir()


def assert_same(a, b):
    for key in ("loss", "lr", "eval", "diverged_at"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


def test_the_same_program_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted):
    ckpt = tmp_path / "ck"
    run(ckpt)
    keep_only_first(ckpt)
    assert [p.name for p in ckpt.glob("ckpt-*")] == ["ckpt-000002"]
    assert_same(run(ckpt), uninterrupted)


@pytest.mark.parametrize("change, what", [
    (dict(width=16), "shapes or dtypes of the trained state"),
    (dict(optimizer=lambda hp: jaxlr.sgd(hp["lr"], momentum=0.9)), "another model or optimizer"),
    (dict(optimizer=lambda hp: jaxlr.adam(hp["lr"], b1=0.5)), "compiled training program"),
    (dict(data=(X + 1.0, Y)), "the training data"),
    (dict(eval_data=(X[:16], Y[:16])), "the evaluation data"),
    (dict(steps=30), "the sweep's settings"),
])
def test_another_program_is_refused_naming_what_differs(tmp_path, change, what):
    ckpt = tmp_path / "ck"
    run(ckpt)
    before = {p.name: (p / "manifest.json").read_text() for p in ckpt.glob("ckpt-*")}
    with pytest.raises(ValueError, match="holds a sweep of another program") as err:
        run(ckpt, **change)
    assert what in str(err.value)
    # nothing was overwritten
    assert {p.name: (p / "manifest.json").read_text() for p in ckpt.glob("ckpt-*")} == before


def test_a_changed_closed_over_array_is_another_program(tmp_path):
    """An array the loss closes over is embedded in the lowered program, so the fingerprint's
    program digest sees one changed element."""
    scale = np.ones(4, np.float32)

    def scaled(p, batch):
        x, y = batch
        return loss_fn(p, (x * jnp.asarray(scale), y))

    ckpt = tmp_path / "ck"
    run(ckpt, loss=scaled)
    scale[2] = 2.0
    with pytest.raises(ValueError, match="compiled training program"):
        run(ckpt, loss=scaled)


def test_sgd_checkpoint_resumed_by_adam_is_refused(tmp_path):
    """The other way round (today a KeyError deep in numpy)."""
    ckpt = tmp_path / "ck"
    run(ckpt, optimizer=lambda hp: jaxlr.sgd(hp["lr"], momentum=0.9))
    with pytest.raises(ValueError, match="another model or optimizer"):
        run(ckpt)


def test_an_edited_manifest_is_skipped_and_the_one_before_used(tmp_path, uninterrupted):
    """The issue's flipped ``"chunk"``: the manifest is covered by its own checksum."""
    ckpt = tmp_path / "ck"
    run(ckpt)
    keep_only_first(ckpt, 2)  # chunks 2 and 3 of 0..3
    newest = sorted(ckpt.glob("ckpt-*"))[-1] / "manifest.json"
    manifest = json.loads(newest.read_text())
    manifest["chunk"] = 2  # was 3
    newest.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="corrupt or half-written checkpoint .*ckpt-000003"):
        resumed = run(ckpt)
    assert_same(resumed, uninterrupted)


def test_an_unreadable_newest_manifest_is_skipped(tmp_path, uninterrupted):
    ckpt = tmp_path / "ck"
    run(ckpt)
    keep_only_first(ckpt, 2)
    (sorted(ckpt.glob("ckpt-*"))[-1] / "manifest.json").write_text('{"chunk": 3, "sha')
    with pytest.warns(UserWarning, match="corrupt or half-written checkpoint"):
        assert_same(run(ckpt), uninterrupted)


def test_a_leaf_of_another_shape_is_refused(tmp_path):
    """The loader checks every restored leaf against the program's own (independently of the
    fingerprint)."""
    parts = {k: "x" for k in _checkpoint.PARTS}
    _checkpoint.save(tmp_path, 0, parts, {"a": np.zeros((2, 3), np.float32)}, {})
    with pytest.raises(ValueError, match=r"leaf 0 has shape \(2, 3\) .* has \(2, 4\)"):
        _checkpoint.load(tmp_path, parts, {"a": jnp.zeros((2, 4), jnp.float32)})
    restored = _checkpoint.load(tmp_path, parts, {"a": jnp.zeros((2, 3), jnp.float32)})
    assert restored[0] == 0 and restored[1]["a"].shape == (2, 3)


def test_a_failed_write_leaves_no_temporary_directory(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_checkpoint.np, "savez", full_disk)
    parts = {k: "x" for k in _checkpoint.PARTS}
    with pytest.raises(OSError, match="No space left"):
        _checkpoint.save(tmp_path, 0, parts, {"a": np.zeros(3)}, {})
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_directories_are_removed_when_a_sweep_starts(tmp_path, uninterrupted):
    ckpt = tmp_path / "ck"
    stale = ckpt / ".tmp-ckpt-killed"
    stale.mkdir(parents=True)
    (stale / "arrays.npz").write_bytes(b"x" * 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(run(ckpt), uninterrupted)
    assert not list(ckpt.glob(".tmp-ckpt-*"))
