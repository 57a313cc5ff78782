"""Pure functions over loss curves: labels, evidence and advice; the LR sensitivity of a sweep."""

from jaxlr._diagnose.diagnose import Diagnosis, diagnose, diagnose_sweep
from jaxlr._diagnose.sensitivity import Sensitivity, lr_sensitivity

__all__ = ["Diagnosis", "Sensitivity", "diagnose", "diagnose_sweep", "lr_sensitivity"]
