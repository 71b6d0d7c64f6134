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

    from hpwf.api import RunResult, ensemble, resume, run, status
    from hpwf.engine.pbt import schedule as pbt_schedule
    from hpwf.pbt_replay import replay
    from hpwf.ensembles import Ensemble, Member
    from hpwf.errors import ConfigError, RunError
    from hpwf.rundir import load_study
    from hpwf.search import Search
    from hpwf.trial import Group, Restored, Trial, TrialPaused
    from hpwf.workflow import Workflow, load

__version__ = "0.1.0"

_WHERE = {  # public name -> (module, name there)
    "TrialPruned": ("optuna.exceptions", "TrialPruned"),
    "RunResult": ("hpwf.api", "RunResult"), "ensemble": ("hpwf.api", "ensemble"), "resume": ("hpwf.api", "resume"),
    "run": ("hpwf.api", "run"), "status": ("hpwf.api", "status"),
    "pbt_schedule": ("hpwf.engine.pbt", "schedule"), "replay": ("hpwf.pbt_replay", "replay"),
    "Ensemble": ("hpwf.ensembles", "Ensemble"), "Member": ("hpwf.ensembles", "Member"),
    "ConfigError": ("hpwf.errors", "ConfigError"), "RunError": ("hpwf.errors", "RunError"),
    "load_study": ("hpwf.rundir", "load_study"),
    "Search": ("hpwf.search", "Search"),
    "Group": ("hpwf.trial", "Group"), "Restored": ("hpwf.trial", "Restored"), "Trial": ("hpwf.trial", "Trial"),
    "TrialPaused": ("hpwf.trial", "TrialPaused"),
    "Workflow": ("hpwf.workflow", "Workflow"), "load": ("hpwf.workflow", "load"),
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:  # a submodule, e.g. ``hpwf.parallel``
        if name.startswith("__") or importlib.util.find_spec(f"hpwf.{name}") is None:
            raise AttributeError(f"module 'hpwf' has no attribute {name!r}")
        return importlib.import_module(f"hpwf.{name}")
    module, attr = _WHERE[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
