"""Running one trial on this rank: the objective called with its Trial, what it printed kept in the
trial's log (made at its first character), and the outcome made durable before it is reported."""

from __future__ import annotations

import contextlib
import io
import math
import time
import traceback
from pathlib import Path
from typing import IO, Any, Callable
from hpwf.rundir import TRACEBACK, hold_run_dir, open_file, trial_folder, write_atomically, write_result
from hpwf.wire import Assign, Done, DoneState, Setup
from hpwf.workflow import Group, Trial, TrialPaused, is_pruned


def run_trial(
    objective: Callable[[Trial], Any],
    task: Assign,
    run_dir: Path,
    request: Callable[[Any], Any],
    group: Group = Group(),
    share: Callable[[Any], Any] = lambda value: value,
    n_objectives: int = 1,
) -> Done:
    """Run ``objective`` on one trial; everything it prints goes to the trial's ``log.txt``.

    Rank 0 of a group makes the trial's result durable (`write_result`) and returns it; the
    other ranks return a "member" `Done`.
    """
    from hpwf.workflow import parallel

    if run_dir.is_dir():  # this process's files of the run, through one descriptor (checked once)
        hold_run_dir(run_dir)
    folder = trial_folder(run_dir, task.number)  # made when the trial first writes into it
    trial = Trial(
        task.number, task.params, task.distributions, seed=task.seed, folder=folder,
        request=request, group=group, share=share, ticket=task.ticket, run_dir=run_dir,
    )
    trial.user_attrs.update(task.attrs or {})
    start = time.time()
    state, values, error = DoneState.FAIL, None, None
    log_name = "log.txt" if group.rank == 0 else f"log.rank{group.rank}.txt"
    with LazyLog(folder / log_name) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            values = _as_values(objective(trial), n_objectives)
            state = DoneState.COMPLETE
        except TrialPaused:  # its state is saved: a scheduler resumes it later
            state = DoneState.PAUSED
        except BaseException as exc:  # noqa: BLE001 - a trial must never take its agent down
            if is_pruned(exc):  # Optuna's TrialPruned, without importing Optuna here
                state = DoneState.PRUNED
            else:
                error = traceback.format_exc()
                log.write(error)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
        finally:
            parallel.shutdown()
    duration = time.time() - start
    if group.rank != 0:
        return Done(task.ticket, DoneState.MEMBER, None, error, duration)
    if error:
        write_atomically(folder / TRACEBACK, error)
    metrics = trial.flush_metrics()  # rows no file holds go with the result
    write_result(run_dir, task.number, state.upper(), values, trial.params, duration, trial.plain_distributions, metrics)
    return Done(task.ticket, state, values, error, duration, used=trial.take_used())


class LazyLog(io.TextIOBase):
    """A trial's log file, created (with its folder) at the first character written to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def _open(self) -> IO[str]:
        if self._file is None:
            self._file = open_file(self.path, "a", make_parents=True, buffering=1)
        return self._file

    def write(self, text: str) -> int:
        return self._open().write(text) if text else 0

    def fileno(self) -> int:  # a library that writes to the descriptor gets the real file
        return self._open().fileno()

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        super().close()
        if self._file is not None:
            self._file.close()


def _as_values(result: Any, n_objectives: int = 1) -> list[float]:
    """The objective's return value as floats, checked against the study's objectives."""
    if result is None:
        raise TypeError("objective returned None; return a float (or a tuple for several directions)")
    many = isinstance(result, (list, tuple))
    if n_objectives == 1 and many and len(result) != 1:
        raise ValueError(f"the objective returned {len(result)} values; the study has one direction")
    values = [float(v) for v in result] if many else [float(result)]
    if len(values) != n_objectives:
        raise ValueError(f"the objective returned {len(values)} value(s); the study has {n_objectives} directions")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"the objective returned a non-finite value: {bad[0]}")
    return values


def _resolve_objective(setup: Setup) -> Callable[[Trial], Any]:
    if setup.workflow_path:
        from hpwf.workflow import checked_elsewhere, load

        with checked_elsewhere():  # the coordinator checked the file: no Optuna sampler made here
            workflow = load(setup.workflow_path)
        if setup.entry == "ensemble":
            from hpwf.workflow import MemberObjective

            assert workflow.ensemble is not None
            return MemberObjective(workflow.ensemble.train)
        assert workflow.objective is not None  # a search phase runs only when the file has one
        return workflow.objective
    import cloudpickle

    assert setup.objective_pickle is not None
    return cloudpickle.loads(setup.objective_pickle)
