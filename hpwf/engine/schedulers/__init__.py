"""Schedulers decide, the coordinator acts: successive halving and Hyperband (`_halving`),
population-based training (`_pbt`), and PBT's replay (`_replay`). `make_scheduler` maps a
search's ``scheduler`` name to its builder. May import: `hpwf.workflow`, `hpwf.rundir`, `hpwf.wire`
and the engine's ledger.
"""

from __future__ import annotations

from typing import Any, Callable

import optuna

from hpwf.engine.schedulers import _halving, _pbt, _replay
from hpwf.engine.schedulers._halving import Decision, Scheduler
from hpwf.engine.schedulers._lineage import lineage, pbt_best_final, schedule
from hpwf.engine.schedulers._replay import ReplaySearch, replay_workflow

_BUILDERS: dict[str, Callable[[Any, optuna.Study], Any]] = {
    "asha-resume": _halving.from_search,
    "hyperband-resume": _halving.from_search,
    "pbt": _pbt.from_search,
    "replay": _replay.from_search,
}


def make_scheduler(search: Any, study: optuna.Study) -> Any:
    """The scheduler ``search.scheduler`` names for ``study`` (None for "none")."""
    build = _BUILDERS.get(search.scheduler)
    return build(search, study) if build else None

__all__ = ['Decision', 'ReplaySearch', 'Scheduler', 'lineage', 'pbt_best_final', 'make_scheduler', 'replay_workflow', 'schedule']
