"""Atomic, verified checkpoints of a sweep between chunks (so a killed sweep resumes exactly).

Format: ``DIR/ckpt-<chunk>/`` holding ``arrays.npz`` (the leaves of the training carry and the
curves recorded so far) and ``manifest.json`` (the chunk index, the fingerprint of the program
that wrote it, the SHA-256 of ``arrays.npz``, and a SHA-256 of the manifest itself). The
fingerprint has parts (:data:`PARTS`): the sweep's settings, the trained state's structure,
shapes and dtypes, digests of the in-memory data and eval data, and a digest of the lowered
training program, so a checkpoint is resumed only by the program that wrote it. A checkpoint
is written to a temporary directory and renamed into place, so a kill leaves either the old or
the new one; the two newest are kept. On load, a checkpoint whose manifest or arrays do not
match their digests (a half-written or corrupt one) is skipped with a warning, and the previous
one is used.

Why not orbax: the carry's tree structure is re-derived from the program at every start, so only
the leaves need storing; a single-host ``.npz`` with an atomic rename and a checksum is all a
chunk boundary needs, and it adds no dependency. Many-host sweeps will need orbax.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

if TYPE_CHECKING:
    import chex

KEEP = 2

# What a checkpoint's fingerprint covers, part by part, as an error names them.
PARTS = {
    "settings": "the sweep's settings (grid, steps, batch size, chunking, eval period, "
                "divergence rule, devices or pruning)",
    "carry": "the structure, shapes or dtypes of the trained state (another model or optimizer)",
    "data": "the training data",
    "eval_data": "the evaluation data",
    "program": "the compiled training program (the model, loss, optimizer, or a value they read)",
}


def fingerprint(config: Any) -> str:
    """A stable hash of a JSON-able configuration (grid, steps, batch size, chunking...)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def tree_spec(tree: chex.ArrayTree) -> str:
    """A hash of a pytree's structure and its leaves' shapes and dtypes (not their values)."""
    leaves, treedef = jax.tree.flatten(tree)
    return fingerprint([str(treedef), [[list(np.shape(x)), str(getattr(x, "dtype", type(x)))]
                                       for x in leaves]])


def tree_digest(tree: chex.ArrayTree | None) -> str:
    """A SHA-256 of a pytree's structure and the bytes, shapes and dtypes of its leaves (arrays
    are brought to the host once; ``None`` hashes as an empty tree)."""
    h = hashlib.sha256(tree_spec(tree).encode())
    for x in jax.tree.leaves(tree):
        h.update(np.ascontiguousarray(_to_numpy(x)).tobytes())
    return h.hexdigest()


def _to_numpy(leaf: chex.Array) -> np.ndarray:
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


def _manifest_digest(manifest: dict) -> str:
    return fingerprint({k: v for k, v in manifest.items() if k != "manifest_sha256"})


