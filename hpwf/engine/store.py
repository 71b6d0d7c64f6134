"""The study's store failing mid-run (a journal on NFS or Lustre answering EIO or ESTALE, an RDB
whose connection dropped): what the coordinator does meanwhile.

Policy: a failing store read or write never escapes `Coordinator.step`. The effect that failed
is kept (a trial's failure, a mark of a trial asked or paused) and tried again, with backoff
(0.5 s, doubling, at most `MAX_BACKOFF_S`), before anything else touches the store; a result
that could not be told stays DONE in the ledger and is told at the next try (it is durable in its
trial folder already). Agents keep running; no new trial is asked while the store fails. Once
the store has failed for longer than the grace (`Search(store_grace=...)`, default
`STORE_GRACE_S`), the phase stops with `StopKind.STORE` (exit 130, resumable): as after SIGKILL,
trials still running stay RUNNING in the study and ``hpwf resume`` settles them from their
durable results. A full disk or quota (``ENOSPC``, ``EDQUOT``, ``EFBIG``) is no transient error:
the phase stops at once, `StopKind.STORE_FULL` (exit 1, "cannot write ..."), resumable too.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable

from optuna.exceptions import StorageInternalError

from hpwf.engine.ledger import LIVE
from hpwf.engine.stops import StopKind, StopReason

if TYPE_CHECKING:
    from hpwf.engine.loop import Coordinator

STORE_ERRORS: tuple[type[BaseException], ...] = (OSError, StorageInternalError)
STORE_GRACE_S = 600.0  # the default `Search(store_grace=...)`
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no room: waiting will not help


class StoreOutage:
    """Whether the store fails, since when, and the effects kept until it answers again."""

    def __init__(self, grace_s: float, note: Callable[[str], None]) -> None:
        self.grace_s = grace_s
        self.note = note
        self.name = "the study's store"  # its file or URL, for the stop's message (set by hpwf.engine.phases)
        self.since: float | None = None  # engine clock of the first failure of this outage
        self.error: BaseException | None = None
        self.retry_at = float("-inf")
        self.backoff = FIRST_BACKOFF_S
        self.later: list[Callable[[], Any]] = []  # store effects kept, in order
        self.failures: dict[int, tuple[Any, ...]] = {}  # ticket -> (record, reason, traceback, why) not stored yet
        self.failed_this_try = False
        self.outages = 0
        self.probe: Callable[[], Any] = lambda: None  # a write that shows the store answers (the run's heartbeat)

    @property
    def failing(self) -> bool:
        return self.since is not None

    def ready(self, now: float) -> bool:
        """The store may be used now: it answers, or its next try is due."""
        return self.since is None or now >= self.retry_at

    def failed(self, exc: BaseException, now: float) -> None:
        self.failed_this_try = True
        if self.since is None:
            self.since, self.backoff, self.outages = now, FIRST_BACKOFF_S, self.outages + 1
            self.note(f"the study's store failed ({_describe(exc)}); trying again, running trials go on")
        else:
            self.backoff = min(MAX_BACKOFF_S, self.backoff * 2)
        self.error, self.retry_at = exc, now + self.backoff

    def effect(self, c: Coordinator, action: Callable[[], Any]) -> None:
        """Perform a store effect now if the store answers, else keep it for the next try."""
        now = c.session.clock.now()
        if not self.ready(now) or self.later:
            self.later.append(action)
            return
        try:
            action()
        except STORE_ERRORS as exc:
            self.failed(exc, now)
            self.later.append(action)

    def run(self, c: Coordinator, *steps: Callable[[], Any]) -> None:
        """Run ``steps`` (they use the store) if it may be used now, the kept effects first; a
        store error ends them and starts (or extends) the outage."""
        now = c.session.clock.now()
        if not self.ready(now):
            return
        self.failed_this_try = False
        try:
            self._retry(c)
            for step in steps:
                step()
        except STORE_ERRORS as exc:
            self.failed(exc, now)
            return
        if self.since is not None and not self.failed_this_try:
            self.note(f"the study's store answers again after {now - self.since:.0f} s")
            self.since, self.error = None, None

    def guard(self, c: Coordinator, step: Callable[[], Any]) -> None:
        """Run ``step`` (it may touch the store in a corner); a store error is noted, not raised."""
        try:
            step()
        except STORE_ERRORS as exc:
            self.failed(exc, c.session.clock.now())

    def _retry(self, c: Coordinator) -> None:
        if self.since is not None:
            self.probe()  # a try that stored nothing else must not pass for an answer
        while self.later:
            self.later[0]()
            self.later.pop(0)
        for ticket, (record, reason, traceback_text, why) in list(self.failures.items()):
            if record.state in LIVE:
                c.fail(record, reason, traceback_text, why)  # (it drops the kept failure once stored)
            else:
                self.failures.pop(ticket)  # a result came since: it wins
            if self.failed_this_try:
                raise self.error or OSError("the store failed")

    def expired(self, now: float) -> bool:
        """Past the grace, or out of room."""
        full = isinstance(self.error, OSError) and self.error.errno in FULL
        return self.since is not None and (full or now - self.since > self.grace_s)

    def stop_reason(self, run_dir: Any) -> StopReason:
        error = self.error
        if isinstance(error, OSError) and error.errno in FULL:
            return StopReason(StopKind.STORE_FULL, f"cannot write {error.filename or self.name}: "
                                                   f"{error.strerror or error}; finished trials are kept, "
                                                   f"`hpwf resume {run_dir}` goes on once there is room")
        return StopReason(StopKind.STORE, f"the store {self.name} failed for more than {self.grace_s:g} s "
                                          f"({_describe(error)}); finished trials are kept, "
                                          f"`hpwf resume {run_dir}` goes on once it answers")


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
