"""The run directory at scale: no file for a trial that writes nothing, sharded trial folders,
durable results in per-agent logs, runs of the old layout resuming, status without Optuna's
replay nor a lock (issue 24)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import hpwf
from hpwf.rundir._run import RunRecord, journal_storage, load_study
from hpwf.rundir._trialdir import durable_results, read_result, trial_folder, trial_folders
from tests.bigjournal import make_run

ROOT = Path(__file__).resolve().parents[1]
NOOP = ROOT / "tests" / "workflows" / "noop_reports.py"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpwf", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*"))


def test_trial_folders_are_sharded_by_thousands(tmp_path: Path) -> None:
    assert trial_folder(tmp_path, 7) == tmp_path / "trials" / "000" / "00007"
    assert trial_folder(tmp_path, 12345) == tmp_path / "trials" / "012" / "12345"
    assert trial_folder(tmp_path, 1_234_567) == tmp_path / "trials" / "1234" / "1234567"
    assert not (tmp_path / "trials").exists()  # naming a folder makes nothing


def test_a_trial_that_writes_nothing_creates_no_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = cli("run", str(NOOP), "--workers", "2", "--run-dir", str(run_dir), "--quiet",
               env={"NOOP_TRIALS": "12", "NOOP_PRINT": "5"})
    assert proc.returncode == 0, proc.stderr
    study = load_study(run_dir)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 12
    assert all(len(t.intermediate_values) == 3 for t in study.trials)
    # only trial 5 wrote something (it printed): it alone has a folder, with its log and metrics
    assert trial_folders(run_dir) == [run_dir / "trials" / "000" / "00005"]
    folder = trial_folder(run_dir, 5)
    assert (folder / "log.txt").read_text() == "trial 5 says hello\n"
    assert len((folder / "metrics.csv").read_text().splitlines()) == 1 + 3
    assert json.loads((folder / "params.json").read_text()) == study.trials[5].params
    # every result was durable before it was told: one log per agent process, one line per trial
    logs = sorted((run_dir / "results").glob("*/*.jsonl"))
    assert 1 <= len(logs) <= 2
    results = durable_results(run_dir)
    assert sorted(results) == list(range(12))
    for t in study.trials:
        assert results[t.number]["state"] == "COMPLETE" and results[t.number]["values"] == [t.value]
        assert results[t.number]["params"] == t.params
        if t.number != 5:  # its reports' times, which no metrics.csv holds, go with the result
            assert [(r["step"], r["value"]) for r in results[t.number]["metrics"]] == sorted(t.intermediate_values.items())
    created = [p for p in files_under(run_dir) if p.parent != run_dir]
    assert len([p for p in created if "trials" not in p.parts]) <= 2 * len(logs)  # the logs and their host folder


def _crash_left_running(run_dir: Path, number: int, value: float, where: str) -> None:
    """As if the coordinator died after trial ``number``'s agent made its result durable, before
    the coordinator told the study: the trial stays RUNNING in the store."""
    record = RunRecord.load(run_dir)
    study = load_study(run_dir)
    trial = study.ask()
    trial.set_user_attr("hpwf:run", record.options["run_id"])
    x = trial.suggest_float("x", 0, 1)
    assert trial.number == number
    result = {"number": number, "state": "COMPLETE", "values": [value], "params": {"x": x, "y": 0.5},
              "duration_s": 0.0, "distributions": {
                  "x": optuna.distributions.distribution_to_json(optuna.distributions.FloatDistribution(0, 1)),
                  "y": optuna.distributions.distribution_to_json(optuna.distributions.FloatDistribution(0, 1))}}
    if where == "old result.json":
        folder = run_dir / "trials" / f"{number:05d}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(result))
    else:
        log = run_dir / "results" / "somehost" / "4242.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(json.dumps(result) + "\n" + '{"number": 99, "sta')  # and a torn line after it


def _to_old_layout(run_dir: Path) -> None:
    """Rewrite a run directory the way hpwf wrote it before: trials/NNNNN with result.json, no logs."""
    for folder in trial_folders(run_dir):
        folder.rename(run_dir / "trials" / folder.name)
    for shard in (run_dir / "trials").iterdir():
        if len(shard.name) == 3:
            shard.rmdir()
    for number, record in durable_results(run_dir).items():
        folder = run_dir / "trials" / f"{number:05d}"
        folder.mkdir(exist_ok=True)
        (folder / "params.json").write_text(json.dumps(record["params"]))
        (folder / "result.json").write_text(json.dumps(record))
        (folder / "log.txt").write_text("")
    for log in (run_dir / "results").glob("*/*.jsonl"):
        log.unlink()


@pytest.mark.parametrize("where", ["old result.json", "results log"])
def test_a_durable_result_is_kept_on_resume_in_either_layout(where: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = cli("run", str(NOOP), "--workers", "1", "--run-dir", str(run_dir), "--quiet",
               env={"NOOP_TRIALS": "3", "NOOP_PRINT": "1"})
    assert proc.returncode == 0, proc.stderr
    if where == "old result.json":
        _to_old_layout(run_dir)
    _crash_left_running(run_dir, 3, 0.125, where)
    assert read_result(run_dir, 3)["values"] == [0.125]  # type: ignore[index]
    assert hpwf.status(run_dir)["running"] == 1
    proc = cli("resume", str(run_dir), "--n-trials", "6", "--quiet", env={"NOOP_PRINT": "1,4"})
    assert proc.returncode == 0, proc.stderr
    study = load_study(run_dir)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert study.trials[3].value == 0.125 and study.trials[3].params["y"] == 0.5  # told, not trained again
    assert "its result, saved before the coordinator stopped, is kept" in proc.stderr
    if where == "old result.json":  # old folders stay where they were; new ones are sharded
        assert trial_folder(run_dir, 1) == run_dir / "trials" / "00001"
        assert (trial_folder(run_dir, 1) / "log.txt").exists()
    assert trial_folder(run_dir, 4) == run_dir / "trials" / "000" / "00004"
    assert (trial_folder(run_dir, 4) / "log.txt").read_text() == "trial 4 says hello\n"
    info = hpwf.status(run_dir)
    assert (info["complete"], info["running"]) == (6, 0)


def _status_by_optuna(run_dir: Path) -> dict[str, object]:
    study = load_study(run_dir)
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial
    return {"complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "fail": sum(t.state == TrialState.FAIL for t in trials),
            "best_trial": best.number, "best_value": best.value, "best_params": best.params}


def test_status_of_a_100000_trial_run_reads_what_optuna_reads_without_the_lock(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "big", 100_000, fail_every=97)
    lock = run_dir / "study.journal.lock"
    lock.write_text("")  # a writer holds the journal's lock (Optuna's open lock: the file exists)
    proc = cli("status", str(run_dir), "--json", timeout=120)  # (it waited for the lock forever before)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    lock.unlink()
    expected = _status_by_optuna(run_dir)
    assert {k: info[k] for k in expected} == expected
    assert (info["running"], info["waiting"], info["n_trials"]) == (0, 0, 100_000)


def test_the_journal_scan_counts_as_optuna_does(tmp_path: Path) -> None:
    """Every state, enqueued trials, a second study in the same file, a re-created name, maximize."""
    from optuna.storages.journal import JournalFileBackend

    from hpwf.rundir._journal_scan import scan

    path = tmp_path / "s.journal"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    other = optuna.create_study(study_name="other", storage=storage, direction="minimize")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    optuna.create_study(study_name="s", storage=storage, direction="maximize", load_if_exists=True)
    for i in range(12):
        for target in (study, other):
            trial = target.ask()
            x = trial.suggest_categorical("c", ["a", "b"]) if i % 2 else trial.suggest_float("x", -1, 1)
            value = float(i % 5) if isinstance(x, str) else x
            if i % 4 == 3:
                target.tell(trial, state=TrialState.PRUNED)
            elif i % 6 == 5:
                target.tell(trial, state=TrialState.FAIL)
            elif i != 8:
                target.tell(trial, value)  # trial 8 stays RUNNING
    study.enqueue_trial({"x": 0.5})
    found = scan(path, "s")
    assert found is not None
    trials = optuna.load_study(study_name="s", storage=storage).get_trials(deepcopy=False)
    by_state = {name: sum(t.state == state for t in trials) for name, state in
                (("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED), ("fail", TrialState.FAIL),
                 ("running", TrialState.RUNNING), ("waiting", TrialState.WAITING))}
    assert found["counts"] == {**by_state, "paused": 0}
    best = study.best_trial
    assert found["best"] == (best.number, best.value, best.params)
    assert found["running"] == [t.number for t in trials if t.state == TrialState.RUNNING]


def test_the_journal_read_gives_the_trials_optuna_gives(tmp_path: Path) -> None:
    """Every field of every trial, as Optuna's replay makes them (states, enqueued, a finished
    trial's later records ignored, a re-created name, a second study, NaN reports, categorical)."""
    from optuna.storages.journal import JournalFileBackend

    from hpwf.rundir._journal_read import read_study

    path = tmp_path / "s.journal"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    other = optuna.create_study(study_name="other", storage=storage, sampler=optuna.samplers.RandomSampler(0))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(1))
    optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"], load_if_exists=True)
    study.set_user_attr("note", {"a": 1})
    study.enqueue_trial({"x": 0.25}, user_attrs={"hpwf:retry_of": 0})
    for i in range(14):
        for target in (study, other):
            trial = target.ask()
            x = trial.suggest_float("x", -1, 1)
            c = trial.suggest_categorical("c", ["a", None, 3]) if i % 2 else trial.suggest_int("n", 1, 9, log=True)
            trial.storage.set_trial_intermediate_value(trial._trial_id, 0, float("nan") if i == 3 else x * 2)
            trial.storage.set_trial_intermediate_value(trial._trial_id, 5, x)
            trial.set_user_attr("k", [i, str(c)])
            trial.storage.set_trial_system_attr(trial._trial_id, "sys", i)
            if i % 4 == 3:
                target.tell(trial, state=TrialState.PRUNED)
            elif i % 6 == 5:
                target.tell(trial, state=TrialState.FAIL)
            elif i != 8:
                target.tell(trial, [x, -x] if target is study else x)
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": optuna.distributions.FloatDistribution(-1, 1)},
                                              values=[0.5, 0.1], user_attrs={"added": True}))
    with path.open("a") as f:  # another process's record on a finished trial: Optuna ignores it
        f.write(json.dumps({"op_code": 8, "worker_id": "late", "trial_id": 1, "user_attr": {"late": 1}},
                           separators=(",", ":")) + "\n")
    read = read_study(path, "s")
    assert read is not None
    expected = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(JournalFileBackend(str(path))))
    assert read.directions == expected.directions and read.user_attrs == expected.user_attrs
    mine, theirs = read.get_trials(deepcopy=False), expected.get_trials(deepcopy=False)
    assert len(mine) == len(theirs) == 15 and mine[8].state == TrialState.RUNNING
    for a, b in zip(mine, theirs):
        a_iv = {k: "nan" if v != v else v for k, v in a.intermediate_values.items()}
        b_iv = {k: "nan" if v != v else v for k, v in b.intermediate_values.items()}
        assert (a.number, a.state, a.values, a.params, a.distributions, a.user_attrs, a.system_attrs, a_iv,
                a.datetime_start, a.datetime_complete) == \
               (b.number, b.state, b.values, b.params, b.distributions, b.user_attrs, b.system_attrs, b_iv,
                b.datetime_start, b.datetime_complete), a.number
    assert [t.number for t in read.best_trials] == [t.number for t in expected.best_trials]


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_the_one_pass_scan_of_a_live_journal_equals_the_general_path_and_optuna(direction: str, tmp_path: Path) -> None:
    """One study as a run writes it (hpwf's run id on every trial, a study attribute, running,
    pruned, failed and complete trials, ties, a record being written): the one-pass scan answers,
    and answers as the general path and Optuna do."""
    from optuna.storages.journal import JournalFileBackend

    from hpwf.rundir import _journal_scan

    path = tmp_path / "s.journal"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="s", storage=storage, direction=direction)
    study.set_user_attr("hpwf:anything", 1)
    for i in range(40):
        trial = study.ask()
        trial.set_user_attr("hpwf:run", "r1")
        x = trial.suggest_float("x", -1, 1)
        trial.report(x, 0)
        if i % 7 == 3:
            study.tell(trial, state=TrialState.PRUNED)
        elif i % 9 == 4:
            study.tell(trial, state=TrialState.FAIL)
        elif i % 11 != 5:  # 5, 16, 27 stay RUNNING
            study.tell(trial, float(i % 6) if i % 2 else x)
    with path.open("ab") as f:
        f.write(b'{"op_code":6,"worker_id":"w","trial_id":5,"state":1,"val')  # being written: not read
    data = bytearray(b"\n" + path.read_bytes())
    end = data.rfind(b"\n") + 1
    quick = _journal_scan._one_study_plain(data, end, "s")
    assert quick is not None  # the common kind of journal takes the one pass
    assert _journal_scan.scan(path, "s") == quick
    general = pytest.MonkeyPatch()
    general.setattr(_journal_scan, "_one_study_plain", lambda *args: None)
    try:
        assert _journal_scan.scan(path, "s") == quick
    finally:
        general.undo()
    trials = study.get_trials(deepcopy=False)
    assert quick["running"] == [t.number for t in trials if t.state == TrialState.RUNNING] == [5, 16, 27]
    assert quick["counts"]["pruned"] == sum(t.state == TrialState.PRUNED for t in trials)
    assert quick["counts"]["fail"] == sum(t.state == TrialState.FAIL for t in trials)
    best = study.best_trial
    assert quick["best"] == (best.number, best.value, best.params)
    assert _journal_scan._one_study_plain(data, end, "other") is None


