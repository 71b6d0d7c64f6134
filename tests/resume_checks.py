"""Checks over the events that tests/workflows/resume_check.py logs, shared by the scheduler tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

import hpwf
from hpwf.engine.schedulers._pbt import EXPLOITED, GENERATION, PARENT
from hpwf.rundir import RESTORE_ATTR
from hpwf.rundir._trialdir import trial_folders


def events(run_dir: Path, rank: int = 0) -> dict[int, list[dict[str, Any]]]:
    """Per trial number, what ``rank`` of its group logged, in order."""
    out = {}
    for path in sorted(p / f"events.rank{rank}.jsonl" for p in trial_folders(run_dir) if (p / f"events.rank{rank}.jsonl").exists()):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            out[rows[0]["number"]] = rows
    return out


def check_never_trained_twice(run_dir: Path, ranks: int) -> None:
    """Every line of training continues where it stopped: counter == step everywhere, and every rank
    of a group restored the same weights (checksums equal)."""
    lead = events(run_dir)
    assert lead, "no trial logged anything"
    for number, rows in lead.items():
        assert all(r["counter"] == r["step"] for r in rows), (number, rows)
        for r in range(1, ranks):
            other = events(run_dir, r)[number]
            assert [(e["event"], e["step"], e.get("sha")) for e in other] == \
                   [(e["event"], e["step"], e.get("sha")) for e in rows], (number, r)


def check_sha_resumes(run_dir: Path, ranks: int, budget: int) -> int:
    """Successive halving with resumption: each restore continues the trial's own last pause; the
    budget is exact; a paused trial's ranks served others meanwhile. Returns the restores seen."""
    check_never_trained_twice(run_dir, ranks)
    study = hpwf.load_study(run_dir)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == budget and not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert hpwf.status(run_dir)["paused"] == 0
    lead = events(run_dir)
    restores = 0
    starts = sorted(e["t"] for rows in lead.values() for e in rows if e["event"] in ("fresh", "restore"))
    reused = False
    for rows in lead.values():
        for before, after in zip(rows, rows[1:]):
            if after["event"] == "restore":
                restores += 1
                assert before["event"] == "pause" and (before["step"], before["sha"]) == (after["step"], after["sha"])
                reused |= any(before["t"] < t < after["t"] for t in starts)  # another trial used the ranks
        assert sum(e["event"] == "fresh" for e in rows) == 1
    assert restores >= 1, "no trial was paused and resumed"
    assert reused, "no other trial ran while a trial was paused"
    for t in finished:
        steps = sorted(t.intermediate_values)
        assert steps == list(range(len(steps)))  # its earlier reports kept, none twice
    return restores


def check_pbt(run_dir: Path, ranks: int, population: int, segments: int) -> int:
    """PBT: every segment after the first starts bit for bit from its parent's checkpoint; the
    lineage in the study (and in status) matches; population x generations segments. Returns exploits."""
    check_never_trained_twice(run_dir, ranks)
    study = hpwf.load_study(run_dir)
    trials = {t.number: t for t in study.trials}
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * segments
    lead = events(run_dir)
    exploits = 0
    for number, t in trials.items():
        if int(t.user_attrs[GENERATION]) == 0:
            assert lead[number][0]["event"] == "fresh" and PARENT not in t.user_attrs
            continue
        parent = int(t.user_attrs[PARENT])
        paused = [e for e in lead[parent] if e["event"] == "pause"][-1]
        restored = lead[number][0]
        assert restored["event"] == "restore" and (restored["sha"], restored["step"]) == (paused["sha"], paused["step"])
        assert t.user_attrs[RESTORE_ATTR] == {"from": parent, "step": paused["step"]}
        assert t.params["lr"] == restored["lr"]
        exploits += bool(t.user_attrs[EXPLOITED])
        if not t.user_attrs[EXPLOITED]:
            assert trials[parent].user_attrs["pbt:member"] == t.user_attrs["pbt:member"]
            assert trials[parent].params == t.params
    info = hpwf.status(run_dir)["pbt"]
    assert info["segments"] == segments and info["members"] == population
    assert {(r["trial"], r["parent"]) for r in info["segments_list"]} == \
           {(n, t.user_attrs.get(PARENT)) for n, t in trials.items()}
    schedule = info["best_schedule"]
    assert schedule[0]["generation"] == 0 and [s["generation"] for s in schedule] == list(range(len(schedule)))
    return exploits
