"""Atomic, verified checkpoints of a sweep between chunks (so a killed sweep resumes exactly).

Format: ``DIR/ckpt-<chunk>/`` holding ``arrays.npz`` (the leaves of the training carry and the
curves recorded so far) and ``manifest.json`` (the chunk index, a fingerprint of the sweep's
configuration and the SHA-256 of ``arrays.npz``). A checkpoint is written to a temporary
directory and renamed into place, so a kill leaves either the old or the new one; the two newest
are kept. On load, a checkpoint whose manifest is missing or whose checksum does not match (a
half-written or corrupt one) is skipped with a warning, and the previous one is used.

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
from typing import Any

import jax
import numpy as np

KEEP = 2


def fingerprint(config: dict[str, Any]) -> str:
    """A stable hash of the sweep's configuration (grid, steps, batch size, chunking...)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _to_numpy(leaf: Any) -> np.ndarray:
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


def save(directory: str | os.PathLike, chunk: int, config_hash: str, carry: Any,
         records: dict[str, np.ndarray]) -> None:
    """Write the checkpoint after ``chunk`` atomically; keep the newest ``KEEP``."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {f"leaf{i}": _to_numpy(x) for i, x in enumerate(jax.tree.leaves(carry))}
    arrays.update({f"rec_{k}": v for k, v in records.items()})
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=root))
    with open(tmp / "arrays.npz", "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    digest = hashlib.sha256((tmp / "arrays.npz").read_bytes()).hexdigest()
    manifest = {"chunk": chunk, "config": config_hash, "sha256": digest,
                "records": sorted(records)}
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    final = root / f"ckpt-{chunk:06d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(root.glob("ckpt-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def load(directory: str | os.PathLike, config_hash: str, carry_like: Any):
    """The newest valid checkpoint as ``(chunk, carry, records)``, or None if there is none.

    ``carry_like`` gives the tree structure and dtypes (e.g. the freshly initialised carry).
    A checkpoint of another configuration is an error: resuming it would mix two sweeps.
    """
    root = Path(directory)
    leaves_like, treedef = jax.tree.flatten(carry_like)
    for path in sorted(root.glob("ckpt-*"), reverse=True):
        try:
            manifest = json.loads((path / "manifest.json").read_text())
            blob = (path / "arrays.npz").read_bytes()
            if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
                raise ValueError("checksum mismatch")
        except (OSError, ValueError, KeyError) as e:
            warnings.warn(f"skipping corrupt or half-written checkpoint {path} ({e}); using the "
                          "previous one", stacklevel=3)
            continue
        if manifest["config"] != config_hash:
            raise ValueError(f"checkpoint directory {root} holds a different sweep (another grid, "
                             "steps, batch size or chunking); use a new directory or delete it")
        with np.load(path / "arrays.npz") as z:
            leaves = [_restore(z[f"leaf{i}"], like) for i, like in enumerate(leaves_like)]
            records = {k: z[f"rec_{k}"] for k in manifest["records"]}
        return manifest["chunk"], jax.tree.unflatten(treedef, leaves), records
    return None


def _restore(value: np.ndarray, like: Any) -> Any:
    if jax.dtypes.issubdtype(like.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(value, impl=jax.random.key_impl(like))
    return value
