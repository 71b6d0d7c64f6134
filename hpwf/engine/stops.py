"""Why a phase stopped before its budget (`StopKind`, `StopReason`), and why a trial's attempt ended
without a result of its own (`Why`, with the effects each implies): values, not strings."""

from __future__ import annotations

import enum


class StopKind(enum.Enum):
    """Why a phase stopped before its budget: a value, not a prefix of the message."""

    INTERRUPTED = "interrupted"  # SIGINT, SIGTERM, SIGUSR1: a resume goes on
    TIME_BUDGET = "time budget"
    FAILURES = "failures"  # more than max_failures trials failed
    BACKEND = "backend failed"  # no agents can come, or too few for the trials
    STORE = "store failed"  # the study's store failed for longer than Search(store_grace): a resume goes on
    STORE_FULL = "store full"  # no room for the store (a full disk, a quota): a resume goes on once there is

    @property
    def fatal(self) -> bool:
        """The run ends with an error (exit 1) rather than a summary."""
        return self in (StopKind.FAILURES, StopKind.BACKEND, StopKind.STORE_FULL)

    @property
    def resumable(self) -> bool:
        """No later phase starts; the command exits 130 and ``hpwf resume`` goes on."""
        return self in (StopKind.INTERRUPTED, StopKind.STORE, StopKind.STORE_FULL)

    @property
    def leaves_trials(self) -> bool:
        """The store failed: running trials stay RUNNING in it, as after SIGKILL (a resume settles them)."""
        return self in (StopKind.STORE, StopKind.STORE_FULL)


RESUMABLE_KINDS = frozenset(k.value for k in StopKind if k.resumable)  # no later phase after such a stop


class StopReason(str):
    """The stop's message (as before, a string in ``summary.json``) and its `StopKind`."""

    kind: StopKind

    def __new__(cls, kind: StopKind, text: str) -> StopReason:
        reason = super().__new__(cls, text)
        reason.kind = kind
        return reason

    def __getnewargs__(self) -> tuple[StopKind, str]:  # type: ignore[override]
        return self.kind, str(self)


def stop_kind(reason: str | None) -> StopKind | None:
    return getattr(reason, "kind", None)


class Why(enum.Enum):
    """Why a live attempt ends without a result of its own; each implies its effects."""

    FAILED = "failed"  # the objective failed, the study refused its result, its ranks ended
    TIMED_OUT = "timed out"
    LOST = "lost"  # its agent (or a rank of its group) is gone
    INTERRUPTED = "interrupted"  # a stop signal: it runs again on resume
    NOT_STARTED = "not started"  # the run stopped before it was placed

    @property
    def counts_as_failure(self) -> bool:
        """Counts against max_failures and the retries (else it is queued again regardless)."""
        return self not in (Why.INTERRUPTED, Why.NOT_STARTED)

    @property
    def aborts(self) -> bool:
        """Its ranks that still run are sent `Abort` (never MPI ranks: see `hpwf.engine.transitions`)."""
        return self is not Why.INTERRUPTED  # an interrupted run stops its agents with the session
