"""How a trial's attempt ends in the coordinator: told, failed (with the effects a failure
implies), waiting again (no agent of it could be reached), or interrupted by a stop signal. A
mixin of `hpwf.engine.loop.Coordinator`.

`fail` is the one place a live attempt ends without a result of its own: a result already
durable in its folder is told instead (never trained again); otherwise it is failed in the
study (queued again if a retry is left, or if it was only interrupted or never started), and
its ranks are aborted, except MPI ranks (ending one ends the whole MPI job).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any, cast

from hpwf.engine.ledger import AgentRecord, AgentState, TrialRecord, TrialState
from hpwf.engine.receive import receive
from hpwf.engine.stops import StopKind, StopReason, Why
from hpwf.engine.store import STORE_ERRORS
from hpwf.wire import Abort, send_quietly

if TYPE_CHECKING:
    from hpwf.backends import Backend
    from hpwf.engine.ahead import SampleAhead
    from hpwf.engine.loop import Coordinator
    from hpwf.engine.outcomes import Outcomes
    from hpwf.engine.session import Budget, Session
    from hpwf.engine.store import StoreOutage
    from hpwf.progress import Progress

A, S = AgentState, TrialState


class Transitions:
    """Told, failed, waiting again, interrupted: the coordinator's ends of an attempt (see the module)."""

    session: Session
    outcomes: Outcomes
    ahead: SampleAhead | None
    backend: Backend
    budget: Budget
    progress: Progress
    stop_reason: str | None
    caught_signal: str | None
    attached: dict[Any, TrialRecord]
    store: StoreOutage

    def _tell(self) -> None:
        """Store the results that arrived (they are durable already); a refused one fails."""
        for record in self.session.ledger.in_state(S.DONE):
            try:
                frozen = self.outcomes.tell(record.trial, record.result)
                if self.ahead is not None:
                    self.ahead.seen(frozen.distributions)
            except ValueError as exc:
                if self.outcomes.finished_elsewhere(record.trial):
                    self.progress.note(f"trial {record.number}: another run finished it first; its result is not stored")
                    self.session.ledger.move(record, S.FAILED)
                    self.session.ledger.forget(record)
                else:
                    self.fail(record, f"the study refused the result: {exc}")
                continue
            self.session.ledger.move(record, S.TOLD)

    def fail(self, record: TrialRecord, reason: str, traceback_text: str | None = None,
             why: Why = Why.FAILED) -> None:
        """Record ``record`` as failed (once), for the intent ``why``; abort its ranks that still
        run where ``why`` asks it. A trial whose result is durable in its folder is told
        instead: it is never trained again.

        MPI ranks are never aborted: an MPI rank that exits ends the whole job under most
        launchers (``mpirun``, ``srun --kill-on-bad-exit``), and it cannot be started again. Its
        ranks stay busy with the failed trial instead, take no other until they send its `Done`
        (ignored), and then are free again.
        """
        if record.state in (S.TOLD, S.FAILED, S.REQUEUED):
            return
        store, now = self.store, self.session.clock.now()
        kept = store.failures.pop(record.ticket, None)
        if kept is None and why.aborts and self.backend.group_mode != "mpi":
            for conn in [a.conn for a in record.working] + [c for c, r in self.attached.items() if r is record]:
                send_quietly(conn, Abort(record.ticket, reason))
        tried = store.ready(now) and not store.later  # (kept effects go first)
        try:
            if not tried:
                raise store.error or OSError("the store failed")
            if record.state in (S.PLACED, S.RUNNING) and self.outcomes.tell_durable(record.trial):
                self.session.ledger.move(record, S.DONE)  # its result is on disk (its Done was lost or late):
                self.session.ledger.move(record, S.TOLD)  # kept, as a resume after SIGKILL keeps it
                return
            requeued = self.outcomes.fail(record.trial, reason, traceback_text,  # stopping: resume runs it
                                          counts_as_failure=why.counts_as_failure)
        except STORE_ERRORS as exc:  # kept, and stored once the store answers (hpwf.engine.store)
            store.failures[record.ticket] = kept or (record, reason, traceback_text, why)
            if tried:
                store.failed(exc, now)
            return
        counts_as_failure = why.counts_as_failure
        self.session.ledger.move(record, S.FAILED)
        if requeued:
            self.session.ledger.move(record, S.REQUEUED)
        self.session.ledger.forget(record)  # once its agents are back
        if counts_as_failure:
            self.progress.note(f"trial {record.number} failed: {reason}")
        max_failures = self.budget.max_failures
        if self.outcomes.counts.fail_here > max_failures and not self.stop_reason:
            self.stop_reason = StopReason(StopKind.FAILURES, f"more than {max_failures} trials failed")

    def _wait_again(self, record: TrialRecord, unreached: list[AgentRecord]) -> None:
        """A trial none of whose agents could be reached waits again, first in line, on other agents."""
        ledger = self.session.ledger
        for agent in record.agents:
            if agent not in unreached:
                ledger.move_agent(agent, A.IDLE)
        record.agents, record.working = [], set()
        ledger.move(record, S.WAITING)
        ledger.to_front(record)
        self.progress.note(f"trial {record.number} waits again: {unreached[0].where()} could not be reached")

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.caught_signal = signal.Signals(signum).name  # handled in the loop, never inside a store call

    def interrupt(self, name: str) -> None:
        """Stop now: finished results are kept; running and waiting trials are queued again."""
        self.stop_reason = StopReason(StopKind.INTERRUPTED, f"interrupted by {name}")
        for conn in self.session.poll(0.0):  # a `Done` that arrived since the last turn is kept
            receive(cast("Coordinator", self), conn)
        self.store.run(cast("Coordinator", self), self._tell)
        ledger = self.session.ledger
        for record in ledger.in_state(S.ASKED, S.WAITING, S.PLACED, S.RUNNING):  # paused ones stay paused
            self.fail(record, f"interrupted by {name}; it will run again on resume",
                      why=Why.INTERRUPTED)  # its agents are stopped with the session
