"""A gallery of every jaxlr schedule (and the plateau controller), drawn into one PNG.

Each panel is one schedule family over 1,000 steps with the parameters in its title; where a
family has variants (staircase, anneal strategy, cyclic mode, decay shape) they share a panel.
Where optax has the schedule, its curve is drawn dotted on top and the largest difference is
printed: jaxlr follows optax's semantics, so the lines coincide.

The last two panels show what only jaxlr can do:

- **traced parameters**: ``jax.vmap`` over ``warmup_steps`` and over one-cycle's ``pct_start``
  draws five curves with ONE compiled function (optax cannot trace those parameters);
- **reduce on plateau after a warm-up**: ``jaxlr.reduce_on_plateau(jaxlr.warmup(...))`` driven
  by a synthetic loss that stops improving, so the LR is cut (its state is advanced inside
  ``jax.lax.scan`` exactly as an optimizer does).

Run: ``python examples/02_schedules_gallery.py [--out runs/schedules.png]`` (a few seconds;
needs matplotlib). With ``JAXLR_EXAMPLE_SMOKE=1`` it draws fewer steps into a temporary
directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure

import jaxlr

SMOKE = os.environ.get("JAXLR_EXAMPLE_SMOKE") == "1"
T = 200 if SMOKE else 1000  # steps drawn
LR = 1e-2


def gallery() -> list[tuple[str, dict, dict]]:
    """(title, {label: jaxlr schedule}, {label: optax schedule}) per panel."""
    q, h = T // 4, T // 2
    return [
        ("constant(0.01)", {"constant": jaxlr.constant(LR)},
         {"optax": optax.constant_schedule(LR)}),
        ("linear(0.01 -> 0.001, 600, begin=200)",
         {"linear": jaxlr.linear(LR, LR / 10, 0.6 * T, 0.2 * T)},
         {"optax": optax.linear_schedule(LR, LR / 10, int(0.6 * T), int(0.2 * T))}),
        ("polynomial_decay(power 0.5 / 2)",
         {f"power {p}": jaxlr.polynomial_decay(LR, 0.0, p, T) for p in (0.5, 2.0)},
         {f"optax {p}": optax.polynomial_schedule(LR, 0.0, p, T) for p in (0.5, 2.0)}),
        ("exponential_decay(rate 0.1 per T/4)",
         {"smooth": jaxlr.exponential_decay(LR, q, 0.1),
          "staircase": jaxlr.exponential_decay(LR, q, 0.1, staircase=True)},
         {"optax": optax.exponential_decay(LR, q, 0.1),
          "optax stairs": optax.exponential_decay(LR, q, 0.1, staircase=True)}),
        ("inverse_time_decay (Keras)",
         {"smooth": jaxlr.inverse_time_decay(LR, q, 1.0),
          "staircase": jaxlr.inverse_time_decay(LR, q, 1.0, staircase=True)}, {}),
        ("cosine_decay(alpha 0 / 0.2)",
         {f"alpha {a}": jaxlr.cosine_decay(LR, T, alpha=a) for a in (0.0, 0.2)},
         {f"optax {a}": optax.cosine_decay_schedule(LR, T, alpha=a) for a in (0.0, 0.2)}),
        ("warmup_cosine_decay(warmup T/10)",
         {"jaxlr": jaxlr.warmup_cosine_decay(0.0, LR, T // 10, T, end_value=LR / 100)},
         {"optax": optax.warmup_cosine_decay_schedule(0.0, LR, T // 10, T, LR / 100)}),
        ("cosine_restarts(T/8, t_mul 2, m_mul 0.7) (Keras)",
         {"restarts": jaxlr.cosine_restarts(LR, T // 8, t_mul=2.0, m_mul=0.7)}, {}),
        ("step_decay(step T/4, factor 0.5) (torch StepLR)",
         {"StepLR": jaxlr.step_decay(LR, q, 0.5)}, {}),
        ("multistep_decay(T/2, 3T/4) (torch MultiStepLR)",
         {"MultiStepLR": jaxlr.multistep_decay(LR, [h, 3 * q], 0.1)}, {}),
        ("one_cycle(max 0.01) (torch OneCycleLR)",
         {"cos": jaxlr.one_cycle(T, LR),
          "linear": jaxlr.one_cycle(T, LR, anneal_strategy="linear"),
          "three_phase": jaxlr.one_cycle(T, LR, three_phase=True)}, {}),
        ("cyclic(0.001..0.01, T/8 up) (torch CyclicLR)",
         {mode: jaxlr.cyclic(LR / 10, LR, T // 8, mode=mode, gamma=0.998)
          for mode in ("triangular", "triangular2", "exp_range")}, {}),
        ("join([linear, constant], [T/5]) ",
         {"join": jaxlr.join([jaxlr.linear(0.0, LR, T // 5), jaxlr.constant(LR / 2)],
                             [T // 5])},
         {"optax": optax.join_schedules([optax.linear_schedule(0.0, LR, T // 5),
                                         optax.constant_schedule(LR / 2)], [T // 5])}),
        ("warmup(cosine_decay, T/5)",
         {"warmup": jaxlr.warmup(jaxlr.cosine_decay(LR, 0.8 * T), T // 5)}, {}),
        ("warmup_stable_decay(warmup T/10, decay T/5)",
         {shape: jaxlr.warmup_stable_decay(LR, T, T // 10, T // 5, decay_shape=shape)
          for shape in ("linear", "cosine", "1-sqrt")}, {}),
    ]


def traced_panel(steps: jnp.ndarray) -> dict[str, np.ndarray]:
    """Schedules whose parameters are traced: one vmapped program per family."""
    warm = jax.vmap(lambda w: jaxlr.warmup(jaxlr.cosine_decay(LR, T), w)(steps))(
        jnp.array([0, T // 10, T // 4]))
    cycle = jax.vmap(lambda p: jaxlr.one_cycle(T, LR, pct_start=p)(steps))(
        jnp.array([0.1, 0.5]))
    out = {f"warmup_steps={w}": np.asarray(c) for w, c in zip([0, T // 10, T // 4], warm)}
    out.update({f"one_cycle pct_start={p}": np.asarray(c) for p, c in zip([0.1, 0.5], cycle)})
    return out


def plateau_panel() -> tuple[np.ndarray, np.ndarray]:
    """LR of reduce_on_plateau(warmup(constant)) driven by a loss that plateaus at 1.0."""
    ctrl = jaxlr.reduce_on_plateau(jaxlr.warmup(jaxlr.constant(LR), T // 10), factor=0.5,
                                   patience=2, accumulate=T // 50)
    t = jnp.arange(T)
    loss = 1.0 + jnp.exp(-t / (T / 8)) + 0.02 * jax.random.normal(jax.random.key(0), (T,))

    def step(state, inp):
        i, value = inp
        state = ctrl.update(state, value, i)
        return state, ctrl.learning_rate(state, i)

    _, lrs = jax.lax.scan(step, ctrl.init(), (t, loss))
    return np.asarray(loss), np.asarray(lrs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(tempfile.mkdtemp()) / "schedules.png" if SMOKE else Path("runs/schedules.png")
    parser.add_argument("--out", type=Path, default=default, help="the PNG to write")
    out = parser.parse_args().out
    out.parent.mkdir(parents=True, exist_ok=True)

    steps = jnp.arange(T)
    panels = gallery()
    n = len(panels) + 2
    cols = 4
    rows = -(-n // cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols).ravel()
    print(f"{'schedule':50s} max |jaxlr - optax|")
    for ax, (title, ours, theirs) in zip(axes, panels):
        for i, (label, sched) in enumerate(ours.items()):
            ax.plot(steps, np.asarray(jax.jit(sched)(steps)), color=f"C{i}", lw=1.8,
                    label=label)
        for i, (label, sched) in enumerate(theirs.items()):
            ref = np.asarray(jax.vmap(sched)(steps))
            ax.plot(steps, ref, color="black", lw=1.0, ls=":", label=label if i == 0 else None)
            name, mine = list(ours.items())[i]
            diff = np.max(np.abs(np.asarray(jax.jit(mine)(steps)) - ref))
            print(f"{title.split('(')[0] + ' [' + name + ']':50s} {diff:.2e}")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    ax = axes[len(panels)]
    for i, (label, curve) in enumerate(traced_panel(steps).items()):
        ax.plot(steps, curve, color=f"C{i}", lw=1.5, label=label)
    ax.set_title("traced parameters: vmap, one compile", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[len(panels) + 1]
    loss, lrs = plateau_panel()
    ax.plot(steps, lrs, color="C3", lw=1.8, label="LR")
    ax.set_title("reduce_on_plateau(warmup(constant))", fontsize=9)
    twin = ax.twinx()
    twin.plot(steps, loss, color="0.6", lw=0.8, label="metric")
    twin.set_ylabel("metric", fontsize=8)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    print(f"plateau controller: {int(np.sum(np.diff(lrs) < 0))} cuts, final LR {lrs[-1]:.2e}")
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[:n]:
        ax.set_xlabel("step", fontsize=8)
    fig.suptitle(f"jaxlr schedules over {T} steps (dotted: optax)", fontsize=13)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
