"""Every study and trial attribute hpwf writes, in one place: they are the run's format on disk
(a resumed run, `hpwf status`, the report and a Slurm array task all read them).

Also the two rules that go with them: which user attributes a trial carries to its agent or to
its retry (`carried`), and the seed a trial's ``trial.seed`` gets (`trial_seed`).
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

# the coordinator's bookkeeping on a trial
RUN_ATTR = "hpwf:run"  # the run id that placed it
HEARTBEAT_ATTR = "hpwf:heartbeat"  # a trial's own beat (older hpwf, or tools that beat per trial)
RUN_BEAT_PREFIX = "hpwf:beat:"  # study attribute per run: {"t": wall time, "every": seconds}
ATTEMPT_ATTR = "hpwf:attempt"
RETRY_OF_ATTR = "hpwf:retry_of"
FAIL_REASON_ATTR = "fail_reason"
TRACEBACK_ATTR = "traceback"
# schedulers
PAUSED_ATTR = "hpwf:paused"  # the step a paused trial continues from (False once resumed)
RESTORE_ATTR = "hpwf:restore"  # {"from": trial number holding the checkpoint, "step": next step}
BRACKET_ATTR = "hpwf:bracket"
SEED_ATTR = "hpwf:seed_of"  # the trial number whose ``trial.seed`` it gets (a replayed PBT segment's)
PBT_MEMBER, PBT_GENERATION, PBT_PARENT, PBT_EXPLOITED = "pbt:member", "pbt:generation", "pbt:parent", "pbt:exploited"
# ensemble members (trials of the ``<name>-ensemble`` study)
MEMBER, CONFIG, SOURCE, SEED = "member", "config", "source_trial", "member_seed"

_NOT_CARRIED = (RUN_ATTR, HEARTBEAT_ATTR, FAIL_REASON_ATTR, TRACEBACK_ATTR, RETRY_OF_ATTR)


def carried(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The user attributes a trial carries to its agent and to its retry (not the run's bookkeeping)."""
    return {k: v for k, v in attrs.items() if k not in _NOT_CARRIED}


def fail_reason(error: str | None) -> str:
    """A failed trial's ``fail_reason``: the last line of its error (a traceback's exception line)."""
    lines = (error or "failed").strip().splitlines()
    return (lines[-1] if lines else "failed")[:1000]


def trial_seed(seed: int | None, run_id: str, number: int) -> int:
    """``trial.seed`` of trial ``number``: fixed by the search's ``seed`` (then the same in every
    run and every array task), else salted with the run's id."""
    base = "none" if seed is None else str(seed)
    salt = run_id if seed is None else ""
    return int(hashlib.sha256(f"{base}:{salt}:{number}".encode()).hexdigest()[:8], 16)
