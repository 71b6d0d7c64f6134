"""Starting Python safely: no code from the working directory (issue 21, item 1).

``python -m MODULE`` puts the working directory first on ``sys.path``: an ``hpwf/`` (or
``optuna.py``, ``numpy/``...) planted in a folder the user runs from (a shared project folder,
``/tmp``) would run as that user. So:

- every Python process hpwf starts (agents, MPI ranks, launched groups, job scripts' steps)
  runs ``python -P -m ...`` (`python_command`), with a ``PYTHONPATH`` made of this process's
  import path without the working directory that ``-m`` added (`child_pythonpath`); a
  workflow's own folder stays importable (every process that loads the workflow puts its
  folder first on ``sys.path``, `hpwf.workflow._loading.load`);
- ``python -m hpwf`` itself (`guard_main`, before anything else is imported) drops the working
  directory from ``sys.path`` when hpwf was not imported from it, and refuses to run (exit 2)
  when hpwf was imported from a working directory that another user can write: the planted
  package has run already, and nothing hpwf does can undo that. The ``hpwf`` command (its
  folder, not the working directory, is first on ``sys.path``) and ``python -P -m hpwf`` are
  safe from the start.
"""

from __future__ import annotations

import os
import sys

# The entry ``-m``/``-c`` put first on ``sys.path`` when this process started (None under -P/-I).
_IMPLICIT: str | None = None if sys.flags.safe_path or sys.flags.isolated or not sys.path else sys.path[0]


def python_command(module: str, *args: str) -> list[str]:
    """``[python, -P, -m, module, *args]``: a child that never imports from its working directory."""
    return [sys.executable, "-P", "-m", module, *args]


def child_pythonpath() -> str:
    """``PYTHONPATH`` for a child: this process's ``sys.path`` without ``''`` and without the
    working directory ``-m`` added at start (an explicit entry of the same folder stays)."""
    entries, dropped = [], False
    implicit = _absolute(_IMPLICIT) if _IMPLICIT is not None else None
    for entry in sys.path:
        if not entry:
            continue
        if not dropped and implicit is not None and _absolute(entry) == implicit:
            dropped = True
            continue
        entries.append(entry)
    return os.pathsep.join(entries)


def guard_main() -> None:
    """For ``python -m hpwf``: leave the working directory off ``sys.path`` (see the module doc).

    Exits 2 with one line when hpwf itself came from a working directory others can write.
    """
    if _IMPLICIT is None:
        return
    cwd = _absolute(_IMPLICIT or ".")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.realpath(here) != os.path.realpath(cwd):
        _drop_first(_IMPLICIT)
        return
    who = writable_by_others(cwd)
    if who:
        print(f"hpwf: error: {cwd}: hpwf was imported from the working directory, which {who} can write "
              "(code planted there runs as you); run `hpwf` or `python -P -m hpwf` with hpwf installed, "
              "or from a folder of your own", file=sys.stderr)
        raise SystemExit(2)


def writable_by_others(folder: str) -> str | None:
    """Who other than this user (or root) can write ``folder``: ``"anyone"``, ``"its group"``,
    ``"its owner (uid N)"``, or None."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    if st.st_uid not in (os.geteuid(), 0):
        return f"its owner (uid {st.st_uid})"
    if st.st_mode & 0o002:
        return "anyone"
    if st.st_mode & 0o020:
        return "its group"
    return None


def _drop_first(entry: str) -> None:
    for i, candidate in enumerate(sys.path):
        if candidate == entry:
            del sys.path[i]
            return


def _absolute(entry: str) -> str:
    return os.path.abspath(entry or os.curdir)
