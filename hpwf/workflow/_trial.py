"""What an objective sees: ``suggest_*``, ``report``, ``should_prune``, its folder and its group.

With a scheduler that pauses trials (``Search(scheduler="asha-resume" | "hyperband-resume" |
"pbt")``) it also sees ``should_pause``, ``pause`` and ``restore``::

    def objective(trial):
        model = Net()
        start = 0
        restored = trial.restore()          # None on a fresh trial
        if restored is not None:
            model.load_state_dict(restored.state["model"])
            start = restored.step           # the step after the last one reported
        for epoch in range(start, EPOCHS):
            accuracy = train_one_epoch(model)
            trial.report(accuracy, epoch)
            if trial.should_pause():
                trial.pause({"model": model.state_dict()})  # saves, then ends the trial for now
        return accuracy
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, NoReturn, Sequence

from hpwf.wire import _dists
from hpwf.wire._dists import Dist

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution, CategoricalChoiceType
    from optuna.exceptions import TrialPruned

PAUSE_CHECKPOINT = "pause.pt"  # in the trial folder: the state saved by `Trial.pause`
RESTORE_ATTR = "hpwf:restore"  # set by the coordinator: {"from": trial number, "step": next step}


class TrialPaused(Exception):
    """Raised by `Trial.pause` once the trial's state is saved: the trial ends for now."""


class Restored(NamedTuple):
    """What `Trial.restore` gives back: the state passed to `Trial.pause` and the step to continue from."""

    state: Any
    step: int


Request = Callable[[Any], Any]  # send a message to the coordinator and return its reply value


@dataclass(frozen=True)
class Group:
    """The ranks that train this trial together (one, unless ``ranks_per_trial > 1``)."""

    rank: int = 0
    size: int = 1
    comm: Any = None  # an mpi4py communicator for the group, where there is one


