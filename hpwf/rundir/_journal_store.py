"""Optuna's `JournalStorage`, with the one index a long run needs: where waiting trials may start.

Each ``study.ask()`` first looks for a WAITING (enqueued) trial to run
(``storage.get_all_trials(states=(WAITING,))``). Optuna's `InMemoryStorage` answers that from
the first trial that could still be waiting; its `JournalStorage` walks every trial of the study,
about 58 ms at 10^5 trials, O(n^2) over a run. `RunJournal` answers it as `InMemoryStorage`
does: trials before the first waiting one found are never looked at again, since a trial leaves
WAITING once and never returns to it (Optuna moves WAITING to RUNNING to finished), and new
trials, from this process or another writer, come after it. Everything else is Optuna's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Container

import optuna
from optuna.trial import FrozenTrial, TrialState


class RunJournal(optuna.storages.JournalStorage):
    """A `JournalStorage` whose waiting-trial lookup starts where the last one found none before.

    ``path``: the journal file (where its replay snapshot is kept); ``snapshot_records``: the
    records the replay had from a snapshot when opened (0: a full replay)."""

    def __init__(self, backend: Any, path: Path | None = None, snapshot_records: int = 0) -> None:
        super().__init__(backend)
        self.path, self.snapshot_records = path, snapshot_records
        self._waiting_from: dict[int, int] = {}  # study id -> position of its first trial that may be waiting

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._waiting_from = {}  # an unpickled storage replays afresh

    @property
    def records(self) -> int:
        """Journal records replayed so far."""
        return int(self._replay_result.log_number_read)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if states != (TrialState.WAITING,):
            return super().get_all_trials(study_id, deepcopy, states)
        with self._thread_lock:
            self._sync_with_backend()
            replay = self._replay_result
            replay.get_study(study_id)  # KeyError for an unknown study, as Optuna raises
            ids = replay._study_id_to_trial_ids[study_id]
            start = self._waiting_from.get(study_id, 0)
            found: list[FrozenTrial] = []
            for position in range(start, len(ids)):
                trial = replay.get_trial(ids[position])
                if trial.state == TrialState.WAITING:
                    if not found:
                        self._waiting_from[study_id] = position
                    found.append(trial)
            if not found:
                self._waiting_from[study_id] = len(ids)
            return copy.deepcopy(found) if deepcopy else found
