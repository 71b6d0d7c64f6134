"""``hpwf replay``: one member trained from scratch along the schedule PBT found (real local backend).

The PBT run (tests/workflows/pbt_replay.py: 4 members, 3 generations of 2 steps, a deterministic
objective) runs once for the module; the replay must use exactly the schedule's params from
exactly its start steps and, the objective being deterministic, end on the same value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

import hpwf
from hpwf.engine.schedulers._pbt import EXPLOITED, GENERATION, MEMBER, PARENT
from hpwf.engine.schedulers._lineage import lineage, schedule
from hpwf.rundir import RESTORE_ATTR
from hpwf.pbt_replay import replay
from hpwf.rundir._run import RunRecord, open_storage

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "tests" / "workflows" / "pbt_replay.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def hpwf_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpwf", *args], capture_output=True, text=True, timeout=400,
                          cwd=ROOT, env=ENV)


@pytest.fixture(scope="module")
def pbt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("pbt") / "run"
    proc = hpwf_cli("run", str(WORKFLOW), "--workers", "2", "--run-dir", str(run_dir), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_the_replay_follows_the_best_final_schedule_and_ends_on_its_value(pbt_run: Path, tmp_path: Path) -> None:
    source = hpwf.load_study(pbt_run)
    best = lineage(source)["best_final"]
    plan = schedule(source, best)
    assert [e["generation"] for e in plan] == [0, 1, 2] and [e["start_step"] for e in plan] == [0, 2, 4]
    run_dir = tmp_path / "replay"
    proc = hpwf_cli("replay", str(pbt_run), "--run-dir", str(run_dir), "--workers", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]

    segments = sorted(hpwf.load_study(run_dir).trials, key=lambda t: t.number)
    assert len(segments) == len(plan) and all(t.state == TrialState.COMPLETE for t in segments)
    for k, (segment, entry) in enumerate(zip(segments, plan)):
        assert segment.params == entry["params"], k  # exactly the schedule's params
        assert min(segment.intermediate_values) == entry["start_step"], k  # from exactly its start step
        original = source.trials[entry["trial"]]
        assert segment.intermediate_values == original.intermediate_values, k  # the same training, step by step
        attrs = segment.user_attrs
        assert (attrs[MEMBER], attrs[GENERATION], bool(attrs.get(EXPLOITED))) == (0, k, False)
        if k:  # its parent: the replay's own previous segment, restored at the schedule's step
            assert attrs[PARENT] == segments[k - 1].number
            assert attrs[RESTORE_ATTR] == {"from": segments[k - 1].number, "step": entry["start_step"]}
        else:
            assert PARENT not in attrs and RESTORE_ATTR not in attrs
    assert segments[-1].value == source.trials[best].value == source.best_value
    assert json.loads(hpwf_cli("status", "--json", str(run_dir)).stdout)["pbt"]["best_schedule"][-1]["trial"] == \
        segments[-1].number


def test_a_replay_of_an_earlier_segment_stops_where_it_stopped(pbt_run: Path, tmp_path: Path) -> None:
    source = hpwf.load_study(pbt_run)
    middle = next(t for t in source.trials if t.user_attrs.get(GENERATION) == 1 and t.state == TrialState.COMPLETE)
    result = replay(pbt_run, tmp_path / "replay", trial=middle.number, workers=1, progress=False)
    segments = sorted(result.study.trials, key=lambda t: t.number)
    assert [t.params for t in segments] == [e["params"] for e in schedule(source, middle.number)]
    assert segments[-1].intermediate_values == middle.intermediate_values  # paused at step 4 as it did
    assert segments[-1].value == middle.value


def no_pbt_run(tmp_path: Path) -> Path:
    """A run dir whose workflow file searches without PBT (its study empty: nothing trains here)."""
    import optuna

    run_dir = tmp_path / "plain"
    run_dir.mkdir(mode=0o700)
    RunRecord(study_name="toy", storage=None, workflow=str(ROOT / "tests" / "workflows" / "toy.py")).save(run_dir)
    optuna.create_study(study_name="toy", storage=open_storage(None, run_dir))
    return run_dir


@pytest.mark.parametrize("case, why", [
    ("no pbt", "is not scheduler='pbt': nothing to replay"),
    ("not a segment", "--trial 999: not a PBT segment"),
    ("no run", "not an hpwf run directory"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case: str, why: str, pbt_run: Path, tmp_path: Path) -> None:
    source = {"no pbt": lambda: no_pbt_run(tmp_path), "not a segment": lambda: pbt_run,
              "no run": lambda: tmp_path / "nowhere"}[case]()
    target = tmp_path / "replay"
    proc = hpwf_cli("replay", str(source), "--run-dir", str(target), *(["--trial", "999"] if case == "not a segment" else []))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert why in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not target.exists()


def test_a_replay_is_not_resumed_as_the_pbt_it_replays(pbt_run: Path, tmp_path: Path) -> None:
    replayed = hpwf.load_study(pbt_run).trials[0].number  # a generation-0 segment: one short segment to train
    run_dir = tmp_path / "replay"
    replay(pbt_run, run_dir, trial=replayed, workers=1, progress=False)
    proc = hpwf_cli("resume", str(run_dir))
    assert proc.returncode == 2 and "a replay of" in proc.stderr and "hpwf replay" in proc.stderr, proc.stderr


def test_help_lists_replay() -> None:
    out = hpwf_cli("--help").stdout
    assert "replay" in out and "PBT" in out


def test_write_report_from_python_has_the_scheduler_section(pbt_run: Path, tmp_path: Path) -> None:
    """The report's sections are one explicit list: Python's `write_report`, with nothing else
    imported first, writes the same sections as `hpwf report` (the PBT lineage included)."""
    code = "import sys; from hpwf.report import write_report; write_report(sys.argv[1])"
    done = subprocess.run([sys.executable, "-c", code, str(pbt_run)], capture_output=True, text=True, env=ENV,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "<h2>Scheduler</h2>" in (pbt_run / "report.html").read_text()
