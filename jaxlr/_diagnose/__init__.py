"""Pure functions over loss curves: labels, evidence and advice."""

from jaxlr._diagnose.diagnose import Diagnosis, diagnose, diagnose_sweep

__all__ = ["Diagnosis", "diagnose", "diagnose_sweep"]
