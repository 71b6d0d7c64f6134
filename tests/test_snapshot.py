"""The journal's replay snapshot (`hpwf.rundir._snapshot`): a journal opened from it holds what
a full replay holds and goes on writing to the same file; a snapshot that no longer describes
the journal, or that someone else could have written, is not used."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from hpwf.rundir._run import journal_storage
from hpwf.rundir._snapshot import save_snapshot, snapshot_path

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _fill(study: optuna.Study, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        trial.report(x, 0)
        trial.set_user_attr("hpwf:run", "r")
        if i % 5 == 4:
            study.tell(trial, state=TrialState.PRUNED)
        elif i % 7 != 6:  # 6, 13, ... stay RUNNING
            study.tell(trial, x)


def _replayed(path: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials of a full replay by Optuna alone."""
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=None))
    return storage.get_all_trials(0, deepcopy=False)


def _made(tmp_path: Path) -> Path:
    path = tmp_path / "study.journal"
    study = optuna.create_study(study_name="s", storage=journal_storage(path))
    _fill(study, 30)
    assert save_snapshot(study._storage, path)
    _fill(optuna.load_study(study_name="s", storage=journal_storage(path)), 6, start=30)  # after the snapshot
    return path


def test_a_journal_opened_from_its_snapshot_holds_the_full_replay_and_goes_on(tmp_path: Path) -> None:
    path = _made(tmp_path)
    storage = journal_storage(path)
    assert 1 not in storage._backend._log_number_offset  # the records the snapshot covers were not read
    assert storage.get_all_trials(0, deepcopy=False) == _replayed(path)
    study = optuna.load_study(study_name="s", storage=storage)
    _fill(study, 4, start=36)  # writes go to the journal: a full replay by Optuna sees them
    trials = _replayed(path)
    assert len(trials) == 40 and storage.get_all_trials(0, deepcopy=False) == trials
    assert journal_storage(path, read_only=True).get_all_trials(0, deepcopy=False) == trials


def test_a_snapshot_that_no_longer_describes_the_journal_is_not_used(tmp_path: Path) -> None:
    path = _made(tmp_path)
    kept = snapshot_path(path).read_bytes()
    path.unlink()  # the journal written afresh (another study of the same length and more)
    study = optuna.create_study(study_name="t", storage=journal_storage(path), direction="maximize")
    _fill(study, 40)
    snapshot_path(path).write_bytes(kept)
    storage = journal_storage(path)
    assert 1 in storage._backend._log_number_offset  # read from the start
    assert storage.get_all_trials(0, deepcopy=False) == _replayed(path)
    assert storage.get_study_name_from_id(0) == "t"


def test_a_snapshot_others_could_write_or_that_is_broken_is_not_used(tmp_path: Path) -> None:
    path = _made(tmp_path)
    expected = _replayed(path)
    os.chmod(snapshot_path(path), 0o620)  # group-writable: a pickle is code, so not read
    storage = journal_storage(path, read_only=True)
    assert 1 in storage._backend._log_number_offset
    assert storage.get_all_trials(0, deepcopy=False) == expected
    os.chmod(snapshot_path(path), 0o600)
    header, _, _ = snapshot_path(path).read_bytes().partition(b"\n")
    snapshot_path(path).write_bytes(header + b"\nnot a pickle")
    storage = journal_storage(path, read_only=True)
    assert storage.get_all_trials(0, deepcopy=False) == expected
