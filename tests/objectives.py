"""Objectives the backend conformance tests hand to every backend (importable by agents)."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import hpwf


def quadratic(trial: hpwf.Trial, epochs: int = 3, sleep: float = 0.0) -> float:
    x = trial.suggest_float("x", -5, 5)
    n = trial.suggest_int("n", 1, 4)
    for epoch in range(epochs):
        time.sleep(sleep)
        trial.report((x - 1) ** 2 + n + 1.0 / (epoch + 1), epoch)
        if trial.should_prune():
            raise hpwf.TrialPruned()
    print(f"trained x={x} n={n}")
    return (x - 1) ** 2 + n


def sees_itself_running(trial: hpwf.Trial) -> float:
    """Reports once, then checks in the study that the value is there while still RUNNING."""
    trial.suggest_float("x", 0, 1)
    trial.report(0.5, 0)
    run_dir = trial.run_dir
    study = hpwf.load_study(run_dir)
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    import optuna

    if frozen.state != optuna.trial.TrialState.RUNNING or frozen.intermediate_values.get(0) != 0.5:
        raise AssertionError(f"intermediate value not live: {frozen.state} {frozen.intermediate_values}")
    return 1.0


def fails_when_negative(trial: hpwf.Trial) -> float:
    x = trial.suggest_float("x", -1, 1)
    if trial.number % 3 == 1:
        raise ValueError(f"planted failure in trial {trial.number}")
    return x * x


def first_trial_slow(trial: hpwf.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    time.sleep(4.0 if trial.number == 0 else 0.05)
    return x


HEAVY = ("optuna", "numpy", "torch", "scipy", "pandas", "sklearn")


def light_until_pruned(trial: hpwf.Trial) -> float:
    """Records which heavy modules its agent had imported, then prunes odd trials (which imports Optuna)."""
    import sys

    x = trial.suggest_float("x", 0, 1)
    trial.suggest_categorical("c", ["a", "b"])
    trial.set_user_attr("heavy", [m for m in HEAVY if m in sys.modules])
    trial.report(x, 0)
    if trial.number % 2:
        raise hpwf.TrialPruned()
    return x


def prunes_at_step_two(trial: hpwf.Trial) -> float:
    """Reports a worse value each step for odd trials; a threshold pruner stops them at step 2."""
    trial.suggest_float("x", 0, 1)
    for step in range(6):
        trial.report(float(step) if trial.number % 2 else 0.0, step)
        if trial.should_prune():
            raise hpwf.TrialPruned()
    return 0.0


def dies_once(trial: hpwf.Trial, marker: str) -> float:
    """The first trial to get here kills its own process (SIGKILL), as a crashed node would."""
    x = trial.suggest_float("x", 0, 1)
    if not first_time(marker, trial.number):
        return x
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # the signal lands asynchronously: never return a result before it does
    return x


def conditional(trial: hpwf.Trial) -> float:
    kind = trial.suggest_categorical("kind", ["linear", "quadratic"])
    if kind == "linear":
        return abs(trial.suggest_float("slope", -1, 1))
    return trial.suggest_float("a", 0, 1) ** 2 + trial.suggest_int("b", 0, 3)


def returns_nan(trial: hpwf.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    return float("nan") if trial.number == 0 else 1.0




def kills_its_mpi_job_once(trial: hpwf.Trial, marker: str) -> float:
    """The first trial here kills the launcher of its MPI job, so every rank of the job dies."""
    import psutil

    x = trial.suggest_float("x", 0, 1)
    time.sleep(0.3)
    if not first_time(marker, trial.number):
        return x
    for parent in psutil.Process().parents():
        if parent.name().startswith(("mpiexec", "mpirun")):
            me = psutil.Process()
            for child in parent.children(recursive=True):
                if child.pid != me.pid:  # itself last, or it dies before the other ranks do
                    child.kill()
            parent.kill()
            me.kill()
    time.sleep(5)
    return x


def freezes_once(trial: hpwf.Trial, marker: str) -> float:
    """The first trial here stops its own process (SIGSTOP): alive, connected, and silent."""
    x = trial.suggest_float("x", 0, 1)
    if not first_time(marker, trial.number):
        return x
    os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(60)  # the stop lands asynchronously (under load, after a return): wait for it
    return x


def hangs_once(trial: hpwf.Trial, marker: str) -> float:
    """The first trial here hangs (a deadlock, say) far past any sensible timeout."""
    x = trial.suggest_float("x", 0, 1)
    if not first_time(marker, trial.number):
        return x
    time.sleep(3600)
    return x


def fails_first_attempt(trial: hpwf.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    if trial.number == 0:
        raise RuntimeError("transient failure")
    return x


def no_op(trial: hpwf.Trial) -> float:
    return trial.suggest_float("x", 0, 1)


def first_time(marker: str, number: int) -> bool:
    """True for the first caller only (across processes): it writes its trial number to ``marker``."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(number).encode())
    os.close(fd)
    return True


def hangs_n_times(trial: hpwf.Trial, marker: str, n: int) -> float:
    """The first ``n`` trials hang far past any sensible timeout (counted in ``marker``)."""
    x = trial.suggest_float("x", 0, 1)
    with open(marker, "a") as f:
        f.write(f"{trial.number}\n")
    if len(Path(marker).read_text().split()) <= n:
        time.sleep(3600)
    return x


def pbt_walk(trial: hpwf.Trial, steps: int = 6) -> float:
    """Deterministic 'training' for PBT and its replay: ``w`` moves towards 3 by ``lr`` of the way per
    step, from a start set by ``trial.seed``; the loss is ``(w - 3)**2 + lr / 10``. Pauses when told."""
    lr = trial.suggest_float("lr", 0.01, 1.0, log=True)
    restored = trial.restore()
    w, start = ((trial.seed % 997) / 997.0, 0) if restored is None else (restored.state["w"], restored.step)
    value = math.nan
    for step in range(start, steps):
        w += lr * (3.0 - w)
        value = (w - 3.0) ** 2 + lr / 10
        trial.report(value, step)
        if trial.should_pause():
            trial.pause({"w": w})
    return value