def save(directory: str | os.PathLike, chunk: int, parts: dict[str, str], carry: chex.ArrayTree,
         records: dict[str, np.ndarray]) -> None:
    """Write the checkpoint after ``chunk`` atomically; keep the newest ``KEEP``.

    ``parts`` is the fingerprint of the program that writes it (see :data:`PARTS`); the
    manifest, which holds it, the chunk index and the arrays' SHA-256, is itself hashed."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {f"leaf{i}": _to_numpy(x) for i, x in enumerate(jax.tree.leaves(carry))}
    arrays.update({f"rec_{k}": v for k, v in records.items()})
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=root))
    try:
        with open(tmp / "arrays.npz", "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        digest = hashlib.sha256((tmp / "arrays.npz").read_bytes()).hexdigest()
        manifest = {"chunk": chunk, "config": parts["settings"], "parts": parts,
                    "sha256": digest, "records": sorted(records)}
        manifest["manifest_sha256"] = _manifest_digest(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        final = root / f"ckpt-{chunk:06d}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():  # a failure before the rename (e.g. a full disk) leaves nothing behind
            shutil.rmtree(tmp, ignore_errors=True)
    for old in sorted(root.glob("ckpt-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale(directory: str | os.PathLike) -> None:
    """Remove the temporary directories a killed writer left (call before the first save)."""
    for tmp in Path(directory).glob(".tmp-ckpt-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _read(path: Path) -> dict:
    """The manifest of ``path`` after checking it and the arrays against their digests."""
    manifest = json.loads((path / "manifest.json").read_text())
    if not isinstance(manifest, dict) or manifest.get("manifest_sha256") != _manifest_digest(
            manifest):
        raise ValueError("manifest checksum mismatch")
    if path.name != f"ckpt-{manifest['chunk']:06d}":
        raise ValueError(f"manifest says chunk {manifest['chunk']}")
    blob = (path / "arrays.npz").read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        raise ValueError("checksum mismatch")
    return manifest


def _newest(root: Path):
    """The valid checkpoints of ``root``, newest first, as ``(path, manifest)``: one whose
    manifest or arrays do not match their digests is skipped with a warning."""
    for path in sorted(root.glob("ckpt-*"), reverse=True):
        try:
            manifest = _read(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"skipping corrupt or half-written checkpoint {path} ({e}); trying "
                          "the one before it", stacklevel=4)
            continue
        yield path, manifest


def latest(directory: str | os.PathLike) -> int | None:
    """The chunk index of the newest intact checkpoint in ``directory`` (None: none); whether
    it resumes is decided by its fingerprint when the sweep starts."""
    root = Path(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = next(_newest(root), None) if root.is_dir() else None
    return None if found is None else int(found[1]["chunk"])


def load(directory: str | os.PathLike, parts: dict[str, str], carry_like: chex.ArrayTree):
    """The newest valid checkpoint as ``(chunk, carry, records)``, or None if there is none.

    A checkpoint whose manifest or arrays do not match their digests (half-written, corrupt,
    edited) is skipped with a warning and the one before it is tried. A valid checkpoint of
    another program (any part of ``parts`` differs: :data:`PARTS`) is an error, as is a
    restored leaf whose shape or dtype is not ``carry_like``'s: resuming it would mix two
    sweeps. ``carry_like`` gives the tree structure, shapes and dtypes (e.g. the freshly
    initialised carry).
    """
    root = Path(directory)
    for path, manifest in _newest(root):
        saved = manifest.get("parts", {})
        differ = [PARTS[k] for k in PARTS if saved.get(k) != parts.get(k)]
        if differ:
            raise ValueError(
                f"checkpoint directory {root} holds a sweep of another program: "
                f"{'; '.join(differ)} differ from this call's. A checkpoint is resumed only by "
                "the program that wrote it: pass a new checkpoint directory, or delete "
                f"{root} to start over")
        carry, records = _leaves(path, manifest, carry_like)
        return manifest["chunk"], carry, records
    return None


def load_final(directory: str | os.PathLike, like: chex.ArrayTree, chunk: int) -> chex.ArrayTree:
    """The state of the last checkpoint (``chunk``) of a finished sweep, for reading its
    members back (e.g. ``jaxlr.load(DIR).params(i)``): the newest valid checkpoint must be that
    chunk's, and every leaf must have ``like``'s dtype and shape past the member axis (the
    number of rows is the checkpoint's)."""
    for path, manifest in _newest(Path(directory)):
        if manifest["chunk"] != chunk:
            raise ValueError(f"the newest checkpoint in {directory} is chunk "
                             f"{manifest['chunk']}, not the last step's ({chunk}): the run did "
                             "not finish; resume it first")
        return _leaves(path, manifest, like)[0]
    raise ValueError(f"no valid checkpoint in {directory}")


def _leaves(path: Path, manifest: dict, like: chex.ArrayTree) -> tuple[chex.ArrayTree, dict]:
    """The checkpoint's tree (each leaf checked against ``like``'s) and its records."""
    leaves_like, treedef = jax.tree.flatten(like)
    with np.load(path / "arrays.npz") as z:
        if len(z.files) != len(leaves_like) + len(manifest["records"]):
            raise ValueError(f"checkpoint {path} holds {len(z.files)} arrays, this program "
                             "expects another number: pass a new checkpoint directory")
        leaves = [_restore(z[f"leaf{i}"], like, path, i) for i, like in
                  enumerate(leaves_like)]
        records = {k: z[f"rec_{k}"] for k in manifest["records"]}
    return jax.tree.unflatten(treedef, leaves), records


def _restore(value: np.ndarray, like: jax.Array | jax.ShapeDtypeStruct, path: Path,
             i: int) -> np.ndarray | jax.Array:
    """``value`` as a leaf like ``like``: the same dtype and shape past the member axis (the
    number of rows may differ: a policy such as successive halving changes it)."""
    key = jax.dtypes.issubdtype(like.dtype, jax.dtypes.prng_key)
    want = (np.shape(jax.random.key_data(like)) if key else tuple(like.shape),
            np.dtype(jax.random.key_data(like).dtype if key else like.dtype))
    if (value.shape[1:], value.dtype) != (want[0][1:], want[1]) or value.ndim != len(want[0]):
        raise ValueError(f"checkpoint {path}: leaf {i} has shape {value.shape} and dtype "
                         f"{value.dtype}, this program's has {want[0]} and {want[1]}: pass a "
                         "new checkpoint directory")
    return jax.random.wrap_key_data(value, impl=jax.random.key_impl(like)) if key else value
