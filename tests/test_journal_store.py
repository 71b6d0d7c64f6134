"""The run's journal at scale (issue 24): asks that do not walk the study, a replay snapshot kept
fresh while the run goes (so a killed coordinator's resume replays only the tail), and a
``hpwf status`` that imports neither Optuna nor the report's plotting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from hpwf.rundir._journal_store import RunJournal
from hpwf.rundir._run import journal_storage
from hpwf.rundir._snapshot import SnapshotKeeper, _valid_snapshot
from tests.bigjournal import make_run

ROOT = Path(__file__).resolve().parents[1]
NOOP = ROOT / "tests" / "workflows" / "noop_reports.py"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _waiting(path: Path) -> list[int]:
    """The WAITING trials' numbers by Optuna's own journal storage (a fresh full replay)."""
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return [t.number for t in storage.get_all_trials(0, deepcopy=False, states=(TrialState.WAITING,))]


def test_asks_on_the_run_journal_take_waiting_trials_as_optuna_does(tmp_path: Path) -> None:
    """Enqueued trials, from this process and from a second writer, before and after the
    lookup moved on, are asked in order with their params; the lookup answers as Optuna's."""
    path = tmp_path / "study.journal"
    study = optuna.create_study(study_name="s", storage=journal_storage(path))
    other = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(JournalFileBackend(str(path))))
    assert isinstance(study._storage, RunJournal)
    asked = []
    for round_ in range(6):
        for k in range(round_ % 3):
            (study if k % 2 else other).enqueue_trial({"x": round_ + k / 10})
        for _ in range(round_ % 3 + 2):
            mine = [t.number for t in study._storage.get_all_trials(0, deepcopy=False, states=(TrialState.WAITING,))]
            assert mine == _waiting(path)
            trial = study.ask()
            asked.append(trial.suggest_float("x", 0, 10))
            study.tell(trial, 1.0)
    enqueued = [round_ + k / 10 for round_ in range(6) for k in range(round_ % 3)]
    assert [x for x in asked if x in enqueued] == enqueued  # each once, in order
    assert _waiting(path) == []
    assert study._storage.get_all_trials(0, deepcopy=False) == \
        optuna.storages.JournalStorage(JournalFileBackend(str(path))).get_all_trials(0, deepcopy=False)


