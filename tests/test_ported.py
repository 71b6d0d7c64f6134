"""What a user porting an Optuna file meets (issue 22, "small things"): a resume with nothing
left to do, the last progress line, an objective that returns None, the default pruner."""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest

import hpwf
from hpwf.backends.local import LocalBackend
from hpwf.progress import Progress


class CountingBackend(LocalBackend):
    """The real local backend, counting its starts."""

    starts = 0

    def start(self, address, authkey):  # type: ignore[no-untyped-def]
        type(self).starts += 1
        super().start(address, authkey)


def _workflow(tmp_path: Path, body: str, **search: object) -> Path:
    options = ", ".join(f"{k}={v!r}" for k, v in {"direction": "minimize", "sampler": "random", "seed": 0,
                                                    **search}.items())
    path = tmp_path / "wf.py"
    path.write_text(f"import hpwf\nsearch = hpwf.Search({options})\n\ndef objective(trial):\n{body}\n")
    return path


def test_a_resume_of_a_finished_run_ends_at_once_saying_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wf = _workflow(tmp_path, "    return trial.suggest_float('x', 0, 1)", n_trials=2)
    hpwf.run(wf, workers=1, run_dir=tmp_path / "run", progress=False)
    CountingBackend.starts = 0
    result = hpwf.resume(tmp_path / "run", backend=CountingBackend(workers=1))
    assert CountingBackend.starts == 0  # no agent was started, so nothing waits for one
    assert "the budget is already reached (2 of n_trials=2 finished)" in capsys.readouterr().err
    assert result.summary["complete"] == 2
    hpwf.resume(tmp_path / "run", backend=CountingBackend(workers=1), n_trials=3, progress=False)
    assert CountingBackend.starts == 1  # a new budget runs as before
    assert len(hpwf.load_study(tmp_path / "run").trials) == 3


def test_the_last_progress_line_shows_no_time_left() -> None:
    stream, now = io.StringIO(), [0.0]
    progress = Progress(stream=stream, every=0.0, timeout=600.0, clock=lambda: now[0])
    progress.update({"done": 1, "total": 2})
    now[0] += 27.0
    progress.update({"done": 2, "total": 2})
    first, last = stream.getvalue().strip().splitlines()[-2:]
    assert "left" in first and last.endswith("] 2/2 | pruned 0 | failed 0 | running 0 | best - | 27s elapsed"), last


def test_an_objective_returning_none_says_what_to_return(tmp_path: Path) -> None:
    wf = _workflow(tmp_path, "    trial.suggest_float('x', 0, 1)", n_trials=1, max_failures=0)
    with pytest.raises(hpwf.RunError):
        hpwf.run(wf, workers=1, run_dir=tmp_path / "run", progress=False)
    trial = hpwf.load_study(tmp_path / "run").trials[0]
    assert trial.user_attrs["fail_reason"].endswith(
        "objective returned None; return a float (or a tuple for several directions)"), trial.user_attrs["fail_reason"]


def test_the_default_pruner_is_optunas_median(tmp_path: Path) -> None:
    assert isinstance(hpwf.Search(direction="minimize", n_trials=1).make_pruner(), optuna.pruners.MedianPruner)
    assert isinstance(optuna.create_study().pruner, optuna.pruners.MedianPruner)  # what a port expects
    assert isinstance(hpwf.Search(directions=["minimize", "maximize"], n_trials=1).make_pruner(),
                      optuna.pruners.NopPruner)  # not defined for several directions
    assert isinstance(hpwf.Search(direction="minimize", n_trials=1, pruner="none").make_pruner(), optuna.pruners.NopPruner)
    # A real run: trials 5.. report worse values than the median of the first five and are pruned.
    body = ("    trial.suggest_float('x', 0, 1)\n    for step in range(3):\n        trial.report(trial.number, step)\n"
            "        if trial.should_prune():\n            raise hpwf.TrialPruned()\n    return trial.number")
    result = hpwf.run(_workflow(tmp_path, body, n_trials=8), workers=1, run_dir=tmp_path / "run", progress=False)
    states = [t.state.name for t in result.study.trials]
    assert states == ["COMPLETE"] * 5 + ["PRUNED"] * 3, states


@pytest.mark.mpi
def test_a_resume_of_a_finished_run_under_mpirun_ends_at_once_with_exit_0(tmp_path: Path) -> None:
    """The ranks waiting for rank 0 are released with exit 0: mpirun itself succeeds."""
    import os
    import subprocess
    import sys

    wf = _workflow(tmp_path, "    return trial.suggest_float('x', 0, 1)", n_trials=2)
    mpirun = [str(Path(sys.executable).parent / "mpirun"), "-np", "3", sys.executable, "-m", "hpwf"]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    for command in (["run", str(wf), "--backend", "mpi", "--run-dir", str(tmp_path / "run"), "--quiet"],
                    ["resume", str(tmp_path / "run")]):
        proc = subprocess.run([*mpirun, *command], capture_output=True, text=True, timeout=240, cwd=root, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nothing to do: the budget is already reached (2 of n_trials=2 finished)" in proc.stderr, proc.stderr
