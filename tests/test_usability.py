"""What a new user meets on the command line (issue 14 items 6, 8, 9, 11, 12): imports next to
the workflow, budgets after a resume, Pareto fronts, Optuna parity, logged metrics and output."""

from __future__ import annotations

import csv
import inspect
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import hpwf
from hpwf.progress import Progress, duration, time_left
from hpwf.workflow._metrics import MetricsFile
from hpwf.rundir._trialdir import trial_folder

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "workflows" / "toy.py"
BIN = Path(sys.executable).parent


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 300,
        command: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m hpwf ARGS`` (or ``command ARGS``) with this checkout's hpwf first on the path."""
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([*(command or [sys.executable, "-m", "hpwf"]), *args], capture_output=True, text=True,
                          timeout=timeout, env=environment, cwd=cwd)


def status_json(run_dir: Path) -> dict:  # type: ignore[type-arg]
    proc = cli("status", str(run_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- item 8: modules next to the workflow file ---------------------------------------------------
@pytest.mark.parametrize("backend", ["local", pytest.param("mpirun", marks=pytest.mark.mpi),
                                     pytest.param("mpi", marks=pytest.mark.mpi)])
def test_a_workflow_imports_modules_next_to_it_through_the_console_script(tmp_path: Path, backend: str) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "bc_helpers.py").write_text("def loss(x):\n    return (x - 1) ** 2\n")
    (folder / "uses_helper.py").write_text(
        "import hpwf\nimport bc_helpers\n"
        "search = hpwf.Search(direction='minimize', n_trials=3, seed=0)\n"
        "def objective(trial):\n"
        "    import bc_helpers as again  # at trial time too, on the agent\n"
        "    return again.loss(trial.suggest_float('x', -2, 2))\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_dir = tmp_path / "run"
    script = [str(BIN / "hpwf")]
    if backend == "mpi":  # every rank runs the script; ranks 1.. are the agents
        script = [str(BIN / "mpirun"), "-np", "3", *script]
    proc = cli("run", str(folder / "uses_helper.py"), "--backend", backend, "--run-dir", str(run_dir), "--quiet",
               *([] if backend == "mpi" else ["--workers", "2"]), cwd=elsewhere, command=script)
    assert proc.returncode == 0, proc.stderr
    assert "ModuleNotFoundError" not in proc.stderr
    assert status_json(run_dir)["complete"] == 3


# --- item 9: a resumed run's new budget ----------------------------------------------------------
def test_status_shows_the_budget_a_resume_set(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert cli("run", str(TOY), "--run-dir", str(run_dir), "--n-trials", "3", "--workers", "2",
               "--quiet").returncode == 0
    proc = cli("resume", str(run_dir), "--n-trials", "5", "--quiet")
    assert proc.returncode == 0, proc.stderr
    info = status_json(run_dir)
    assert info["n_trials"] == 5 and info["complete"] + info["pruned"] == 5
    assert "(budget: 5)" in cli("status", str(run_dir)).stdout


@pytest.mark.mpi
def test_status_shows_the_budget_a_resume_set_under_mpi(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    mpirun = [str(BIN / "mpirun"), "-np", "3", sys.executable, "-m", "hpwf"]
    proc = cli("run", str(TOY), "--backend", "mpi", "--run-dir", str(run_dir), "--n-trials", "3", "--quiet",
               command=mpirun)
    assert proc.returncode == 0, proc.stderr
    proc = cli("resume", str(run_dir), "--n-trials", "5", "--quiet", command=mpirun)
    assert proc.returncode == 0, proc.stderr
    info = status_json(run_dir)
    assert info["n_trials"] == 5 and info["complete"] + info["pruned"] == 5


# --- item 6: the Pareto front at the end and in status -------------------------------------------
def test_multi_objective_runs_end_with_their_pareto_front(tmp_path: Path) -> None:
    workflow = tmp_path / "two_goals.py"
    workflow.write_text(
        "import hpwf\n"
        "search = hpwf.Search(directions=['minimize', 'minimize'], n_trials=10, sampler='random', seed=3)\n"
        "def objective(trial):\n"
        "    x, y = trial.suggest_float('x', 0, 1), trial.suggest_float('y', 0, 1)\n"
        "    return x, 1 - x + y\n"
    )
    run_dir = tmp_path / "run"
    proc = cli("run", str(workflow), "--run-dir", str(run_dir), "--workers", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    front = sorted(t.number for t in hpwf.load_study(run_dir).best_trials)
    listed = ", ".join(f"#{n}" for n in front)
    end = proc.stderr.strip().splitlines()[-1]
    assert f"Pareto front: {len(front)} trial" in end and listed in end, end
    assert "None" not in end
    info = status_json(run_dir)
    assert info["pareto_front"] == {"size": len(front), "trials": front}
    assert f"Pareto front: {len(front)} trial" in cli("status", str(run_dir)).stdout


# --- item 11: Optuna parity and logged metrics ---------------------------------------------------
def test_every_suggest_method_of_optunas_trial_exists_with_the_same_signature() -> None:
    names = [n for n in dir(optuna.trial.Trial) if n.startswith("suggest_")]
    assert {"suggest_float", "suggest_int", "suggest_categorical"} <= set(names)
    for name in names:
        theirs = inspect.signature(getattr(optuna.trial.Trial, name))
        ours = inspect.signature(getattr(hpwf.Trial, name))
        shape = [(p.name, p.kind, p.default) for p in theirs.parameters.values()]
        assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == shape, name


PARITY = """
import warnings
import hpwf
search = hpwf.Search(direction="minimize", n_trials=2, seed=0, pruner="none")

def space(trial):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return [trial.suggest_uniform("u", -1.0, 1.0), trial.suggest_loguniform("lu", 1e-4, 1e-1),
                trial.suggest_discrete_uniform("du", 0.0, 1.0, 0.25), trial.suggest_int("il", 1, 64, log=True),
                trial.suggest_int("is", 0, 10, step=2), trial.suggest_float("fs", 0.0, 1.0, step=0.1),
                trial.suggest_categorical("c", ["a", "b"])]

def objective(trial):
    values = space(trial)
    for epoch in range(3):
        trial.report(float(epoch), epoch)
        trial.log_metrics(epoch, train_loss=1.0 / (epoch + 1), lr=0.1 * 0.5 ** epoch)
        trial.log_metrics(epoch, {"grad_norm": 2.0 + epoch})
    return float(values[0])
"""


def test_optunas_older_suggest_methods_and_logged_metrics_in_a_run(tmp_path: Path) -> None:
    workflow = tmp_path / "parity.py"
    workflow.write_text(PARITY)
    run_dir = tmp_path / "run"
    proc = cli("run", str(workflow), "--run-dir", str(run_dir), "--workers", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    study = hpwf.load_study(run_dir)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    # The same calls on a plain Optuna trial record the same distributions.
    namespace: dict = {}  # type: ignore[type-arg]
    exec(compile(PARITY, "parity", "exec"), namespace)
    reference = optuna.create_study()
    plain = reference.ask()
    namespace["space"](plain)
    assert study.trials[0].distributions == plain.distributions
    with (trial_folder(run_dir, 0) / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "value", "elapsed_s", "time", "train_loss", "lr", "grad_norm"]
    assert [(r["step"], float(r["value"]), float(r["train_loss"]), float(r["grad_norm"])) for r in rows] == [
        ("0", 0.0, 1.0, 2.0), ("1", 1.0, 0.5, 3.0), ("2", 2.0, 1 / 3, 4.0)]
    assert cli("report", str(run_dir)).returncode == 0
    page = (run_dir / "report.html").read_text()
    assert "<h2>Logged metrics</h2>" in page and "train_loss" in page and "grad_norm" in page


def test_metrics_file_merges_a_step_and_widens_for_new_names(tmp_path: Path) -> None:
    f = MetricsFile(tmp_path / "metrics.csv")
    f.record(0, {"value": 1.5}, 0.1, now=10.0)
    f.record(1, {"value": 1.0}, 0.2, now=10.1)
    f.record(1, {"loss": 0.25}, 0.3, now=10.2)  # the same step: the last row is completed
    f.record(2, {"loss": 0.2}, 0.4, now=10.3)
    f.record(2, {"acc": 0.9}, 0.5, now=10.4)  # a new name: the header widens
    text = (tmp_path / "metrics.csv").read_text().splitlines()
    assert text == ["step,value,elapsed_s,time,loss,acc", "0,1.5,0.100,10.000,,", "1,1.0,0.300,10.200,0.25,",
                    "2,,0.500,10.400,0.2,0.9"]
    again = MetricsFile(tmp_path / "metrics.csv")  # a trial resumed from a pause keeps its earlier rows
    again.record(3, {"value": 0.5}, 0.1, now=20.0)
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1:4] == text[1:4]
    with pytest.raises(ValueError, match="metric names"):
        hpwf.Trial(0, {}, {}, seed=0, folder=tmp_path, request=lambda m: None).log_metrics(0, value=1.0)


# --- item 12: output -----------------------------------------------------------------------------
def test_progress_line_shows_elapsed_time_and_time_left() -> None:
    now = [100.0]
    stream = io.StringIO()
    progress = Progress(stream=stream, every=0.0, elapsed_before=30.0, clock=lambda: now[0])
    progress.update({"done": 2, "total": 10})  # a resumed run: 2 done in an earlier session
    now[0] += 40.0
    progress.update({"done": 6, "total": 10})  # 4 trials in 40 s: 4 left take about 40 s more
    last = stream.getvalue().strip().splitlines()[-1]
    assert last.endswith("] 6/10 | pruned 0 | failed 0 | running 0 | best - | 1m10s elapsed, ~40s left"), last
    assert time_left(0, 5.0, 10, 0, timeout=60.0, elapsed=50.0) == 10.0  # only a time budget: its rest
    assert time_left(0, 5.0, 10, 0, timeout=None, elapsed=5.0) is None
    assert duration(7390) == "2h03m"
    # The caller's own figures win over the clock (the coordinator may pass them).
    assert progress.line({"done": 6, "total": 10, "elapsed": 600.0, "timeout": 900.0}).endswith(
        "10m00s elapsed, ~40s left")


def test_quiet_runs_still_say_why_each_trial_failed(tmp_path: Path) -> None:
    proc = cli("run", str(TOY), "--run-dir", str(tmp_path / "run"), "--n-trials", "4", "--workers", "2",
               "--quiet", env={"TOY_FAIL_ABOVE": "-100"})  # every trial fails
    trials = hpwf.load_study(tmp_path / "run").trials
    failed = [t for t in trials if "toy failure" in str(t.user_attrs.get("fail_reason"))]  # not "not started: ..."
    assert failed
    for t in failed:
        assert f"trial {t.number} failed: RuntimeError: toy failure for x=" in proc.stderr, proc.stderr
    assert "[hpwf] [" not in proc.stderr  # and still no progress bar


def test_the_stop_line_after_sigint_names_the_resume_command(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "TOY_SLEEP": "0.3", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "hpwf", "run", str(TOY), "--run-dir", str(run_dir),
                             "--n-trials", "200", "--workers", "2", "--quiet"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "summary.json").exists():
        time.sleep(0.3)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"stopped: interrupted by SIGINT; continue with `hpwf resume {run_dir}`" in err, err


def test_resuming_a_finished_run_prints_each_progress_line_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert cli("run", str(TOY), "--run-dir", str(run_dir), "--n-trials", "3", "--workers", "1").returncode == 0
    proc = cli("resume", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    bars = [line for line in proc.stderr.splitlines() if line.startswith("[hpwf] [")]
    assert bars == [], proc.stderr  # nothing ran: no bar, one line that says why (issue 22)
    assert proc.stderr.count("nothing to do: the budget is already reached (3 of n_trials=3 finished)") == 1, proc.stderr


def test_optuna_warnings_name_the_trial(tmp_path: Path) -> None:
    workflow = tmp_path / "twice.py"
    workflow.write_text(
        "import hpwf\n"
        "search = hpwf.Search(direction='minimize', n_trials=2, seed=0, pruner='none')\n"
        "def objective(trial):\n"
        "    x = trial.suggest_float('x', 0, 1)\n"
        "    trial.report(x, 0)\n"
        "    trial.report(x, 0)  # the same step again: Optuna ignores it, with a warning\n"
        "    return x\n"
    )
    proc = cli("run", str(workflow), "--run-dir", str(tmp_path / "run"), "--workers", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"trial \d+: The reported value is ignored because this `step=0` is already reported",
                     proc.stderr), proc.stderr


@pytest.mark.parametrize("backend", ["local", pytest.param("dask-mpi", marks=pytest.mark.mpi)])
def test_no_dask_port_warning_when_8787_is_taken(tmp_path: Path, backend: str) -> None:
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.time() + 30
    while True:  # hold it ourselves: another user's scheduler holding it now may let it go mid-test
        try:
            taken.bind(("0.0.0.0", 8787))
            taken.listen()
            break
        except OSError:
            if time.time() > deadline:  # held by someone else throughout: just as good
                break
            time.sleep(0.5)
    try:
        if backend == "local":
            proc = cli("run", str(TOY), "--run-dir", str(tmp_path / "run"), "--n-trials", "2", "--workers", "1",
                       "--quiet")
        else:  # rank 0 the scheduler, rank 1 the coordinator, rank 2 a worker
            proc = cli("run", str(TOY), "--backend", "dask-mpi", "--run-dir", str(tmp_path / "run"), "--n-trials",
                       "2", "--quiet", env={"HPWF_DASK_INTERFACE": "lo"},
                       command=[str(BIN / "mpirun"), "-np", "3", sys.executable, "-m", "hpwf"])
    finally:
        taken.close()
    assert proc.returncode == 0, proc.stderr
    assert "8787" not in proc.stderr and "already in use" not in proc.stderr, proc.stderr


def test_version() -> None:
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"hpwf {hpwf.__version__}", proc


def test_counts_print_as_integers_in_the_uq_tables() -> None:
    from hpwf.ensembles import _uq as uq
    from hpwf.report._uq import _table

    metrics = {"ensemble": {"rmse": 0.25, "members": 8, "n": 1000.0}, "best_member": {"rmse": 0.3, "n": 1000.0}}
    text = uq.summarize(metrics)
    assert re.search(r"^members\s+8\s+-$", text, re.M) and re.search(r"^n\s+1000\s+1000$", text, re.M), text
    page = _table(metrics)
    assert "<td>8</td>" in page and "<td>1000</td>" in page and "8.0000" not in page and "1000.0000" not in page


def test_trials_csv_leaves_out_internal_columns(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert cli("run", str(TOY), "--run-dir", str(run_dir), "--n-trials", "3", "--workers", "1",
               "--quiet").returncode == 0
    raw = list(hpwf.load_study(run_dir).trials_dataframe().columns)
    assert any(c.startswith("user_attrs_hpwf:") for c in raw)  # there is something to leave out
    assert cli("report", str(run_dir)).returncode == 0
    header = (run_dir / "trials.csv").read_text().splitlines()[0].split(",")
    assert "params_x" in header and "value" in header
    assert not [c for c in header if c.startswith(("user_attrs_hpwf:", "system_attrs_"))], header


def test_the_readme_lists_every_file_of_a_run_directory() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## The run directory", 1)[1].split("```", 2)[1]
    names = set()
    for path in (ROOT / "hpwf").rglob("*.py"):
        names |= set(re.findall(r'"([A-Za-z_.0-9{}-]+\.(?:txt|json|npz|csv|html|log|pt|journal|sh|out))"',
                                path.read_text()))
    assert len(names) > 15
    missing = [n for n in sorted(names) if re.sub(r"\{[^}]*\}.*", "", n) not in layout]
    assert not missing, f"README's run-directory layout misses {missing}"


@pytest.mark.parametrize("case", ["bogus_storage", "directions_differ", "group_too_big"])
def test_errors_that_exit_2_leave_no_run_directory(tmp_path: Path, case: str) -> None:
    run_dir = tmp_path / "run"
    args = [str(TOY), "--run-dir", str(run_dir), "--workers", "1", "--quiet"]
    expected = {"bogus_storage": "storage 'bogus://x'", "directions_differ": "has directions",
                "group_too_big": "ranks_per_trial=2 needs more ranks"}[case]
    if case == "bogus_storage":
        args += ["--storage", "bogus://x"]
    elif case == "directions_differ":
        db = tmp_path / "s.db"
        optuna.create_study(study_name="toy", storage=f"sqlite:///{db}", direction="maximize")
        args += ["--storage", f"sqlite:///{db}"]
    else:
        workflow = tmp_path / "big.py"
        workflow.write_text(TOY.read_text().replace("seed=1)", "seed=1, ranks_per_trial=2)"))
        args[0] = str(workflow)
    proc = cli("run", *args)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not run_dir.exists(), sorted(p.name for p in run_dir.rglob("*"))
