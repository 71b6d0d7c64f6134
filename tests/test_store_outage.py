"""A study store that fails mid-run (a journal on NFS answering EIO or ESTALE for a while), on a
real run: the journal file's appends fail, the coordinator rides it out or stops resumable."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

import hpwf
from hpwf.backends.local import LocalBackend
from hpwf.cli import main
from tests import objectives


class Outage:
    """The journal's appends fail with ``err`` from the ``after``-th on, for ``seconds`` of wall time."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, after: int, seconds: float, err: int = errno.EIO) -> None:
        self.after, self.seconds, self.err = after, seconds, err
        self.calls = self.failed = 0
        self.began: float | None = None
        append = JournalFileBackend.append_logs

        def failing(backend: JournalFileBackend, logs: list[dict[str, Any]]) -> None:
            self.calls += 1
            if self.calls >= self.after:
                self.began = self.began or time.monotonic()
                if time.monotonic() - self.began < self.seconds:
                    self.failed += 1
                    raise OSError(self.err, os.strerror(self.err), "study.journal")
            append(backend, logs)
        monkeypatch.setattr(JournalFileBackend, "append_logs", failing)


def _search(**options: Any) -> hpwf.Search:
    return hpwf.Search(direction="minimize", sampler="random", seed=3, heartbeat=1.0, **options)


def _finished(run_dir: Path) -> list[Any]:
    return [t for t in hpwf.load_study(run_dir).trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def test_a_journal_failing_for_a_while_is_ridden_out_and_the_budget_is_exact(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    outage = Outage(monkeypatch, after=12, seconds=2.5)
    wf = hpwf.Workflow(objective=objectives.quadratic, search=_search(n_trials=10))
    result = hpwf.run(wf, backend=LocalBackend(workers=2), run_dir=tmp_path / "run", progress=False)
    assert 2 <= outage.failed <= 12, outage.failed  # tried again with backoff (0.5 s, 1 s, 2 s), not every turn
    assert result.summary["stop_reason"] is None and result.summary["fail"] == 0  # no trial failed for it
    trials = hpwf.load_study(tmp_path / "run").trials
    assert len(_finished(tmp_path / "run")) == 10 and not [t for t in trials if t.state == TrialState.RUNNING]


def test_a_journal_failing_past_the_grace_stops_resumable_and_resume_finishes_the_budget(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    wf_file = tmp_path / "wf.py"
    wf_file.write_text(
        "import hpwf, time\n"
        "search = hpwf.Search(direction='minimize', sampler='random', seed=3, n_trials=12, heartbeat=1.0,\n"
        "                     store_grace=1.5)\n"
        "def objective(trial):\n"
        "    time.sleep(0.2)\n"
        "    return trial.suggest_float('x', -1, 1) ** 2\n")
    outage = Outage(monkeypatch, after=15, seconds=3600.0, err=errno.ESTALE)
    code = main(["run", str(wf_file), "--run-dir", str(run_dir), "--workers", "2", "--quiet"])
    err = capsys.readouterr().err
    assert code == 130 and outage.failed >= 2, err  # the exit code of a resumable stop (as an interrupt's)
    stop = [line for line in err.splitlines() if line.startswith("[hpwf] stopped:")]
    assert len(stop) == 1 and "the store" in stop[0] and "study.journal" in stop[0] \
        and "Stale file handle" in stop[0] and "hpwf resume" in stop[0], err
    assert json.loads((run_dir / "summary.json").read_text())["stop_kind"] == "store failed"
    before = {t.number: t.value for t in _finished(run_dir)}
    assert len(before) < 12

    monkeypatch.undo()  # the store answers again
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    after = _finished(run_dir)
    trials = hpwf.load_study(run_dir).trials
    assert len(after) == 12 and not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(trials[n].value == v for n, v in before.items())  # nothing finished is trained again


def test_a_full_disk_is_no_transient_error_the_run_stops_at_once(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    Outage(monkeypatch, after=12, seconds=3600.0, err=errno.ENOSPC)
    wf = hpwf.Workflow(objective=objectives.quadratic, search=_search(n_trials=10))
    started = time.monotonic()
    with pytest.raises(hpwf.RunError, match=r"^cannot write .*study.journal: No space left on device; .*hpwf resume"):
        hpwf.run(wf, backend=LocalBackend(workers=2), run_dir=tmp_path / "run", progress=False)
    assert time.monotonic() - started < 60  # not the grace of 600 s


def test_store_grace_is_checked_as_every_option() -> None:
    with pytest.raises(hpwf.ConfigError, match="store_grace"):
        hpwf.Search(n_trials=1, store_grace=-1.0)
