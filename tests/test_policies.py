"""The engine's own between-chunk policies (evaluation, progress, checkpointing), each against
what it promises, and the order the loop runs them in."""

import io

import jax.numpy as jnp
import numpy as np
import pytest

import jaxlr
from jaxlr._sweep.curves import Curves
from jaxlr._sweep.policies import Checkpointing, ChunkDone, Evaluation, Progress


def test_evaluation_runs_every_period_and_at_the_end_and_records_it():
    calls = []
    ev = Evaluation(lambda state, data: calls.append(state) or ("loss", "aux"), "data",
                    every=20, steps=50, fetch=lambda x: (np.ones(2), {"acc": np.zeros(2)}))
    launched = {t: ev.launch(t, f"state@{t}") for t in (10, 20, 30, 40, 50)}
    assert [t for t, w in launched.items() if w is not None] == [20, 40, 50]
    assert calls == ["state@20", "state@40", "state@50"]
    curves = Curves(3)
    ev.record(ChunkDone(10, 20, np.array([0, 2]), curves, launched[20]))
    ev.record(ChunkDone(20, 30, np.array([0, 2]), curves, launched[30]))  # nothing launched
    assert curves.eval_steps == [20]
    np.testing.assert_array_equal(curves.eval[0], [1.0, np.nan, 1.0])


def test_progress_starts_a_resumed_run_at_its_step_and_keeps_it_out_of_the_rate():
    p = Progress(100, 4, done=30, label="jaxlr find")
    p.bar.fp = io.StringIO()
    assert p.bar.n == 30 and p.bar.initial == 30  # tqdm's rate counts n - initial
    assert p.bar.desc == "jaxlr find (4 members)"
    curves = Curves(4)
    curves.add_curves(np.arange(4), np.array([[1.0, 0.5]] * 4), np.ones((4, 2)))
    p.record(ChunkDone(30, 32, np.arange(4), curves, None))
    assert p.bar.n == 32 and p.bar.postfix == "best_loss=0.5"
    p.finish()


def test_progress_prints_an_estimate_after_the_first_chunk_only(monkeypatch, capsys):
    """The rest is estimated as remaining steps x the first chunk's time per step: 4 s for 20
    steps, 80 steps to go -> 16 s (a fake clock); nothing for later chunks, nor when the first
    chunk is the last."""
    clock = iter([100.0, 104.0, 999.0])
    monkeypatch.setattr("jaxlr._sweep.policies._now", lambda: next(clock))
    p = Progress(100, 4)
    curves = Curves(4)
    for start in (0, 20):
        curves.add_curves(np.arange(4), np.ones((4, 20)), np.ones((4, 20)))
        p.record(ChunkDone(start, start + 20, np.arange(4), curves, None))
    p.finish()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "estimated" in ln]
    assert lines == ["jaxlr sweep (4 members): the first chunk, 20 steps, took 4.0 s; "
                     "estimated 16.0 s for the remaining 80 steps"]
    one = Progress(20, 1)
    curves = Curves(1)
    curves.add_curves(np.arange(1), np.ones((1, 20)), np.ones((1, 20)))
    one.record(ChunkDone(0, 20, np.arange(1), curves, None))
    one.finish()
    assert "estimated" not in capsys.readouterr().err


def test_checkpointing_asks_for_every_chunk_end():
    c = Checkpointing("dir", {}, 7, barrier=lambda name: None)
    assert c.boundaries(20) == [7, 14, 20]


def test_the_loop_runs_evaluation_first_and_checkpointing_last(tmp_path, monkeypatch):
    """A layout policy sees the evaluation of its step, and a checkpoint holds its layout."""
    order = []
    for cls, hook in ((Evaluation, "record"), (Checkpointing, "after_chunk")):
        real = getattr(cls, hook)

        def spy(self, arg, real=real, name=cls.__name__):
            order.append(name)
            return real(self, arg)

        monkeypatch.setattr(cls, hook, spy)
    halving = jaxlr.successive_halving(10, 2, by="eval")
    real_after = type(halving).after_chunk
    monkeypatch.setattr(type(halving), "after_chunk",
                        lambda self, end: order.append("halving") or real_after(self, end))
    x = jnp.linspace(-1.0, 1.0, 32)[:, None]
    jaxlr.sweep(lambda k: jnp.zeros(1), lambda w, b: jnp.mean((b[0] @ w - 2 * b[0][:, 0]) ** 2),
                (x,), lambda hp: jaxlr.sgd(hp["lr"]), jaxlr.grid(lr=[0.01, 0.1]), steps=20,
                batch_size=8, progress=False, eval_data=(x,), eval_every=10, prune=halving,
                checkpoint=tmp_path / "ckpt")
    assert order[:3] == ["Evaluation", "halving", "Checkpointing"]


@pytest.mark.parametrize("label", [True, "custom"])
def test_a_sweeps_progress_bar_label(label, capsys):
    x = jnp.linspace(-1.0, 1.0, 32)[:, None]
    jaxlr.sweep(lambda k: jnp.zeros(1), lambda w, b: jnp.mean((b[0] @ w) ** 2), (x,),
                lambda hp: jaxlr.sgd(hp["lr"]), jaxlr.grid(lr=[0.1]), steps=4, batch_size=8,
                progress=label)
    err = capsys.readouterr().err
    assert ("jaxlr sweep (1 members)" if label is True else "custom (1 members)") in err


@pytest.mark.filterwarnings("ignore:the loss was still falling")
def test_the_finders_bar_says_find(capsys):
    x = jnp.linspace(-1.0, 1.0, 32)[:, None]
    jaxlr.find_lr(lambda k: jnp.zeros(1), lambda w, b: jnp.mean((b[0] @ w - b[0][:, 0]) ** 2),
                  (x,), lambda lr: jaxlr.sgd(lr), steps=20, batch_size=8, seeds=1,
                  progress=True)
    err = capsys.readouterr().err
    assert "jaxlr find (1 members)" in err and "jaxlr sweep" not in err
