"""hpwf: hyperparameter search and ensemble workflows on HPC clusters.

A workflow file declares ``search = hpwf.Search(...)`` and ``def objective(trial)``; ``hpwf run``
drives it with Optuna on a local Dask cluster (default), under ``mpirun``, or on Slurm.
"""

from __future__ import annotations

from optuna.exceptions import TrialPruned

from hpwf.api import RunResult, ensemble, resume, run, status
from hpwf.ensemble import Ensemble, Member
from hpwf.errors import ConfigError, RunError
from hpwf.rundir import load_study
from hpwf.search import Search
from hpwf.trial import Group, Restored, Trial, TrialPaused
from hpwf.engine.pbt import schedule as pbt_schedule
from hpwf.workflow import Workflow, load

# Importing the submodule hpwf.ensemble above bound its name on the package: the function wins.
from hpwf.api import ensemble  # noqa: E402,F811  isort: skip

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "Ensemble", "Group", "Member", "ensemble", "RunError", "RunResult", "Search", "Trial", "TrialPruned", "Workflow",
    "Restored", "TrialPaused", "load", "load_study", "pbt_schedule", "resume", "run", "status",
]
