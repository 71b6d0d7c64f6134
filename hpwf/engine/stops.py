"""Why a phase stopped before its budget: a `StopKind` value with its message (`StopReason`)."""

from __future__ import annotations

import enum


class StopKind(enum.Enum):
    """Why a phase stopped before its budget: a value, not a prefix of the message."""

    INTERRUPTED = "interrupted"  # SIGINT, SIGTERM, SIGUSR1: a resume goes on
    TIME_BUDGET = "time budget"
    FAILURES = "failures"  # more than max_failures trials failed
    BACKEND = "backend failed"  # no agents can come, or too few for the trials

    @property
    def fatal(self) -> bool:
        """The run ends with an error (exit 1) rather than a summary."""
        return self in (StopKind.FAILURES, StopKind.BACKEND)


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
