"""A live one-line progress bar on a terminal; a line every few seconds in logs."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from hpwf._secrets import redact


class Progress:
    """Shows trials done / pruned / failed, running trials and the best value so far."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, every: float = 10.0) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self._last_line = ""
        self._last_print = 0.0

    def update(self, fields: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = format_line(fields)
        now = time.time()
        if self.tty:
            self._write("\r\x1b[2K" + line)
        elif line != self._last_line and now - self._last_print >= self.every:
            self._write(line + "\n")
            self._last_print = now
        self._last_line = line

    def note(self, message: str) -> None:
        """A message on its own line (the bar is redrawn after it)."""
        if not self.enabled:
            return
        prefix = "\r\x1b[2K" if self.tty else ""
        self._write(f"{prefix}[hpwf] {redact(message)}\n" + (self._last_line if self.tty else ""))

    def close(self) -> None:
        if not self.enabled:
            return
        self._write("\n" if self.tty else (self._last_line + "\n" if self._last_line else ""))

    def _write(self, text: str) -> None:
        """A closed terminal or pipe (an MPI launcher stops forwarding after a rank dies) only
        silences the bar; the run itself goes on."""
        if write_quietly(self.stream, text) is False:
            self.enabled = False


def write_quietly(stream: TextIO, text: str) -> bool:
    """Write and flush; False (instead of an exception) when the stream is gone."""
    try:
        stream.write(text)
        stream.flush()
        return True
    except (OSError, ValueError):
        return False


def say(text: str) -> None:
    """One line to stderr that never raises; a URL's password is masked (`hpwf._secrets.redact`)."""
    write_quietly(sys.stderr, redact(text) + "\n")


def format_line(f: dict[str, Any]) -> str:
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