class Trial:
    """The trial handed to ``objective(trial)``; mirrors ``optuna.Trial`` where it matters.

    Parameters are sampled on the coordinator: values it could sample ahead of time arrive
    with the trial, others cost one round trip. Only the group's rank 0 talks to the coordinator;
    the others receive the same answers from it.

    Example (inside a workflow file)::

        def objective(trial):
            lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            for epoch in range(10):
                acc = train_one_epoch(lr)
                trial.report(acc, epoch)
                if trial.should_prune():
                    raise hpwf.TrialPruned()
            return acc
    """

    def __init__(
        self,
        number: int,
        params: dict[str, Any],
        distributions: dict[str, Dist],
        *,
        seed: int,
        folder: Path,
        request: Request,
        group: Group = Group(),
        share: Callable[[Any], Any] = lambda value: value,
        ticket: int | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.number = number
        self._ticket = number if ticket is None else ticket  # names this attempt in messages
        self.seed = seed
        self._folder = folder
        self._run_dir = run_dir if run_dir is not None else folder.parent.parent  # (sharded layout)
        self.group = group
        self._prefetched = dict(params)
        self._prefetched_dists = dict(distributions)
        self._unsent: dict[str, Any] = {}  # prefetched values used, not yet told to the coordinator
        self.params: dict[str, Any] = {}
        self.plain_distributions: dict[str, Dist] = {}  # plain tuples (hpwf.wire._dists): no Optuna on agents
        self.user_attrs: dict[str, Any] = {}
        self.intermediate_values: dict[int, float] = {}
        self._request = request
        self._share = share  # rank 0's answer to every rank of the group
        self._prune = False
        self._pause = False
        self._started = time.time()
        self._metrics = MetricsFile(folder / "metrics.csv")

    @property
    def folder(self) -> Path:
        """The trial's own folder (``RUN_DIR/trials/SSS/NNNNN``), created when first asked for."""
        self._folder.mkdir(parents=True, exist_ok=True)
        return self._folder

    # --- sampling -------------------------------------------------------------------------
    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        """Sample a float in [low, high] (log scale or on a step grid if asked)."""
        return float(self._suggest(name, _dists.float_dist(low, high, step, log)))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        """Sample an integer in [low, high]."""
        return int(self._suggest(name, _dists.int_dist(low, high, step, log)))

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalChoiceType]
    ) -> CategoricalChoiceType:
        """Sample one of ``choices``."""
        return self._suggest(name, _dists.categorical(choices))

    # Optuna's older names, kept while the installed Optuna keeps them (it warns that they go).
    def suggest_uniform(self, name: str, low: float, high: float) -> float:
        """``suggest_float(name, low, high)`` (deprecated in Optuna)."""
        _deprecated("suggest_uniform", "suggest_float(name, low, high)")
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name: str, low: float, high: float) -> float:
        """``suggest_float(name, low, high, log=True)`` (deprecated in Optuna)."""
        _deprecated("suggest_loguniform", "suggest_float(name, low, high, log=True)")
        return self.suggest_float(name, low, high, log=True)

    def suggest_discrete_uniform(self, name: str, low: float, high: float, q: float) -> float:
        """``suggest_float(name, low, high, step=q)`` (deprecated in Optuna)."""
        _deprecated("suggest_discrete_uniform", "suggest_float(name, low, high, step=q)")
        return self.suggest_float(name, low, high, step=q)

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        """The suggested parameters' distributions, as Optuna's (imports Optuna)."""
        return {name: _dists.to_optuna(dist) for name, dist in self.plain_distributions.items()}

    def _suggest(self, name: str, distribution: Dist) -> Any:
        if name in self.params:
            if self.plain_distributions[name] != distribution:
                raise ValueError(f"parameter {name!r} suggested again with another range")
            return self.params[name]
        if self._prefetched_dists.get(name) == distribution:
            value = self._prefetched[name]
            self._unsent[name] = value
            if self.group.rank == 0:  # one way: recorded while the trial runs, as a round trip would
                from hpwf.wire._protocol import Used

                self._request(Used(self._ticket, self.take_used()))
        else:
            from hpwf.wire._protocol import Suggest

            value = self._share(
                self._request(Suggest(self._ticket, name, distribution, self.take_used())) if self.group.rank == 0 else None
            )
        self.params[name] = value
        self.plain_distributions[name] = distribution
        return value

    # --- pruning --------------------------------------------------------------------------
    def report(self, value: float, step: int) -> None:
        """Report an intermediate value (e.g. the epoch's validation metric) to the pruner.

        Only the group's rank 0 reports; average the value over the group first if it differs.
        """
        from hpwf.wire._protocol import Report

        value = float(value)
        step = int(step)
        self.intermediate_values[step] = value
        decision: Any = None
        if self.group.rank == 0:
            self._write_metric(step, value)
            if math.isfinite(value):
                decision = self._request(Report(self._ticket, step, value, self.take_used()))
                decision = decision if decision == "pause" else bool(decision)
            else:
                decision = False
        decision = self._share(decision)
        self._pause = decision == "pause"
        self._prune = decision is True

    def log_metrics(self, step: int, metrics: Mapping[str, float] | None = None, /, **named: float) -> None:
        """Log named metrics of one step (an epoch, a batch) into the trial's ``metrics.csv``.

        ``trial.log_metrics(epoch, train_loss=0.31, lr=1e-3)`` or ``trial.log_metrics(epoch, {"train_loss": 0.31})``
        (a dict, as Ray Tune's ``report`` takes). They go next to the value ``report`` gave for the
        same step, one row per step, and the report draws them. Unlike ``report``, they do not
        reach the pruner or the study. Only the group's rank 0 writes (average over the group first).
        """
        values = {**(metrics or {}), **named}
        if not values:
            raise ValueError("log_metrics: give at least one metric, e.g. log_metrics(step, train_loss=0.3)")
        clean: dict[str, float] = {}
        for key, value in values.items():
            if not isinstance(key, str) or not key or key in MetricsFile.FIXED:
                raise ValueError(f"log_metrics: metric names are non-empty strings other than "
                                 f"{', '.join(MetricsFile.FIXED)}, not {key!r}")
            try:
                clean[key] = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"log_metrics: {key}={value!r} is not a number") from None
        if self.group.rank == 0:
            self._metrics.record(int(step), clean, time.time() - self._started)

    def should_prune(self) -> bool:
        """Whether the pruner wants this trial stopped; the same answer on every rank of the group."""
        return self._prune

    # --- outputs ----------------------------------------------------------------------------
    def save_predictions(self, split: str = "test", **arrays: Any) -> Path:
        """Save this trial's predictions on one split, for ensembles built from the search.

        Args:
            split: "val" (what greedy selection scores), "cal" (calibration set for conformal
                intervals) or "test" (the held-out set ``uq_metrics.json`` scores).
            **arrays: ``y`` plus ``mean`` (and ``var``) for regression, or ``probs`` (N, C);
                optionally ``x`` and ``mc_mean``/``mc_var`` (T, N). The same arrays as
                ``member.save_predictions``.

        Returns:
            The file (``predictions_val.npz``, ``predictions_cal.npz`` or ``predictions.npz``
            in the trial folder), written by the group's rank 0.

        Example (inside an objective)::

            trial.save_predictions("val", y=y_val, mean=mu, var=var)
        """
        from hpwf.workflow import _predictions as predictions

        return predictions.save(self.folder, self.group.rank, split, arrays)

    def save_weights(self, state: Any) -> Path:
        """Save the trial's weights (e.g. ``model.state_dict()``) as ``weights.pt``; rank 0 writes."""
        from hpwf.workflow import _predictions as predictions

        return predictions.save_weights(self.folder, self.group.rank, state)

    def should_pause(self) -> bool:
        """Whether the scheduler wants this trial paused now (then call `pause`); same on every rank."""
        return self._pause

    def pause(self, state: Any) -> NoReturn:
        """Save ``state`` (rank 0 of the group writes it) and end the trial until it is resumed.

        The trial resumes later, maybe on other ranks, with the same number and its earlier
        reports; `restore` then returns ``state`` and the step after the last one reported.

        Raises:
            TrialPaused: always (let it propagate out of the objective).
        """
        step = max(self.intermediate_values) + 1 if self.intermediate_values else 0
        if self.group.rank == 0:
            import torch

            from hpwf.rundir._perms import atomic_writer

            with atomic_writer(self.folder / PAUSE_CHECKPOINT) as f:  # a fresh file: no planted link followed
                torch.save({"step": step, "state": state}, f)
        self._share(None)  # every rank leaves once rank 0 has written
        raise TrialPaused(step)

    def restore(self) -> Restored | None:
        """The state saved by the last `pause` this trial continues from, or None (a fresh start).

        Rank 0 reads the checkpoint file as it was written (bit for bit) and hands it to every
        rank of the group. In PBT the checkpoint may be another member's (an exploit).
        """
        where = self.user_attrs.get(RESTORE_ATTR)
        if not where:
            return None
        loaded = None
        if self.group.rank == 0:
            import torch

            from hpwf.rundir._trialdir import trial_folder

            path = trial_folder(self._run_dir, int(where["from"])) / PAUSE_CHECKPOINT
            loaded = torch.load(path, weights_only=True)  # tensors and plain containers, never code
        loaded = self._share(loaded)
        return Restored(loaded["state"], int(loaded["step"]))

    def set_user_attr(self, key: str, value: Any) -> None:
        """Attach a JSON-serialisable value to the trial in the study.

        Raises:
            TypeError: ``value`` is not JSON-serialisable (a tensor, say: use ``float(t)``).
        """
        import json

        from hpwf.wire._protocol import UserAttr

        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"set_user_attr({key!r}, ...): the value must be JSON-serialisable "
                            f"(a {type(value).__name__} is not): {exc}") from None
        self.user_attrs[key] = value
        if self.group.rank == 0:
            self._request(UserAttr(self._ticket, str(key), value, self.take_used()))

    def take_used(self) -> dict[str, Any] | None:
        """Prefetched parameters used since the last message (they travel with the next one)."""
        used, self._unsent = self._unsent, {}
        return used or None

    def _write_metric(self, step: int, value: float) -> None:
        self._metrics.record(step, {"value": value}, time.time() - self._started)

    def flush_metrics(self) -> list[dict[str, Any]] | None:
        """Write ``metrics.csv`` if the trial has a folder by now; else return its rows (step, value,
        elapsed_s, time), for the trial's record in the results log."""
        self._metrics.flush()
        return None if self._metrics.written else [dict(row) for row in self._metrics.rows]


