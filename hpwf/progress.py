"""A live one-line progress bar on a terminal; a line every few seconds in logs."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


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
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
        elif line != self._last_line and now - self._last_print >= self.every:
            self.stream.write(line + "\n")
            self._last_print = now
        self._last_line = line

    def note(self, message: str) -> None:
        """A message on its own line (the bar is redrawn after it)."""
        if not self.enabled:
            return
        prefix = "\r\x1b[2K" if self.tty else ""
        self.stream.write(f"{prefix}[hpwf] {message}\n")
        if self.tty and self._last_line:
            self.stream.write(self._last_line)
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\n")
        elif self._last_line:
            self.stream.write(self._last_line + "\n")
        self.stream.flush()


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
