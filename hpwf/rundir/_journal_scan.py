"""What ``hpwf status`` needs from a journal file, read without Optuna and without its lock.

Optuna replays every record of a journal into trial objects (seconds at 10^5 trials);
``hpwf status`` needs only each trial's state and value and the best trial's parameters. `scan`
reads the file once, decodes only the records that create a trial or set its state (and the
user attributes that mark a paused trial), and the best trial's parameters. It takes no lock:
a writer only appends, and a last record without its newline (being written) is skipped.

It answers ``None`` for what it does not read (a study with several objectives, a deleted
study, PBT segments): the caller then asks Optuna.

Example:
    >>> import tempfile, optuna, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "study.journal"
    >>> from optuna.storages.journal import JournalFileBackend
    >>> study = optuna.create_study(study_name="s", storage=optuna.storages.JournalStorage(JournalFileBackend(str(path))))
    >>> study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    >>> scan(path, "s")["counts"]["complete"]
    3
"""

from __future__ import annotations

import io
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, cast

from hpwf.rundir._attrs import PAUSED_ATTR
from hpwf.rundir._safe_open import open_file

_MARKERS = (b'"pbt:member"', b'\n{"op_code":1,', b'"hpwf:paused"')  # PBT's lineage, a deleted study: Optuna
_OP0 = re.compile(rb'\n(\{"op_code":0,[^\n]*)')
_OP4 = re.compile(rb'\n\{"op_code":4,"worker_id":"[^"\n]*","study_id":(\d+)([^\n]*)')
_OP4_PLAIN = re.compile(rb'\n\{"op_code":4,"worker_id":"[^"\n]*","study_id":\d+,"datetime_start":"[^"\n]*"\}\n')
_OP6 = re.compile(rb'\n\{"op_code":6,"worker_id":"[^"\n]*","trial_id":(\d+),"state":(\d),"values":(null|\[[^\]\n]*\])')
_OP6_ANY = re.compile(rb'\n(\{"op_code":6,[^\n]*)')
_OP8_PAUSED = re.compile(rb'\n(\{"op_code":8,[^\n]*"hpwf:paused"[^\n]*)')
_STATES = {0: "running", 1: "complete", 2: "pruned", 3: "fail", 4: "waiting"}  # optuna.trial.TrialState