class MetricsFile:
    """A trial's ``metrics.csv``: ``step,value,elapsed_s`` then the named metrics, one row per step.

    ``report`` fills ``value``, ``log_metrics`` the named columns; calls for the step of the last
    row complete that row. Rows are appended; only a new metric name rewrites the file (with
    the wider header), so per-batch logging stays cheap. The file is written only while its
    folder exists or once a named metric is logged: the values ``report`` gives are in the
    study already, so a trial that writes nothing of its own creates no file.

    Example:
        >>> import tempfile, pathlib
        >>> f = MetricsFile(pathlib.Path(tempfile.mkdtemp()) / "metrics.csv")
        >>> f.record(0, {"value": 0.5}, 1.0, now=5.0); f.record(0, {"loss": 0.7}, 1.2, now=5.2)
        >>> f.record(1, {"loss": 0.6}, 2.0, now=6.0)
        >>> print(f.path.read_text().strip())
        step,value,elapsed_s,time,loss
        0,0.5,1.200,5.200,0.7
        1,,2.000,6.000,0.6
    """

    FIXED = ("step", "value", "elapsed_s", "time")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] = list(self.FIXED)
        self.rows: list[dict[str, Any]] = []
        self._last_row_at: int | None = None  # byte offset where the last row starts
        if path.exists():  # a trial resumed from a pause goes on with its earlier rows
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                for row in reader:
                    self.rows.append({k: (int(v) if k == "step" else float(v)) for k, v in row.items() if v})
                self.columns += [c for c in reader.fieldnames or () if c not in self.columns]

    def record(self, step: int, values: dict[str, float], elapsed: float, now: float | None = None) -> None:
        """Add ``values`` to the row of ``step`` (the last row when it has that step, else a new one).

        ``elapsed_s`` is the time since this attempt started; ``time`` the clock (``now``), so
        the attempts of a resumed trial line up.
        """
        wider = [k for k in values if k not in self.columns]
        self.columns += wider
        same_row = bool(self.rows) and self.rows[-1]["step"] == step
        if same_row:
            self.rows[-1].update(values)
        else:
            self.rows.append({"step": step, **values})
        self.rows[-1]["elapsed_s"] = elapsed
        self.rows[-1]["time"] = time.time() if now is None else now
        if self._last_row_at is None and not (wider or self.path.parent.is_dir()):
            return  # kept in memory: `flush` writes it if the trial gets a folder
        if wider or self._last_row_at is None:
            self._rewrite()
            return
        with self.path.open("r+b") as f:
            at = self._last_row_at if same_row else f.seek(0, 2)
            f.seek(at)
            f.truncate()
            f.write(self._line(self.rows[-1]))
            self._last_row_at = at

    @property
    def written(self) -> bool:
        """Whether the file holds the rows (or there are none)."""
        return self._last_row_at is not None or not self.rows

    def flush(self) -> None:
        """Write the rows kept in memory, if the folder exists by now."""
        if self.rows and self._last_row_at is None and self.path.parent.is_dir():
            self._rewrite()

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        head = self._line({c: c for c in self.columns})
        lines = [self._line(row) for row in self.rows]
        with self.path.open("wb") as f:
            f.write(head + b"".join(lines))
        self._last_row_at = len(head) + sum(map(len, lines[:-1]))

    def _line(self, row: dict[str, Any]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow([_cell(c, row.get(c)) for c in self.columns])
        return out.getvalue().encode()


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in ("elapsed_s", "time") and isinstance(value, float):
        return f"{value:.3f}"
    if column == "step" or isinstance(value, str):
        return str(value)
    return repr(float(value))


def _deprecated(name: str, instead: str) -> None:
    warnings.warn(f"{name} is deprecated in Optuna (v3.0.0); use {instead} instead", FutureWarning, stacklevel=3)


def is_pruned(exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna's ``TrialPruned`` (never true while Optuna is not imported)."""
    exceptions = sys.modules.get("optuna.exceptions")
    return exceptions is not None and isinstance(exc, exceptions.TrialPruned)


def __getattr__(name: str) -> Any:
    if name == "TrialPruned":  # Optuna's, imported when first used
        from optuna.exceptions import TrialPruned

        return TrialPruned
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Trial", "Group", "MetricsFile", "Restored", "TrialPaused", "TrialPruned", "is_pruned"]