def test_resume_of_a_100000_trial_run_places_new_trials_and_leaves_a_snapshot(tmp_path: Path) -> None:
    """A resume of 100,000 finished trials (no snapshot yet: Optuna's full replay) runs its new
    trials and leaves a snapshot of the whole journal, from which the next open starts."""
    from hpwf.rundir._snapshot import _valid_snapshot

    run_dir = make_run(tmp_path / "big", 100_000, workflow=NOOP)
    proc = cli("resume", str(run_dir), "--n-trials", "100002", "--workers", "1", "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr
    journal = run_dir / "study.journal"
    snapshot = _valid_snapshot(journal)
    assert snapshot is not None and snapshot[1] == journal.stat().st_size  # it covers the whole journal
    storage = journal_storage(journal, read_only=True)
    assert 1 not in storage._backend._log_number_offset  # opened from the snapshot
    trials = storage.get_all_trials(0, deepcopy=False)
    new = trials[100_000:]
    assert len(trials) == 100_002 and all(t.state == TrialState.COMPLETE for t in new)
    assert all(t.user_attrs["hpwf:run"] == "big" and set(t.params) == {"x", "y"} and len(t.intermediate_values) == 3
               for t in new)
    info = json.loads(cli("status", str(run_dir), "--json").stdout)
    assert (info["complete"], info["n_trials"]) == (100_002, 100_002)


def test_the_durable_results_index_reads_only_what_the_logs_gained(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed trial's check for a durable result (every failure asks) parses the new lines, not
    the whole log again: 5,000 failures of a 100,000-trial run were 5,000 reads of its log."""
    from hpwf.rundir._trialdir import write_result

    for number in range(500):
        write_result(tmp_path, number, "COMPLETE", [float(number)], {"x": 1.0}, 0.1)
    assert len(durable_results(tmp_path)) == 500
    parsed: list[bytes] = []
    loads = json.loads
    monkeypatch.setattr(json, "loads", lambda text, **kw: (parsed.append(text), loads(text, **kw))[1])
    write_result(tmp_path, 500, "FAIL", None, {"x": 1.0}, 0.1)
    assert read_result(tmp_path, 500)["state"] == "FAIL" and len(parsed) == 1
    log = next((tmp_path / "results").glob("*/*.jsonl"))
    with open(log, "ab") as f:  # a line still being written is not a record yet
        f.write(b'{"number": 501, "state": "COMPLETE", "values": [1.0], "at": 9e9')
    assert 501 not in durable_results(tmp_path)
    with open(log, "ab") as f:
        f.write(b"}\n")
    assert durable_results(tmp_path)[501]["state"] == "COMPLETE" and len(parsed) == 2