def scan(path: Path, study_name: str) -> dict[str, Any] | None:
    """Counts by state, RUNNING trials marked paused, and the best trial of ``study_name``.

    Returns ``{"counts": {...}, "paused": [numbers], "running": [numbers], "resumed": [numbers
    marked resumed], "best": (number, value, params) | None, "n_trials": int}``, or ``None`` where
    only Optuna can answer.
    """
    with open_file(path, "rb") as f:  # read after a newline of our own: every record starts with one
        size = os.fstat(f.fileno()).st_size
        data = bytearray(size + 1)
        data[0] = 10
        size = cast(io.BufferedReader, f).readinto(memoryview(data)[1:]) + 1
    end = data.rfind(b"\n", 0, size) + 1  # a last record without its newline is being written
    quick = _one_study_plain(data, end, study_name)
    if quick is not None:
        return quick
    markers = {m for m in _MARKERS if data.find(m, 0, end) >= 0}
    if b"\n{\"op_code\":1," in markers or b'"pbt:member"' in markers:
        return None  # a deleted study (ids shift), or PBT
    study_id, minimize = -1, True
    names: list[str] = []  # by study id; a second create of a name (load_if_exists) makes no study
    for line in _OP0.findall(data, 0, end):
        record = json.loads(line)
        if record["study_name"] in names:
            continue
        if record["study_name"] == study_name:
            if len(record["directions"]) != 1:
                return None
            study_id, minimize = len(names), record["directions"][0] == 1
        names.append(record["study_name"])
    n_studies = len(names)
    if study_id < 0:
        return None
    trial_ids: dict[int, int] = {}  # trial id -> number, for this study's trials
    state: list[int] = []  # by number
    value: list[float | None] = []
    paused: set[int] = set()
    marks: dict[int, Any] = {}  # the last hpwf:paused mark of a trial (False: resumed)
    made: dict[int, dict[str, Any]] = {}  # the params of trials created whole (add_trial, enqueued)
    n_created = data.count(b'\n{"op_code":4,', 0, end)
    if n_studies == 1 and len(_OP4_PLAIN.findall(data, 0, end)) == n_created:  # the common case, at C speed
        trial_ids = dict(zip(range(n_created), range(n_created)))
        state, value = [0] * n_created, [None] * n_created
    else:
        created = _OP4.findall(data, 0, end)
        if len(created) != n_created:
            return None  # records written in another shape: Optuna reads them
        for tid, (sid, rest) in enumerate(created):
            if b'"state"' in rest or b'"user_attrs"' in rest or b'"values"' in rest:  # a trial made whole (enqueued)
                record = json.loads(b'{"study_id":' + sid + rest)
                if int(sid) == study_id:
                    made[tid] = record.get("params") or {}
                    trial_ids[tid] = len(state)
                    state.append(int(record.get("state", 0)))
                    values = record.get("values")  # (a single-objective trial made whole writes "value")
                    value.append(values[0] if values else record.get("value"))
                    if PAUSED_ATTR in (record.get("user_attrs") or {}):
                        marks[tid] = record["user_attrs"][PAUSED_ATTR]
                        if marks[tid] not in (None, False):
                            paused.add(tid)
            elif int(sid) == study_id:
                trial_ids[tid] = len(state)
                state.append(0)
                value.append(None)
    ends = _OP6.findall(data, 0, end)
    if len(ends) != data.count(b'\n{"op_code":6,', 0, end):
        ends = [(str(r["trial_id"]).encode(), str(r["state"]).encode(), json.dumps(r.get("values")).encode())
                for r in map(json.loads, _OP6_ANY.findall(data, 0, end))]
    last = {tid_text: (code, values_text) for tid_text, code, values_text in ends}  # the latest record wins
    for tid_text, (code, values_text) in last.items():
        number = trial_ids.get(int(tid_text))
        if number is not None:
            state[number] = int(code)
            if code == b"1" and values_text not in (b"null", b"[]"):
                value[number] = float(values_text[1:].split(b",", 1)[0].rstrip(b"]"))
    if b'"hpwf:paused"' in markers:
        for line in _OP8_PAUSED.findall(data, 0, end):
            record = json.loads(line)
            if record["trial_id"] in trial_ids:
                mark = record["user_attr"][PAUSED_ATTR]
                marks[record["trial_id"]] = mark
                (paused.add if mark not in (None, False) else paused.discard)(record["trial_id"])
    counts = dict.fromkeys(("complete", "pruned", "fail", "running", "paused", "waiting"), 0)
    for code, n in Counter(state).items():
        counts[_STATES.get(code, "fail")] += n
    paused_numbers = {trial_ids[t] for t in paused}
    running = [number for number, code in enumerate(state) if code == 0]
    counts["paused"] = sum(number in paused_numbers for number in running)
    counts["running"] -= counts["paused"]
    done = [(v, number) for number, v in enumerate(value) if v is not None and state[number] == 1]
    pick = None if not done else min(done, key=lambda d: d[0]) if minimize else max(done, key=lambda d: d[0])
    best = None if not done or pick is None else (pick[1], pick[0])
    by_number = {n: t for t, n in trial_ids.items()}
    resumed = sorted(trial_ids[t] for t, mark in marks.items() if mark is False and t in trial_ids)
    return {"counts": counts, "running": running, "paused": sorted(paused_numbers), "resumed": resumed,
            "n_trials": len(state),
            "best": None if best is None else (best[0], best[1], {**made.get(by_number[best[0]], {}),
                                                                  **_params(data, end, by_number[best[0]])})}


