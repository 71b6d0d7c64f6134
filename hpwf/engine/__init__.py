"""The engine: one phase's coordinator over a trial ledger, and the session its phases share.

- `ledger`: trial and agent records; the one transition function each; counts.
- `loop`: the coordinator's named steps (accept, place, tell, receive, housekeeping).
- `receive`, `housekeeping`: those two steps (messages and losses; health, budget, summary).
- `placement`: which free agents form a group, which waiting trial goes next.
- `health`: silent agents, trial timeouts, stale trials of vanished runs.
- `outcomes`: what reaches the study (tell, fail, requeue, recovery on resume).
- `ahead`: parameters sampled ahead of the round trip, recorded only when used.
- `session`: the hub, backend, agents and clock that phases share.
- `phases`: the search and the ensemble as objects, and running them on one session.
- `summary`: the progress line's fields and ``summary.json``.
- `schedulers/`: successive halving, Hyperband, PBT and its replay, built by name.

May import: `hpwf.backends`, `hpwf.worker`, `hpwf.workflow`, `hpwf.ensembles`, `hpwf.rundir`,
`hpwf.wire`. The engine is the one writer of trial states in the study.
"""

from __future__ import annotations

from hpwf.engine.loop import Coordinator
from hpwf.engine.session import Budget, Session

__all__ = ["Budget", "Coordinator", "Session"]
