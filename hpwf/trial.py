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
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, NoReturn, Sequence

from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
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
        distributions: dict[str, BaseDistribution],
        *,
        seed: int,
        folder: Path,
        request: Request,
        group: Group = Group(),
        share: Callable[[Any], Any] = lambda value: value,
        ticket: int | None = None,
    ) -> None:
        self.number = number
        self._ticket = number if ticket is None else ticket  # names this attempt in messages
        self.seed = seed
        self.folder = folder
        self.group = group
        self._prefetched = dict(params)
        self._prefetched_dists = dict(distributions)
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}
        self.user_attrs: dict[str, Any] = {}
        self.intermediate_values: dict[int, float] = {}
        self._request = request
        self._share = share  # rank 0's answer to every rank of the group
        self._prune = False
        self._pause = False
        self._started = time.time()
        self._metrics = folder / "metrics.csv"

    # --- sampling -------------------------------------------------------------------------
    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        """Sample a float in [low, high] (log scale or on a step grid if asked)."""
        return float(self._suggest(name, FloatDistribution(low, high, log=log, step=step)))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        """Sample an integer in [low, high]."""
        return int(self._suggest(name, IntDistribution(low, high, log=log, step=step)))

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalChoiceType]
    ) -> CategoricalChoiceType:
        """Sample one of ``choices``."""
        return self._suggest(name, CategoricalDistribution(choices))

    def _suggest(self, name: str, distribution: BaseDistribution) -> Any:
        if name in self.params:
            if self.distributions[name] != distribution:
                raise ValueError(f"parameter {name!r} suggested again with another range")
            return self.params[name]
        if self._prefetched_dists.get(name) == distribution:
            value = self._prefetched[name]
        else:
            from hpwf._protocol import Suggest

            value = self._share(
                self._request(Suggest(self._ticket, name, distribution)) if self.group.rank == 0 else None
            )
        self.params[name] = value
        self.distributions[name] = distribution
        return value

    # --- pruning --------------------------------------------------------------------------
    def report(self, value: float, step: int) -> None:
        """Report an intermediate value (e.g. the epoch's validation metric) to the pruner.

        Only the group's rank 0 reports; average the value over the group first if it differs.
        """
        from hpwf._protocol import Report

        value = float(value)
        step = int(step)
        self.intermediate_values[step] = value
        decision: Any = None
        if self.group.rank == 0:
            self._write_metric(step, value)
            if math.isfinite(value):
                decision = self._request(Report(self._ticket, step, value))
                decision = decision if decision == "pause" else bool(decision)
            else:
                decision = False
        decision = self._share(decision)
        self._pause = decision == "pause"
        self._prune = decision is True

    def should_prune(self) -> bool:
        """Whether the pruner wants this trial stopped; the same answer on every rank of the group."""
        return self._prune

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

            path = self.folder / PAUSE_CHECKPOINT
            tmp = path.with_name(f".{path.name}.tmp")
            torch.save({"step": step, "state": state}, tmp)
            import os

            os.replace(tmp, path)
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

            path = self.folder.parent / f"{int(where['from']):05d}" / PAUSE_CHECKPOINT
            loaded = torch.load(path, weights_only=False)
        loaded = self._share(loaded)
        return Restored(loaded["state"], int(loaded["step"]))

    def set_user_attr(self, key: str, value: Any) -> None:
        """Attach a JSON-serialisable value to the trial in the study.

        Raises:
            TypeError: ``value`` is not JSON-serialisable (a tensor, say: use ``float(t)``).
        """
        import json

        from hpwf._protocol import UserAttr

        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"set_user_attr({key!r}, ...): the value must be JSON-serialisable "
                            f"(a {type(value).__name__} is not): {exc}") from None
        self.user_attrs[key] = value
        if self.group.rank == 0:
            self._request(UserAttr(self._ticket, str(key), value))

    def _write_metric(self, step: int, value: float) -> None:
        new = not self._metrics.exists()
        with self._metrics.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "value", "elapsed_s", "time"])
            now = time.time()  # elapsed_s: in this attempt; time: the clock (attempts of a resumed trial append)
            writer.writerow([step, repr(value), f"{now - self._started:.3f}", f"{now:.3f}"])


__all__ = ["Trial", "Group", "TrialPaused", "TrialPruned", "Restored"]
