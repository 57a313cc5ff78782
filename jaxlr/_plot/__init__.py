"""matplotlib figures of sweeps and LR range tests (the optional ``jaxlr[plot]`` extra)."""

from jaxlr._plot.plot import plot_finder, plot_sweep

__all__ = ["plot_finder", "plot_sweep"]
