"""A whole study read from a journal file in one go, for readers (``hpwf report``).

Optuna's journal storage replays every record and copies the trial it changes on each (it
keeps trials immutable for a live writer): at 10^5 trials with a few reports each that is most
of a report's time. `read_study` decodes the records by kind with regular expressions, applies
them with Optuna's rules (a record on a finished trial is ignored; a second RUNNING of a popped
trial is ignored), and returns an ``optuna.Study`` over a read-only storage holding the result,
so Optuna's own plots, ``best_trial`` and ``trials_dataframe`` work on it unchanged. It takes no
lock. ``None``: a file it does not read (a deleted study, records of another shape); then ask
Optuna.
"""

from __future__ import annotations

import io
import json
import os
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Container, Sequence, cast

import optuna
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from hpwf.rundir._safe_open import open_file

_LINE = {op: re.compile(rb'\n(\{"op_code":%d,[^\n]*)' % op) for op in (0, 2, 3, 4, 8, 9)}
_TRIAL = rb'\n\{"op_code":%d,"worker_id":"[^"\n]*","trial_id":(\d+),'
_PARAM = re.compile(_TRIAL % 5 + rb'"param_name":("(?:[^"\\\n]|\\.)*"),"param_value_internal":([^,\n]*),'
                    rb'"distribution":("(?:[^"\\\n]|\\.)*")\}')
_STATE = re.compile(_TRIAL % 6 + rb'"state":(\d),"values":(null|\[[^\]\n]*\])(?:,"datetime_start":"([^"\n]*)")?'
                    rb'(?:,"datetime_complete":"([^"\n]*)")?\}')
_INTERMEDIATE = re.compile(_TRIAL % 7 + rb'"step":(\d+),"intermediate_value":([^}\n]*)\}')
_ATTR = {8: re.compile(_TRIAL % 8 + rb'"user_attr":([^\n]*)\}(?=\n)'),
         9: re.compile(_TRIAL % 9 + rb'"system_attr":([^\n]*)\}(?=\n)')}
_FINISHED = (1, 2, 3)


def read_study(path: Path, study_name: str) -> optuna.Study | None:
    """The study ``study_name`` of the journal at ``path``, read whole (see the module's note)."""
    with open_file(path, "rb") as f:
        data = bytearray(os.fstat(f.fileno()).st_size + 1)
        data[0] = 10
        size = cast(io.BufferedReader, f).readinto(memoryview(data)[1:]) + 1
    end = data.rfind(b"\n", 0, size) + 1
    if data.find(b'\n{"op_code":1,', 0, end) >= 0:
        return None
    names: list[str] = []
    study_id, directions = -1, [StudyDirection.MINIMIZE]
    user_attrs: dict[str, Any] = {}
    system_attrs: dict[str, Any] = {}
    for line in _LINE[0].findall(data, 0, end):
        record = json.loads(line)
        if record["study_name"] not in names:
            if record["study_name"] == study_name:
                study_id, directions = len(names), [StudyDirection(d) for d in record["directions"]]
            names.append(record["study_name"])
    if study_id < 0:
        return None
    for op, attrs in ((2, user_attrs), (3, system_attrs)):
        for line in _LINE[op].findall(data, 0, end):
            record = json.loads(line)
            if record["study_id"] == study_id:
                attrs.update(record["user_attr" if op == 2 else "system_attr"])
    trials: dict[int, FrozenTrial] = {}  # trial id -> trial, this study's only
    for tid, line in enumerate(_LINE[4].findall(data, 0, end)):
        record = json.loads(line)
        if record["study_id"] == study_id:
            trials[tid] = _created(tid, len(trials), record)
    counts = [data.count(b'\n{"op_code":%d,' % op, 0, end) for op in (5, 6, 7)]
    if len(_LINE[4].findall(data, 0, end)) != data.count(b'\n{"op_code":4,', 0, end):
        return None
    # where records on a trial stop counting: the record that finished it (-1: created finished)
    finished_at: dict[int, int] = {t: -1 for t, trial in trials.items() if trial.state.value in _FINISHED}
    states = list(_STATE.finditer(data, 0, end))
    if len(states) != counts[1]:
        return None
    for m in states:
        trial = trials.get(int(m.group(1)))
        if trial is None or int(m.group(1)) in finished_at:
            continue
        state = TrialState(int(m.group(2)))
        if state == TrialState.RUNNING and trial.state == TrialState.RUNNING:
            continue  # popped by another process first
        if state == TrialState.RUNNING and m.group(4):
            trial.datetime_start = _time(m.group(4))
        if state.is_finished():
            trial.datetime_complete = _time(m.group(5)) if m.group(5) else None
            finished_at[int(m.group(1))] = m.start()
        trial.state = state
        if m.group(3) != b"null":
            trial._values = [float(v) for v in json.loads(m.group(3))]  # (Optuna keeps them as written)
    params = list(_PARAM.finditer(data, 0, end))
    steps = list(_INTERMEDIATE.finditer(data, 0, end))
    if len(params) != counts[0] or len(steps) != counts[2]:
        return None
    no_end = len(data) + 1
    for m in params:
        tid = int(m.group(1))
        if tid in trials and m.start() < finished_at.get(tid, no_end):
            trial, name, dist = trials[tid], _text(bytes(m.group(2))), _distribution(bytes(m.group(4)))
            trial._params[name] = dist.to_external_repr(_float(m.group(3)))
            trial._distributions[name] = dist
    if not _apply_attrs(data, end, trials, finished_at, no_end):
        return None
    for m in steps:
        tid = int(m.group(1))
        if tid in trials and m.start() < finished_at.get(tid, no_end):
            trials[tid].intermediate_values[int(m.group(2))] = _float(m.group(3))
    storage = FrozenStorage(study_name, directions, list(trials.values()), user_attrs, system_attrs)
    return optuna.Study(study_name, storage)


