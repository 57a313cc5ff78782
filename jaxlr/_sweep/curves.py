"""The curves a sweep records, chunk by chunk, on the host: loss and LR per step, the
evaluations, as [M, ...] numpy arrays (NaN for the members that did not run: pruned ones)."""

from __future__ import annotations

import numpy as np


def tail_mean(loss: np.ndarray) -> np.ndarray:
    """[n] the mean of the finite values of the last 10% (``max(1, T // 10)``) of ``loss``
    [n, T]; inf where there are none."""
    last = loss[:, -max(1, loss.shape[1] // 10):]
    finite = np.isfinite(last)
    value = np.where(finite, last, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    return np.where(finite.any(axis=1), value, np.inf)


class Curves:
    """The curves recorded chunk by chunk (host numpy arrays, [M, ...]; NaN for the members
    that did not run, i.e. were pruned)."""

    def __init__(self, m: int):
        self.m = m
        self.loss, self.lr, self.eval_steps, self.eval = [], [], [], []
        self.aux: dict[str, list[np.ndarray]] = {}

    def _full(self, active: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """[M, ...] the values of the real rows ``rows`` [r, ...] of members ``active`` [r]."""
        if len(rows) != len(active):
            raise AssertionError(f"{len(rows)} rows for {len(active)} members")
        out = np.full((self.m, *rows.shape[1:]), np.nan, rows.dtype)
        out[active] = rows
        return out

    def add_curves(self, active: np.ndarray, loss: np.ndarray, lr: np.ndarray) -> np.ndarray:
        self.loss.append(self._full(active, loss))
        self.lr.append(self._full(active, lr))
        return self.loss[-1]

    def add_eval(self, step: int, active: np.ndarray, loss: np.ndarray,
                 aux: dict[str, np.ndarray]) -> None:
        self.eval_steps.append(step)
        self.eval.append(self._full(active, loss))
        for name, value in aux.items():
            if not np.issubdtype(value.dtype, np.floating):
                value = value.astype(np.float32)
            self.aux.setdefault(name, []).append(self._full(active, value))

    def loss_window_mean(self, active: np.ndarray, step: int) -> np.ndarray:
        """[n] :func:`tail_mean` of ``active``'s training loss up to ``step`` (the smoothing of
        :meth:`SweepResult.final_loss`)."""
        return tail_mean(np.concatenate(self.loss, axis=1)[active, :step])

    def last_eval(self, name: str) -> np.ndarray:
        """[M] the latest evaluation of ``name`` ("eval" or an aux metric)."""
        return (self.eval if name == "eval" else self.aux[name])[-1]

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"loss": np.concatenate(self.loss, axis=1), "lr": np.concatenate(self.lr, axis=1),
               "eval_steps": np.asarray(self.eval_steps, np.int32)}
        if self.eval:
            out["eval"] = np.stack(self.eval, axis=1)
            out.update({f"aux_{a}": np.stack(v, axis=1) for a, v in self.aux.items()})
        return out

    @classmethod
    def from_arrays(cls, m: int, arrays: dict[str, np.ndarray]) -> Curves:
        rec = cls(m)
        rec.loss, rec.lr = [arrays["loss"]], [arrays["lr"]]
        rec.eval_steps = [int(s) for s in arrays["eval_steps"]]
        if "eval" in arrays:
            rec.eval = list(np.moveaxis(arrays["eval"], 1, 0))
            rec.aux = {a[len("aux_"):]: list(np.moveaxis(v, 1, 0))
                       for a, v in arrays.items() if a.startswith("aux_")}
        return rec


class History:
    """The layouts the policies applied, step by step, on the host: for each, every member's
    parent (the member whose state it continued from; itself when unchanged, -1 when it
    stopped), whether it was alive just before, and the hyperparameter columns after it."""

    def __init__(self, m: int):
        self.m = m
        self.steps: list[int] = []
        self.parents: list[np.ndarray] = []
        self.alive: list[np.ndarray] = []
        self.hparams: list[dict[str, np.ndarray]] = []

    def add(self, step: int, parents: np.ndarray, alive: np.ndarray,
            hparams: dict[str, np.ndarray]) -> None:
        self.steps.append(int(step))
        self.parents.append(np.asarray(parents, np.int64))
        self.alive.append(np.asarray(alive, bool))
        self.hparams.append({k: np.array(v) for k, v in hparams.items()})

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``history_*`` arrays ([L] steps, [L, M] the rest) for a checkpoint or a result."""
        m, names = self.m, (list(self.hparams[0]) if self.hparams else [])
        out = {"history_steps": np.asarray(self.steps, np.int64),
               "history_parents": np.asarray(self.parents, np.int64).reshape(-1, m),
               "history_alive": np.asarray(self.alive, bool).reshape(-1, m)}
        out.update({f"history_hp_{k}": np.stack([h[k] for h in self.hparams])
                    for k in names})
        return out

    @classmethod
    def from_arrays(cls, m: int, arrays: dict[str, np.ndarray]) -> History:
        """The inverse of :meth:`to_arrays` (absent keys: an empty history)."""
        out = cls(m)
        names = [k[len("history_hp_"):] for k in arrays if k.startswith("history_hp_")]
        for j, step in enumerate(arrays.get("history_steps", [])):
            out.add(step, arrays["history_parents"][j], arrays["history_alive"][j],
                    {k: arrays[f"history_hp_{k}"][j] for k in names})
        return out
