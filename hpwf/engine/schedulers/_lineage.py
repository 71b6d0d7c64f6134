"""A PBT run read back from its study: the schedule of params a segment's lineage followed, the
lineage of every member (value by generation, exploit edges) and the best final segment."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from hpwf.rundir import PBT_EXPLOITED as EXPLOITED
from hpwf.rundir import PBT_GENERATION as GENERATION
from hpwf.rundir import PBT_MEMBER as MEMBER
from hpwf.rundir import PBT_PARENT as PARENT
from hpwf.rundir import RESTORE_ATTR

def schedule(study: optuna.Study, number: int) -> list[dict[str, Any]]:
    """The lineage of segment ``number``, oldest first: [{trial, generation, start_step, params}].

    Replaying it (train with each entry's params from its start step) reproduces the schedule
    of hyperparameters that PBT found.
    """
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    chain = []
    current: int | None = number
    while current is not None and current in trials:
        frozen = trials[current]
        restore = frozen.user_attrs.get(RESTORE_ATTR) or {}
        chain.append({"trial": frozen.number, "generation": frozen.user_attrs.get(GENERATION, 0),
                      "start_step": int(restore.get("step", 0)), "params": dict(frozen.params),
                      "value": frozen.value})
        parent = frozen.user_attrs.get(PARENT)
        current = int(parent) if parent is not None else None
    return chain[::-1]


def lineage(study: optuna.Study) -> dict[str, Any] | None:
    """PBT's segments with their parents, and the best final segment's schedule (None: no PBT)."""
    segments = [t for t in study.get_trials(deepcopy=False) if MEMBER in t.user_attrs]
    if not segments:
        return None
    rows = [{"trial": t.number, "member": t.user_attrs[MEMBER], "generation": t.user_attrs.get(GENERATION, 0),
             "parent": t.user_attrs.get(PARENT), "exploited": bool(t.user_attrs.get(EXPLOITED)),
             "start_step": int((t.user_attrs.get(RESTORE_ATTR) or {}).get("step", 0)),
             "state": t.state.name, "value": t.value, "params": dict(t.params)} for t in segments]
    done = [t for t in segments if t.state == TrialState.COMPLETE and t.value is not None]
    last = max((int(t.user_attrs.get(GENERATION, 0)) for t in done), default=0)
    finals = [t for t in done if int(t.user_attrs.get(GENERATION, 0)) == last]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best = (max if maximize else min)(finals, key=lambda t: t.value) if finals else None  # type: ignore[arg-type,return-value]
    return {"members": len({r["member"] for r in rows}), "segments": len(rows), "segments_list": rows,
            "best_final": best.number if best else None,
            "best_schedule": schedule(study, best.number) if best else []}


def pbt_best_final(study: optuna.Study, info: dict[str, Any] | None = None) -> Any:
    """A PBT run's best segment of the last generation (what ``best`` means for PBT), else None."""
    info = info if info is not None else lineage(study)
    if not info or info.get("best_final") is None:
        return None
    return next((t for t in study.get_trials(deepcopy=False) if t.number == info["best_final"]), None)
