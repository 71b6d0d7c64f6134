"""What a user writes and an objective sees: loading a workflow file (`_loading`), `Search`
(`_search`, its number checks in `_checks`), `Ensemble` and `Member` (`_ensemble`), `Trial`
(`_trial`) with its metrics file (`_metrics`) and pause checkpoint (`_pause`), predictions files
(`_predictions`), the launcher's rank table and a trial's `Group` (`_topology`) and the Horovod
helpers (`parallel`). Never imports Optuna or numpy on an agent. May import: `hpwf.wire`,
`hpwf.rundir`.
"""

from __future__ import annotations

from hpwf.workflow import _predictions as predictions
from hpwf.workflow._ensemble import DEFAULT_SIZE, ENSEMBLE_DIR, Ensemble, Member, MemberObjective
from hpwf.workflow._ensemble_options import (
    CALIBRATE_OPTIONS, CLASSIFICATION, REGRESSION, SELECT_OPTIONS, methods, options)
from hpwf.workflow._loading import Workflow, load
from hpwf.workflow._metrics import MetricsFile
from hpwf.workflow._pause import Restored, TrialPaused
from hpwf.workflow._search import Search, checked_elsewhere
from hpwf.workflow._topology import LAUNCHERS, Group, placement
from hpwf.workflow._trial import Trial, is_pruned

__all__ = ['CALIBRATE_OPTIONS', 'CLASSIFICATION', 'DEFAULT_SIZE', 'ENSEMBLE_DIR', 'Ensemble', 'Group', 'LAUNCHERS', 'Member', 'MemberObjective', 'MetricsFile', 'REGRESSION', 'Restored', 'SELECT_OPTIONS', 'Search', 'Trial', 'TrialPaused', 'Workflow', 'checked_elsewhere', 'is_pruned', 'load', 'methods', 'options', 'placement', 'predictions']
