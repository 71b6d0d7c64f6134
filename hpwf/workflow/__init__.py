"""What a user writes and an objective sees: loading a workflow file (`_loading`), `Search`
(`_search`), `Trial` (`_trial`), predictions files (`_predictions`) and the Horovod helpers
(`parallel`). Never imports Optuna on an agent. May import: `hpwf.wire`, `hpwf.rundir`.
"""

from __future__ import annotations

from hpwf.workflow import _predictions as predictions
from hpwf.workflow._ensemble import DEFAULT_SIZE, ENSEMBLE_DIR, Ensemble, Member, MemberObjective
from hpwf.workflow._loading import Workflow, load
from hpwf.workflow._search import Search, checked_elsewhere
from hpwf.workflow._topology import LAUNCHERS, placement
from hpwf.workflow._trial import Group, Restored, Trial, TrialPaused, is_pruned

__all__ = ['DEFAULT_SIZE', 'ENSEMBLE_DIR', 'Ensemble', 'Group', 'LAUNCHERS', 'Member', 'MemberObjective', 'Restored', 'Search', 'Trial', 'TrialPaused', 'Workflow', 'checked_elsewhere', 'is_pruned', 'load', 'placement', 'predictions']
