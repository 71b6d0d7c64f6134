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

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NoReturn, Sequence

from hpwf.rundir import RESTORE_ATTR, make_folder
from hpwf.wire import Dist, dists as _dists
from hpwf.workflow._compat import OptunaOldNames
from hpwf.workflow._metrics import MetricsFile
from hpwf.workflow._pause import Restored, TrialPaused, load_pause, save_pause
from hpwf.workflow._topology import Group

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution, CategoricalChoiceType
    from optuna.exceptions import TrialPruned

Request = Callable[[Any], Any]  # send a message to the coordinator and return its reply value


class Trial(OptunaOldNames):
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
        if run_dir is None:  # trials/SSS/NNNNN (sharded), or trials/NNNNN (an older run's)
            run_dir = folder.parents[1] if folder.parent.name == "trials" else folder.parents[2]
        self._run_dir = run_dir
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
    def run_dir(self) -> Path:
        """The run directory this trial belongs to (its folder is ``run_dir/trials/SSS/NNNNN``)."""
        return self._run_dir

    @property
    def folder(self) -> Path:
        """The trial's own folder (``RUN_DIR/trials/SSS/NNNNN``), created when first asked for."""
        make_folder(self._folder)  # (through the run directory's descriptor)
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
                from hpwf.wire import Used

                self._request(Used(self._ticket, self.take_used()))
        else:
            from hpwf.wire import Suggest

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
        from hpwf.wire import PAUSE, Report

        value = float(value)
        step = int(step)
        self.intermediate_values[step] = value
        decision: Any = None
        if self.group.rank == 0:
            self._write_metric(step, value)
            if math.isfinite(value):
                decision = self._request(Report(self._ticket, step, value, self.take_used()))
                decision = decision if decision == PAUSE else bool(decision)
            else:
                decision = False
        decision = self._share(decision)
        self._pause = decision == PAUSE
        self._prune = decision is True

    def log_metrics(self, step: int, metrics: Mapping[str, float] | None = None, /, **named: float) -> None:
        """Log named metrics of one step (an epoch, a batch) into the trial's ``metrics.csv``.

        ``trial.log_metrics(epoch, train_loss=0.31, lr=1e-3)`` or ``trial.log_metrics(epoch, {"train_loss": 0.31})``
        (a dict, as Ray Tune's ``report`` takes). They go next to the value ``report`` gave for the
        same step, one row per step, and the report draws them. Unlike ``report``, they do not
        reach the pruner or the study. Only the group's rank 0 writes (average over the group first).
        """
        clean = MetricsFile.checked({**(metrics or {}), **named})
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
            save_pause(self.folder, step, state)
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
        loaded = load_pause(self._run_dir, int(where["from"])) if self.group.rank == 0 else None
        return self._share(loaded)

    def set_user_attr(self, key: str, value: Any) -> None:
        """Attach a JSON-serialisable value to the trial in the study.

        Raises:
            TypeError: ``value`` is not JSON-serialisable (a tensor, say: use ``float(t)``).
        """
        import json

        from hpwf.wire import UserAttr

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


def is_pruned(exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna's ``TrialPruned`` (never true while Optuna is not imported)."""
    exceptions = sys.modules.get("optuna.exceptions")
    return exceptions is not None and isinstance(exc, exceptions.TrialPruned)


def __getattr__(name: str) -> Any:
    if name == "TrialPruned":  # Optuna's, imported when first used
        from optuna.exceptions import TrialPruned

        return TrialPruned
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Trial", "Group", "Restored", "TrialPaused", "TrialPruned", "is_pruned"]
