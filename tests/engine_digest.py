"""A fixed set of sweeps whose results pin the engine bit for bit (issue: one house for the
engine). ``tests/test_engine_digest.py`` compares them with ``tests/data/engine_digest.npz``,
recorded before the engine moved into its folders (one file per kind of CPU: XLA:CPU compiles
for the host's vector units, so float results are bit-identical only on the same kind); run
``python tests/engine_digest.py --record`` only when a change is MEANT to change results (and
say so in the commit), or with the code of the commit that recorded the first reference to add
a reference for another kind of CPU.

Only the public API is used, so the script survives any internal move. Each case returns a
dict of numpy arrays: the curves (loss, lr, eval, aux), divergence and pruning, and every leaf
of the stacked trained state.

Cases: a pytree model with a diverging member (one program, and chunked), NNX with BatchNorm
and Dropout with eval and aux metrics, linen with a warm-up cosine schedule and AdamW,
a plateau controller on an iterable of batches, checkpoint + resume (the newest checkpoint
removed, so the sweep resumes from an older one), successive halving by eval, the LR range
test, and 4 host devices (in a subprocess) with and without halving.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
REFERENCE = HERE / "data" / "engine_digest.npz"  # the first machine's; others beside it


def references() -> list[Path]:
    """Every recorded reference: one per kind of CPU (``engine_digest*.npz``)."""
    return sorted(REFERENCE.parent.glob("engine_digest*.npz"))


def reference_path() -> Path:
    """Where this machine's reference is (or would be) recorded."""
    for path in references():
        with np.load(path) as z:
            if json.loads(str(z["__meta__"]))["machine"] == machine():
                return path
    tag = hashlib.sha256(machine().encode()).hexdigest()[:12]
    return REFERENCE if not REFERENCE.exists() else HERE / "data" / f"engine_digest-{tag}.npz"


def _setup():
    import jax
    import jax.numpy as jnp
    from flax import linen, nnx

    import jaxlr

    x = jax.random.normal(jax.random.key(0), (96, 4))
    y = x @ jnp.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * jax.random.normal(jax.random.key(1), (96,))

    def init_linear(key):
        return {"w": 0.1 * jax.random.normal(key, (4,)), "b": jnp.zeros(())}

    def mse(params, batch):
        bx, by = batch
        return jnp.mean((bx @ params["w"] + params["b"] - by) ** 2)

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(4, 8, rngs=rngs)
            self.bn = nnx.BatchNorm(8, rngs=rngs)
            self.drop = nnx.Dropout(0.2, rngs=rngs)
            self.l2 = nnx.Linear(8, 1, rngs=rngs)

        def __call__(self, z):
            return self.l2(self.drop(nnx.relu(self.bn(self.l1(z)))))[:, 0]

    def nnx_loss(model, batch):
        err = model(batch[0]) - batch[1]
        return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}

    class Lin(linen.Module):
        @linen.compact
        def __call__(self, z):
            return linen.Dense(1)(linen.tanh(linen.Dense(8)(z)))[:, 0]

    module = Lin()

    def linen_loss(variables, batch):
        return jnp.mean((module.apply(variables, batch[0]) - batch[1]) ** 2)

    return dict(jax=jax, jnp=jnp, nnx=nnx, jaxlr=jaxlr, x=x, y=y, init_linear=init_linear,
                mse=mse, Net=Net, nnx_loss=nnx_loss, module=module, linen_loss=linen_loss)


def _arrays(res) -> dict[str, np.ndarray]:
    import jax

    out = {"loss": res.loss, "lr": res.lr, "diverged_at": res.diverged_at,
           "pruned_at": res.pruned_at, "eval_steps": np.asarray(res.eval_steps)}
    if res.eval is not None:
        out["eval"] = res.eval
        out.update({f"aux_{k}": v for k, v in res.eval_aux.items()})
    leaves = jax.tree.leaves(res.stacked())
    for i, leaf in enumerate(leaves):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[f"state{i}"] = np.asarray(leaf)
    return {k: np.asarray(v) for k, v in out.items()}


