"""The engine: many members trained as one compiled program (see README.md).

Other folders import from this package only; what they may use is listed here.
"""

from jaxlr._sweep.api import sweep
from jaxlr._sweep.checkpoint import latest as latest_checkpoint
from jaxlr._sweep.compiled import clear_caches
from jaxlr._sweep.grid import Grid, grid
from jaxlr._sweep.halving import SuccessiveHalving, successive_halving
from jaxlr._sweep.member import DivergenceRule
from jaxlr._sweep.policies import ChunkDone, Policy
from jaxlr._sweep.population import PopulationBased, population_based
from jaxlr._sweep.restore import final_state
from jaxlr._sweep.result import Best, Segment, SweepResult
from jaxlr._sweep.task import Task

__all__ = ["DivergenceRule", "sweep", "Grid", "grid", "SuccessiveHalving",
           "successive_halving", "PopulationBased", "population_based", "Best", "Segment",
           "SweepResult", "Task", "final_state", "clear_caches",
           "latest_checkpoint", "Policy", "ChunkDone"]