# One pass for the common journal: one study, trials created plain (op 4) and ended (op 6) in
# Optuna's compact shape. hpwf's run id (a user attribute of every trial) is passed over in the
# pattern; another study, a deleted one, a trial created whole or ended in another shape, a pause
# mark or PBT's lineage send the scan to the general path above.
_PLAIN = re.compile(
    rb'\n\{"op_code":(?:4,"worker_id":"[^"\n]*","study_id":\d+,"datetime_start":"[^"\n]*"(\})(?=\n)'
    rb'|6,"worker_id":"[^"\n]*","trial_id":(\d+),"state":(\d),"values":(null|\[[^\]\n]*\])'
    rb'|(?!8,"worker_id":"[^"\n]*","trial_id":\d+,"user_attr":\{"hpwf:run":"[^"\n]*"\}\}\n)([0-4689][^\n]*))')


def _one_study_plain(data: bytearray, end: int, study_name: str) -> dict[str, Any] | None:
    """`scan`'s answer from one regular-expression pass, or ``None`` where the journal is not the
    common kind (then the general path reads it)."""
    found = _PLAIN.findall(data, 0, end)
    if not found:
        return None
    created, tids, codes, values, others = zip(*found)  # columns, at C speed
    study = None
    for other in filter(None, others):
        if other[:2] == b"0,":
            record = json.loads(b'{"op_code":' + other)
            if study is not None and record["study_name"] != study["study_name"]:
                return None  # a second study
            study = study or record
        elif other[:2] in (b"1,", b"4,", b"6,") or b'"hpwf:paused"' in other or b'"pbt:member"' in other:
            return None
    if study is None or study["study_name"] != study_name or len(study["directions"]) != 1:
        return None
    n_created = len(created) - created.count(b"")  # trial id = number: one study
    last = dict(zip(tids, zip(codes, values)))  # the latest record of a trial wins, as in the general path
    last.pop(b"", None)
    if any(int(tid) >= n_created for tid in last):
        return None
    counts = dict.fromkeys(("complete", "pruned", "fail", "running", "paused", "waiting"), 0)
    for code, n in Counter(code for code, _ in last.values()).items():
        counts[_STATES.get(int(code), "fail")] += n
    counts["running"] += n_created - len(last)  # created, never ended
    ended = {int(tid) for tid, (code, _) in last.items() if code != b"0"}
    done = [(float(text[1:].split(b",", 1)[0].rstrip(b"]")), int(tid)) for tid, (code, text) in last.items()
            if code == b"1" and text not in (b"null", b"[]")]
    pick = None if not done else min(done) if study["directions"][0] == 1 else max(done, key=lambda d: (d[0], -d[1]))
    return {"counts": counts, "running": [number for number in range(n_created) if number not in ended], "paused": [],
            "resumed": [], "n_trials": n_created,
            "best": None if pick is None else (pick[1], pick[0], _params(data, end, pick[1]))}


_AS_STORED = {"FloatDistribution", "UniformDistribution", "LogUniformDistribution", "DiscreteUniformDistribution"}
_AS_INT = {"IntDistribution", "IntUniformDistribution", "IntLogUniformDistribution"}


def _external(distribution: str, internal: Any) -> Any:
    """Optuna's external representation of a stored parameter value, as its distribution's
    ``to_external_repr`` gives it, without importing Optuna for the common distributions
    (``hpwf status`` stays light); any other distribution through Optuna itself."""
    spec = json.loads(distribution)
    name = spec.get("name")
    if name in _AS_STORED:
        return internal
    if name in _AS_INT:
        return int(internal)
    if name == "CategoricalDistribution":
        return spec["attributes"]["choices"][int(internal)]
    from optuna.distributions import json_to_distribution

    return json_to_distribution(distribution).to_external_repr(internal)


def _params(data: bytearray, end: int, trial_id: int) -> dict[str, Any]:
    """One trial's parameters, in Optuna's external representation (its few records only)."""
    params: dict[str, Any] = {}
    key = b'"trial_id":%d,"param_name"' % trial_id
    at = data.find(key, 0, end)
    while at >= 0:
        start, stop = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at, end)
        record = json.loads(data[start:stop])
        at = data.find(key, stop, end)
        if record.get("op_code") != 5:
            continue
        params[record["param_name"]] = _external(record["distribution"], record["param_value_internal"])
    return params