def cases() -> dict[str, dict[str, np.ndarray]]:
    """Every in-process case: name -> arrays."""
    s = _setup()
    jax, jnp, nnx, jaxlr = s["jax"], s["jnp"], s["nnx"], s["jaxlr"]
    data = (s["x"], s["y"])
    out = {}
    g = jaxlr.grid(lr=[0.01, 0.1, 50.0], seed=2)
    sgd = lambda hp: jaxlr.sgd(hp["lr"], momentum=0.5)  # noqa: E731
    out["pytree_one_program"] = _arrays(jaxlr.sweep(
        s["init_linear"], s["mse"], data, sgd, g, steps=30, batch_size=16, progress=False))
    out["pytree_chunked"] = _arrays(jaxlr.sweep(
        s["init_linear"], s["mse"], data, sgd, g, steps=30, batch_size=16, progress=False,
        chunk_size=7))
    out["nnx_batchnorm_eval"] = _arrays(jaxlr.sweep(
        lambda k: s["Net"](nnx.Rngs(k)), s["nnx_loss"], data, lambda hp: jaxlr.adam(hp["lr"]),
        jaxlr.grid(lr=[1e-3, 1e-2], seed=2), steps=40, batch_size=16, eval_data=data,
        eval_every=20, progress=False))
    out["linen_adamw_warmup_cosine"] = _arrays(jaxlr.sweep(
        lambda k: s["module"].init(k, s["x"][:1]), s["linen_loss"], data,
        lambda hp: jaxlr.adamw(jaxlr.warmup_cosine_decay(0.0, hp["lr"], 5, 30),
                               weight_decay=hp["wd"]),
        jaxlr.grid(lr=[1e-3, 3e-2], wd=[0.0, 0.1]), steps=30, batch_size=16, progress=False))
    batches = [(s["x"][i:i + 16], s["y"][i:i + 16]) for i in range(0, 96, 16)] * 4
    out["plateau_iterable"] = _arrays(jaxlr.sweep(
        s["init_linear"], s["mse"], iter(batches),
        lambda hp: jaxlr.adam(jaxlr.reduce_on_plateau(hp["lr"], patience=2, accumulate=3)),
        jaxlr.grid(lr=[0.01, 0.1]), steps=24, batch_size=16, chunk_size=8, progress=False))
    with tempfile.TemporaryDirectory() as d:
        kw = dict(steps=40, batch_size=16, chunk_size=10, eval_data=data, eval_every=20,
                  progress=False, checkpoint=d)
        args = (lambda k: s["Net"](nnx.Rngs(k)), s["nnx_loss"], data,
                lambda hp: jaxlr.adam(hp["lr"]), jaxlr.grid(lr=[1e-3, 1e-2, 3.0], seed=2))
        jaxlr.sweep(*args, **kw)
        ckpts = sorted(Path(d).glob("ckpt-*"))
        shutil.rmtree(ckpts[-1])  # resume from the older checkpoint (chunk 2 of 4)
        out["checkpoint_resume"] = _arrays(jaxlr.sweep(*args, **kw))
    out["halving_by_eval"] = _arrays(jaxlr.sweep(
        s["init_linear"], s["mse"], data, lambda hp: jaxlr.adam(hp["lr"]),
        jaxlr.grid(lr=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1], seed=2), steps=45, batch_size=16,
        eval_data=data, eval_every=5, progress=False,
        prune=jaxlr.successive_halving(5, 3, by="eval")))
    h = jnp.logspace(-1, 1, 8)
    fr = jaxlr.find_lr(lambda k: jnp.ones(8) + 0.1 * jax.random.normal(k, (8,)),
                       lambda w, b: 0.5 * jnp.sum(h * w**2) + 0.0 * jnp.sum(b[0]),
                       (jnp.zeros((4, 1)),), lambda lr: jaxlr.sgd(lr), batch_size=4, seeds=2)
    out["find_lr"] = {"losses": fr.losses, "diverged_at": fr.diverged_at,
                      "suggestion": np.asarray(fr.suggestion)}
    return out


DEVICES4 = """
import jax, jax.numpy as jnp, numpy as np, sys
sys.path.insert(0, {here!r})
import jaxlr, engine_digest
assert jax.device_count() == 4, jax.devices()
x = jax.random.normal(jax.random.key(0), (64, 3)); y = x @ jnp.array([1., -2., .5])
args = (lambda k: 0.1 * jax.random.normal(k, (3,)),
        lambda w, b: jnp.mean((b[0] @ w - b[1]) ** 2), (x, y),
        lambda hp: jaxlr.adam(hp["lr"]), jaxlr.grid(lr=[1e-3, 1e-2, 0.1], seed=2))
kw = dict(steps=21, batch_size=8, progress=False, chunk_size=7)
out = {{"devices4": engine_digest._arrays(jaxlr.sweep(*args, **kw)),
        "devices4_halving": engine_digest._arrays(jaxlr.sweep(
            *args, prune=jaxlr.successive_halving(7, 3), **kw))}}
np.savez({path!r}, **{{f"{{c}}/{{k}}": v for c, a in out.items() for k, v in a.items()}})
"""


def devices4_cases() -> dict[str, dict[str, np.ndarray]]:
    """The 4-host-device cases, run in a subprocess (the device count is fixed at start)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "out.npz")
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
               "JAX_PLATFORMS": "cpu"}
        env.pop("JAX_ENABLE_X64", None)
        proc = subprocess.run([sys.executable, "-c", DEVICES4.format(here=str(HERE),
                                                                      path=path)],
                              env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-3000:])
        with np.load(path) as z:
            flat = {k: z[k] for k in z.files}
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, v in flat.items():
        case, name = key.split("/", 1)
        out.setdefault(case, {})[name] = v
    return out


def digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def machine() -> str:
    """The CPU the arrays were computed on: XLA:CPU compiles for the host's vector units, so
    float results are bit-identical only on the same kind of CPU."""
    model, flags = platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}|{hashlib.sha256(flags.encode()).hexdigest()[:16]}"


def record() -> None:
    """Write the reference arrays, their digests and the machine."""
    import jax

    everything = {**cases(), **devices4_cases()}
    flat = {f"{c}/{k}": v for c, a in everything.items() for k, v in a.items()}
    meta = {"machine": machine(), "jax": jax.__version__,
            "digests": {c: digest(a) for c, a in everything.items()}}
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez(reference_path(), **flat, __meta__=np.asarray(json.dumps(meta)))
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    if "--record" in sys.argv:
        record()
    else:
        print(json.dumps({c: digest(a) for c, a in {**cases(), **devices4_cases()}.items()},
                         indent=2))
