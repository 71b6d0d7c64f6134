"""A live one-line progress bar on a terminal; a line every few seconds in logs.

The bar shows trials done, pruned, failed and running, the best value so far, the time elapsed
and an estimate of the time left. Notes (a failed trial and its reason) print even when the
bar is off (``--quiet``).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from types import FrameType
from typing import Any, Callable, TextIO

from hpwf.secrets import redact


class Progress:
    """Shows trials done / pruned / failed, running trials, the best value, elapsed time and time left.

    Elapsed time and the estimate come from the fields when the caller has them (``elapsed``:
    seconds over every session of the run, ``timeout``: the time budget), else from this
    object's own clock, started when it is made, plus ``elapsed_before`` (earlier sessions).

    Example:
        >>> import io
        >>> clock = iter([0.0, 1.0, 10.0]).__next__
        >>> p = Progress(stream=io.StringIO(), clock=clock)
        >>> _ = p.line({"done": 0, "total": 4})
        >>> p.line({"done": 2, "total": 4})
        '[hpwf] [############............] 2/4 | pruned 0 | failed 0 | running 0 | best - | 10s elapsed, ~10s left'
    """

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, every: float = 10.0, *,
                 notes: bool | None = None, elapsed_before: float = 0.0, timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled  # the bar
        self.notes = enabled if notes is None else notes  # failure reasons: `--quiet` keeps them
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.elapsed_before = elapsed_before
        self.timeout = timeout
        self._clock = clock
        self._started = clock()
        self._done_at_start: int | None = None
        self._last_line = ""
        self._last_counts = ""  # the line without its times: a log prints only when this changes
        self._printed_counts = ""
        self._last_print = -float("inf")

    def line(self, fields: dict[str, Any]) -> str:
        """The progress line for ``fields`` (``done``, ``total``, ``pruned``, ``failed``, ``running``, ``best``)."""
        now = self._clock()
        done = int(fields.get("done", 0))
        if self._done_at_start is None:
            self._done_at_start = done
        elapsed = fields.get("elapsed")
        session = now - self._started
        if elapsed is None:
            elapsed = self.elapsed_before + session
        timeout = fields.get("timeout", self.timeout)
        left = time_left(done - self._done_at_start, session, fields.get("total"), done, timeout, elapsed)
        timing = f"{duration(elapsed)} elapsed" + ("" if left is None else f", ~{duration(left)} left")
        return f"{format_line(fields)} | {timing}"

    def update(self, fields: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line, counts = self.line(fields), format_line(fields)
        now = self._clock()
        if self.tty:
            self._write("\r\x1b[2K" + line)
        elif counts != self._printed_counts and now - self._last_print >= self.every:
            self._write(line + "\n")
            self._last_print, self._printed_counts = now, counts
        self._last_line, self._last_counts = line, counts

    def note(self, message: str) -> None:
        """A message on its own line (the bar is redrawn after it); shown with or without the bar."""
        if not self.notes:
            return
        bar = self.enabled and self.tty
        self._write(("\r\x1b[2K" if bar else "") + f"[hpwf] {redact(message)}\n" + (self._last_line if bar else ""))

    def close(self) -> None:
        """End the bar: a terminal gets its newline, a log the last line unless it was already printed."""
        if not self.enabled:
            return
        if self.tty:
            self._write("\n")
        elif self._last_line and self._last_counts != self._printed_counts:
            self._write(self._last_line + "\n")
            self._printed_counts = self._last_counts

    def _write(self, text: str) -> None:
        """A closed terminal or pipe (an MPI launcher stops forwarding after a rank dies) only
        silences the bar; the run itself goes on."""
        if write_quietly(self.stream, text) is False:
            self.enabled = self.notes = False


def time_left(done_here: int, session_s: float, total: int | None, done: int, timeout: float | None,
              elapsed: float) -> float | None:
    """Seconds left: the trials left at this session's pace, capped by the time budget; None if unknown."""
    if total and done >= total:
        return None  # the budget is spent: an unused time budget is not time left
    estimates = []
    if total and done < total and done_here > 0 and session_s > 0:
        estimates.append((total - done) * session_s / done_here)
    if timeout is not None:
        estimates.append(max(timeout - elapsed, 0.0))
    return min(estimates) if estimates else None


def duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def write_quietly(stream: TextIO, text: str) -> bool:
    """Write and flush; False (instead of an exception) when the stream is gone."""
    try:
        stream.write(text)
        stream.flush()
        return True
    except (OSError, ValueError):
        return False


def say(text: str) -> None:
    """One line to stderr that never raises; a URL's password is masked (`hpwf.secrets.redact`)."""
    write_quietly(sys.stderr, redact(text) + "\n")


def format_line(f: dict[str, Any]) -> str:
    """The counts part of the progress line."""
    total = f.get("total")
    width = 24
    done = f.get("done", 0)
    if total:
        filled = min(width, int(width * done / total))
        bar = "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"
    else:
        bar = f"{done} done"
    best = f.get("best")
    best_text = "-" if best is None else f"{best:.6g}"
    return (
        f"[hpwf] {bar} | pruned {f.get('pruned', 0)} | failed {f.get('failed', 0)} "
        f"| running {f.get('running', 0)} | best {best_text}"
    )


# --- Optuna's warnings name the trial -------------------------------------------------------------
def trial_in_stack(depth: int = 40) -> int | None:
    """The number of the innermost ``optuna.Trial`` a caller is working on (a local ``trial`` or ``self``)."""
    import optuna

    frame: FrameType | None = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        for name in ("self", "trial"):
            candidate = frame.f_locals.get(name)
            if isinstance(candidate, optuna.trial.Trial):
                cached = getattr(candidate, "_cached_frozen_trial", None)
                return int(cached.number if cached is not None else candidate.number)
        frame = frame.f_back
    return None


class _NameTrial(logging.Filter):
    """Prefix Optuna's log records with ``trial N:`` when they concern a trial."""

    def filter(self, record: logging.LogRecord) -> bool:
        number = trial_in_stack()
        if number is not None and not getattr(record, "hpwf_named", False):
            record.msg = f"trial {number}: {record.getMessage()}"
            record.args = ()
            record.hpwf_named = True
        return True


_shown_by: list[Callable[..., None]] = []  # the ``warnings.showwarning`` we wrap


def _show_warning_naming_trial(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                               file: TextIO | None = None, line: str | None = None) -> None:
    number = trial_in_stack()
    if number is not None:
        message = f"trial {number}: {message}"
    (_shown_by[0] if _shown_by else warnings._showwarning_orig)(  # type: ignore[attr-defined]
        message, category, filename, lineno, file, line)


def name_trials_in_optuna_warnings() -> None:
    """Make Optuna's log messages and warnings that concern a trial start with ``trial N:``.

    Optuna says "The reported value is ignored because this `step=3` is already reported" or
    "Fixed parameter x ... is out of range" without saying which trial; the coordinator samples
    and reports for many trials at once. Installed once; harmless where no trial is involved.
    """
    import optuna

    optuna.logging.get_logger("optuna")  # makes sure Optuna's handler exists
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _NameTrial) for f in handler.filters):
            handler.addFilter(_NameTrial())
    if warnings.showwarning is not _show_warning_naming_trial:
        _shown_by[:] = [warnings.showwarning]
        warnings.showwarning = _show_warning_naming_trial
