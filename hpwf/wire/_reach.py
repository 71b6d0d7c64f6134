"""Agents that cannot reach the coordinator say so; the coordinator reports the capacity lost.

An agent that fails to connect (refused, unreachable, timed out, wrong key) writes one line into
``RUN_DIR/agents/unreachable-<host>-<name>.txt`` on the shared file system and exits without
taking its MPI job down. The coordinator's housekeeping calls `Unreachable.check`, which prints
each new report once, e.g. ``2 of 4 agents never connected: rank 2 on nodeB:
ConnectionRefusedError: [Errno 111] Connection refused (coordinator at 127.0.0.1:40123)``.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> refused = ConnectionRefusedError(111, "Connection refused")
    >>> _ = write_report(folder, "rank-2", 2, refused, ("10.0.0.1", 5))
    >>> print(Unreachable(folder, slots=4).check())  # doctest: +ELLIPSIS
    1 of 4 agents never connected: rank 2 on ...: ConnectionRefusedError: [Errno 111] Connection refused (coordinator at 10.0.0.1:5)
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from hpwf.wire._handshake import Address, format_address

REPORT_DIR_ENV = "HPWF_AGENT_REPORTS"
AGENTS_DIR = "agents"  # inside the run dir
UNREACHABLE_EXIT = 0  # an MPI launcher would end the whole job on a non-zero exit: the rest runs on
CONNECT_ATTEMPTS = 3  # tries, 0.5 s then 1 s apart (the hub listens before agents start)
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, AuthenticationError)


@dataclass(frozen=True)
class Report:
    """One agent that never connected."""

    name: str
    rank: int | None
    host: str
    error: str
    address: str

    def line(self) -> str:
        who = f"rank {self.rank}" if self.rank is not None else self.name
        return f"{who} on {self.host}: {self.error} (coordinator at {self.address})"


def report_dir(run_dir: Path) -> Path:
    """Where a run's agents leave their reports: ``RUN_DIR/agents``."""
    return run_dir / AGENTS_DIR


def fresh_report_dir(run_dir: Path) -> Path:
    """``RUN_DIR/agents`` without the reports of an earlier session (call before agents start)."""
    folder = report_dir(run_dir)
    for pattern in ("unreachable-*.txt", "arrived-*"):
        for old in folder.glob(pattern):
            old.unlink(missing_ok=True)
    return folder


def mark_arrival(reports: Path, launch: str, name: str) -> None:
    """This agent said hello to the coordinator, or reported it cannot (one empty file per agent)."""
    reports.mkdir(parents=True, exist_ok=True)
    (reports / f"arrived-{_safe(launch)}-{_safe(socket.gethostname())}-{_safe(name)}").touch()


def arrivals(reports: Path, launch: str) -> int:
    """How many agents of launch ``launch`` have marked their arrival."""
    return len(list(reports.glob(f"arrived-{_safe(launch)}-*")))


class Announcing:
    """An agent's connection that calls ``on_hello`` once its first message (the hello) is sent."""

    def __init__(self, conn: Any, on_hello: Callable[[], None]) -> None:
        self._conn, self._on_hello, self._told = conn, on_hello, False

    def send(self, message: Any) -> None:
        self._conn.send(message)
        if not self._told:
            self._told = True
            self._on_hello()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def connect_or_report(address: Address, authkey: bytes, name: str, rank: int | None,
                      reports: Path | None) -> Connection | None:
    """Connect to the coordinator; after a few tries write a report and return ``None``."""
    from hpwf.wire._handshake import connect

    delay = 0.5
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return connect(address, authkey)
        except UNREACHABLE_ERRORS as exc:
            if attempt == CONNECT_ATTEMPTS - 1 or isinstance(exc, AuthenticationError):
                _say(name, rank, exc, address)
                if reports is not None:
                    write_report(reports, name, rank, exc, address)
                return None
            time.sleep(delay)
            delay *= 2
    return None  # pragma: no cover - the loop returns


def write_report(reports: Path, name: str, rank: int | None, error: BaseException,
                 address: Address) -> Path:
    """Write this agent's one-line report (JSON) into ``reports``; returns its path."""
    host = socket.gethostname()
    report = Report(name, rank, host, f"{type(error).__name__}: {error}".strip(), format_address(address))
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"unreachable-{_safe(host)}-{_safe(name)}.txt"
    path.write_text(json.dumps(report.__dict__) + "\n")
    return path


def read_reports(reports: Path) -> list[Report]:
    """Every report in ``reports`` (unreadable ones are skipped), by rank then name."""
    found = []
    for path in sorted(reports.glob("unreachable-*.txt")):
        try:
            found.append(Report(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # being written, or not ours
    return sorted(found, key=lambda r: (r.rank if r.rank is not None else -1, r.name))


class Unreachable:
    """The coordinator's view of agents that never connected; `check` it in housekeeping.

    Attributes:
        count: agents reported so far.
    """

    def __init__(self, reports: Path, slots: int) -> None:
        self.reports = reports
        self.slots = slots
        self.count = 0
        self._seen: set[tuple[str, str]] = set()

    def check(self) -> str | None:
        """A message when new agents reported since the last call (all of them named), else ``None``."""
        found = read_reports(self.reports) if self.reports.is_dir() else []
        new = [r for r in found if (r.host, r.name) not in self._seen]
        if not new:
            return None
        self._seen.update((r.host, r.name) for r in new)
        self.count = len(self._seen)
        return f"{self.count} of {self.slots} agents never connected: " + "; ".join(r.line() for r in found)

    @property
    def all_lost(self) -> bool:
        """Every agent reported: no trial can ever run."""
        return self.count >= self.slots > 0


def _say(name: str, rank: int | None, error: BaseException, address: Address) -> None:
    import sys

    from hpwf.progress import write_quietly

    who = f"rank {rank}" if rank is not None else name
    if sys.__stderr__ is not None:
        write_quietly(sys.__stderr__, f"[hpwf agent] {who} on {socket.gethostname()} cannot reach the coordinator "
                                      f"at {format_address(address)}: {type(error).__name__}: {error}\n")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80]