def test_the_keeper_writes_a_snapshot_in_a_child_once_the_journal_grew(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", 1_500)  # 12,001 records
    journal = run_dir / "study.journal"
    storage = journal_storage(journal)
    keeper = SnapshotKeeper(storage)
    keeper.tick()
    keeper.close()
    assert keeper.written == 1 and _valid_snapshot(journal) is not None
    assert storage.snapshot_records == 12_001
    keeper.tick()  # no growth since: no second snapshot
    assert keeper.child is None and keeper.written == 1
    opened = journal_storage(journal, read_only=True)
    assert 1 not in opened._backend._log_number_offset and opened.snapshot_records == 12_001
    assert SnapshotKeeper(optuna.storages.InMemoryStorage()).storage is None  # nothing to keep


def test_a_coordinator_killed_mid_run_leaves_a_snapshot_that_its_resume_uses(tmp_path: Path) -> None:
    """100,000 trials without a snapshot: the resumed coordinator writes one while it runs (the
    journal had grown since the last: a full replay); SIGKILLed after that, the next resume opens
    from it, replays only what came after, and goes on."""
    run_dir = make_run(tmp_path / "big", 100_000, workflow=NOOP)
    journal = run_dir / "study.journal"
    size = journal.stat().st_size
    log = tmp_path / "resume.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "hpwf", "resume", str(run_dir), "--n-trials", "1000000",
                                 "--workers", "1", "--quiet"], cwd=ROOT, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 400
        while _valid_snapshot(journal) is None or journal.stat().st_size <= size + 20_000:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the coordinator, its agents, a snapshot child
        proc.wait()
    snapshot = _valid_snapshot(journal)
    assert snapshot is not None and snapshot[0] > 800_000  # the whole replay at the time, not a stale one
    storage = journal_storage(journal, read_only=True)
    assert 1 not in storage._backend._log_number_offset  # opened from the snapshot, not from the start
    n = len(storage.get_all_trials(0, deepcopy=False))
    assert n > 100_000
    assert storage.get_all_trials(0, deepcopy=False) == \
        optuna.storages.JournalStorage(JournalFileBackend(str(journal))).get_all_trials(0, deepcopy=False)
    done = subprocess.run([sys.executable, "-m", "hpwf", "resume", str(run_dir), "--n-trials", str(n + 2),
                           "--workers", "1", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    trials = journal_storage(journal, read_only=True).get_all_trials(0, deepcopy=False)
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= n + 2


def test_status_imports_neither_optuna_nor_torch_nor_plotly(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", 50)
    code = ("import json, sys; from hpwf.cli import main; code = main(sys.argv[1:]); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('optuna', 'torch', 'plotly', 'numpy', 'pandas'))), file=sys.stderr); sys.exit(code)")
    for extra in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "-c", code, "status", str(run_dir), *extra], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stderr.splitlines()[-1]) == []
        assert "50 complete" in proc.stdout or json.loads(proc.stdout)["complete"] == 50


def test_the_scan_gives_the_best_params_as_optuna_for_every_kind_of_distribution(tmp_path: Path) -> None:
    from hpwf.rundir._journal_scan import scan

    path = tmp_path / "s.journal"
    study = optuna.create_study(study_name="s", storage=optuna.storages.JournalStorage(JournalFileBackend(str(path))))
    for i in range(12):
        trial = study.ask()
        trial.set_user_attr("hpwf:run", "r")
        value = trial.suggest_float("x", 0, 1) + trial.suggest_float("lr", 1e-5, 1, log=True)
        value += trial.suggest_float("q", 0, 1, step=0.25) + trial.suggest_int("n", 1, 9)
        value += trial.suggest_int("k", 1, 1024, log=True) / 1024
        choice = trial.suggest_categorical("c", [None, True, 3, 2.5, "adam"])
        study.tell(trial, value + (i if choice == "adam" else 0.0))
    scanned = scan(path, "s")
    assert scanned is not None
    best = study.best_trial
    assert scanned["best"] == (best.number, best.value, best.params)
    assert [type(v) for v in scanned["best"][2].values()] == [type(v) for v in best.params.values()]


def test_the_report_reads_a_journal_from_its_snapshot_where_one_covers_most_of_it(tmp_path: Path) -> None:
    from hpwf.rundir._run import read_study
    from hpwf.rundir._snapshot import save_snapshot

    run_dir = make_run(tmp_path / "run", 300, fail_every=7)
    journal = run_dir / "study.journal"
    full = optuna.storages.JournalStorage(JournalFileBackend(str(journal))).get_all_trials(0, deepcopy=False)
    assert not isinstance(read_study(run_dir)._storage, RunJournal)  # no snapshot: the journal decoded at once
    assert save_snapshot(journal_storage(journal), journal)
    study = read_study(run_dir)
    assert isinstance(study._storage, RunJournal) and 1 not in study._storage._backend._log_number_offset
    assert study.get_trials(deepcopy=False) == full
    data = journal.read_bytes()
    with journal.open("ab") as f:  # 600 more trials: the snapshot covers a third, and the journal is decoded at once
        f.write(data[data.index(b"\n") + 1:] * 2)
    assert not isinstance(read_study(run_dir)._storage, RunJournal)


def test_a_snapshot_child_that_hangs_is_killed_when_the_phase_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpwf.rundir import _snapshot

    run_dir = make_run(tmp_path / "run", 1_500)
    journal = run_dir / "study.journal"
    monkeypatch.setattr(_snapshot, "save_snapshot", lambda storage, path: time.sleep(600))  # (in the child)
    monkeypatch.setattr(SnapshotKeeper, "CLOSE_S", 1.0)
    keeper = SnapshotKeeper(journal_storage(journal))
    keeper.tick()
    child = keeper.child
    assert child is not None
    started = time.monotonic()
    keeper.close()
    assert keeper.child is None and keeper.written == 0 and time.monotonic() - started < 30
    assert _valid_snapshot(journal) is None
    try:
        os.kill(child, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive  # killed and reaped
