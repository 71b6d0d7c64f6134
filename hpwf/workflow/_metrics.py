"""A trial's ``metrics.csv``: what ``report`` and ``log_metrics`` write, row by row."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from hpwf.rundir import is_dir, is_file, open_file


class MetricsFile:
    """A trial's ``metrics.csv``: ``step,value,elapsed_s`` then the named metrics, one row per step.

    ``report`` fills ``value``, ``log_metrics`` the named columns; calls for the step of the last
    row complete that row. Rows are appended; only a new metric name rewrites the file (with
    the wider header), so per-batch logging stays cheap. The file is written only while its
    folder exists or once a named metric is logged: the values ``report`` gives are in the
    study already, so a trial that writes nothing of its own creates no file.

    Example:
        >>> import tempfile, pathlib
        >>> f = MetricsFile(pathlib.Path(tempfile.mkdtemp()) / "metrics.csv")
        >>> f.record(0, {"value": 0.5}, 1.0, now=5.0); f.record(0, {"loss": 0.7}, 1.2, now=5.2)
        >>> f.record(1, {"loss": 0.6}, 2.0, now=6.0)
        >>> print(f.path.read_text().strip())
        step,value,elapsed_s,time,loss
        0,0.5,1.200,5.200,0.7
        1,,2.000,6.000,0.6
    """

    FIXED = ("step", "value", "elapsed_s", "time")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] = list(self.FIXED)
        self.rows: list[dict[str, Any]] = []
        self._last_row_at: int | None = None  # byte offset where the last row starts
        if is_file(path):  # a trial resumed from a pause goes on with its earlier rows
            with open_file(path, "r", newline="") as f:
                reader = csv.DictReader(f)
                for row in reader:
                    self.rows.append({k: (int(v) if k == "step" else float(v)) for k, v in row.items() if v})
                self.columns += [c for c in reader.fieldnames or () if c not in self.columns]

    @classmethod
    def checked(cls, values: dict[str, Any]) -> dict[str, float]:
        """``log_metrics``' values as floats, or a clear error for a bad name or value."""
        if not values:
            raise ValueError("log_metrics: give at least one metric, e.g. log_metrics(step, train_loss=0.3)")
        clean: dict[str, float] = {}
        for key, value in values.items():
            if not isinstance(key, str) or not key or key in cls.FIXED:
                raise ValueError(f"log_metrics: metric names are non-empty strings other than "
                                 f"{', '.join(cls.FIXED)}, not {key!r}")
            try:
                clean[key] = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"log_metrics: {key}={value!r} is not a number") from None
        return clean

    def record(self, step: int, values: dict[str, float], elapsed: float, now: float | None = None) -> None:
        """Add ``values`` to the row of ``step`` (the last row when it has that step, else a new one).

        ``elapsed_s`` is the time since this attempt started; ``time`` the clock (``now``), so
        the attempts of a resumed trial line up.
        """
        wider = [k for k in values if k not in self.columns]
        self.columns += wider
        same_row = bool(self.rows) and self.rows[-1]["step"] == step
        if same_row:
            self.rows[-1].update(values)
        else:
            self.rows.append({"step": step, **values})
        self.rows[-1]["elapsed_s"] = elapsed
        self.rows[-1]["time"] = time.time() if now is None else now
        if self._last_row_at is None and not (wider or is_dir(self.path.parent)):
            return  # kept in memory: `flush` writes it if the trial gets a folder
        if wider or self._last_row_at is None:
            self._rewrite()
            return
        with open_file(self.path, "r+b") as f:
            at = self._last_row_at if same_row else f.seek(0, 2)
            f.seek(at)
            f.truncate()
            f.write(self._line(self.rows[-1]))
            self._last_row_at = at

    @property
    def written(self) -> bool:
        """Whether the file holds the rows (or there are none)."""
        return self._last_row_at is not None or not self.rows

    def flush(self) -> None:
        """Write the rows kept in memory, if the folder exists by now."""
        if self.rows and self._last_row_at is None and is_dir(self.path.parent):
            self._rewrite()

    def _rewrite(self) -> None:
        head = self._line({c: c for c in self.columns})
        lines = [self._line(row) for row in self.rows]
        with open_file(self.path, "wb", make_parents=True) as f:
            f.write(head + b"".join(lines))
        self._last_row_at = len(head) + sum(map(len, lines[:-1]))

    def _line(self, row: dict[str, Any]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow([_cell(c, row.get(c)) for c in self.columns])
        return out.getvalue().encode()


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in ("elapsed_s", "time") and isinstance(value, float):
        return f"{value:.3f}"
    if column == "step" or isinstance(value, str):
        return str(value)
    return repr(float(value))
