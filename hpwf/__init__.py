"""hpwf: hyperparameter search and ensemble workflows on HPC clusters.

A workflow file declares ``search = hpwf.Search(...)`` and ``def objective(trial)``; ``hpwf run``
drives it with Optuna on a local Dask cluster (default), under ``mpirun``, or on Slurm.

Names are imported when first used (PEP 562), so an agent that loads a workflow file imports
neither Optuna nor numpy until a trial needs them.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.exceptions import TrialPruned

    from hpwf.api import RunResult, ensemble, replay, resume, run, status
    from hpwf.engine.schedulers import schedule as pbt_schedule
    from hpwf.errors import ConfigError, RunError
    from hpwf.rundir import load_study
    from hpwf.workflow import Ensemble, Group, Member, Restored, Search, Trial, TrialPaused, Workflow, load

__version__ = "0.1.0"

_WHERE = {  # public name -> (module, name there)
    "TrialPruned": ("optuna.exceptions", "TrialPruned"),
    "RunResult": ("hpwf.api", "RunResult"), "ensemble": ("hpwf.api", "ensemble"), "resume": ("hpwf.api", "resume"),
    "run": ("hpwf.api", "run"), "status": ("hpwf.api", "status"),
    "pbt_schedule": ("hpwf.engine.schedulers", "schedule"), "replay": ("hpwf.api", "replay"),
    "Ensemble": ("hpwf.workflow", "Ensemble"), "Member": ("hpwf.workflow", "Member"),
    "ConfigError": ("hpwf.errors", "ConfigError"), "RunError": ("hpwf.errors", "RunError"),
    "load_study": ("hpwf.rundir", "load_study"),
    "Search": ("hpwf.workflow", "Search"),
    "Group": ("hpwf.workflow", "Group"), "Restored": ("hpwf.workflow", "Restored"), "Trial": ("hpwf.workflow", "Trial"),
    "TrialPaused": ("hpwf.workflow", "TrialPaused"),
    "Workflow": ("hpwf.workflow", "Workflow"), "load": ("hpwf.workflow", "load"),
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:  # a submodule, e.g. ``hpwf.workflow.parallel``
        if name.startswith("__") or importlib.util.find_spec(f"hpwf.{name}") is None:
            raise AttributeError(f"module 'hpwf' has no attribute {name!r}")
        return importlib.import_module(f"hpwf.{name}")
    module, attr = _WHERE[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