def _float(text: bytes) -> float:
    try:
        return float(text)  # also NaN, Infinity, -Infinity as JSON writes them
    except ValueError:
        return float(json.loads(text))


def _apply_attrs(data: bytearray, end: int, trials: dict[int, FrozenTrial], finished_at: dict[int, int],
                 no_end: int) -> bool:
    """Trial user and system attributes, in order; False: records of a shape not read here."""
    for op, field in ((8, "_user_attrs"), (9, "_system_attrs")):
        found = list(_ATTR[op].finditer(data, 0, end))
        if len(found) != data.count(b'\n{"op_code":%d,' % op, 0, end):
            return False
        for m in found:
            tid = int(m.group(1))
            if tid in trials and m.start() < finished_at.get(tid, no_end):
                getattr(trials[tid], field).update(_attrs(bytes(m.group(2))))
    return True


def _created(tid: int, number: int, record: dict[str, Any]) -> FrozenTrial:
    dists = {k: json_to_distribution(v) for k, v in record.get("distributions", {}).items()}
    return FrozenTrial(
        number=number, trial_id=tid, state=TrialState(record.get("state", TrialState.RUNNING.value)),
        value=None, values=record.get("values"),
        datetime_start=_time(record["datetime_start"]) if record.get("datetime_start") else None,
        datetime_complete=_time(record["datetime_complete"]) if record.get("datetime_complete") else None,
        params={k: dists[k].to_external_repr(p) for k, p in record.get("params", {}).items()},
        distributions=dists, user_attrs=dict(record.get("user_attrs", {})),
        system_attrs=dict(record.get("system_attrs", {})),
        intermediate_values={int(k): v for k, v in record.get("intermediate_values", {}).items()})


@lru_cache(maxsize=4096)
def _distribution(quoted: bytes) -> BaseDistribution:
    """A distribution from its JSON string as the journal quotes it (the same few, many times)."""
    return json_to_distribution(json.loads(quoted))


@lru_cache(maxsize=4096)
def _text(quoted: bytes) -> str:
    return str(json.loads(quoted))


@lru_cache(maxsize=4096)
def _attrs(text: bytes) -> dict[str, Any]:
    """Attributes set on a trial (hpwf sets the same ones on every trial); never changed by callers."""
    return dict(json.loads(text))


def _time(text: bytes | str) -> datetime:
    """As Optuna stores it: local time, without a time zone."""
    return datetime.fromisoformat(text.decode() if isinstance(text, bytes) else text).astimezone().replace(tzinfo=None)


class FrozenStorage(BaseStorage):
    """One study's trials, read once: everything a reader asks works, nothing can be written."""

    def __init__(self, name: str, directions: list[StudyDirection], trials: list[FrozenTrial],
                 user_attrs: dict[str, Any], system_attrs: dict[str, Any]) -> None:
        self._name, self._directions, self._trials = name, directions, trials
        self._user, self._system = user_attrs, system_attrs
        self._by_id = {t._trial_id: t for t in trials}

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a study read from a journal for a report is read-only")

    create_new_study = delete_study = set_study_user_attr = set_study_system_attr = _read_only  # type: ignore[assignment]
    create_new_trial = set_trial_param = set_trial_state_values = _read_only  # type: ignore[assignment]
    set_trial_intermediate_value = set_trial_user_attr = set_trial_system_attr = _read_only  # type: ignore[assignment]

    def get_study_id_from_name(self, study_name: str) -> int:
        if study_name != self._name:
            raise KeyError(study_name)
        return 0

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._name

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return list(self._directions)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return dict(self._user)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return dict(self._system)

    def get_all_studies(self) -> list[FrozenStudy]:
        return [FrozenStudy(self._name, None, directions=self._directions, user_attrs=self._user,
                                         system_attrs=self._system, study_id=0)]

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._by_id[trial_id]

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials: Sequence[FrozenTrial] = self._trials if states is None else [t for t in self._trials if t.state in states]
        if deepcopy:
            import copy

            return copy.deepcopy(list(trials))
        return list(trials)
