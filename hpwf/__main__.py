"""``python -m hpwf``, with nothing imported from the working directory.

``-m`` puts the working directory first on ``sys.path`` (issue 21, item 1). Before anything else
is imported, `_leave_the_working_directory` takes it off again, unless hpwf itself was
imported from there (a source checkout): then it stays if only this user (or root) can write
it, and hpwf refuses to run (exit 2) if someone else can, since code planted there may have run
already. A planted ``hpwf/`` runs before this file: only ``python -P -m hpwf`` (or the ``hpwf``
command) is safe from it. Stdlib only, here: nothing may be imported before the check.
"""

import os
import sys


def _leave_the_working_directory() -> None:
    if sys.flags.safe_path or sys.flags.isolated or not sys.path:
        return
    implicit = sys.path[0]
    cwd = os.path.abspath(implicit or os.curdir)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.realpath(here) != os.path.realpath(cwd):
        del sys.path[0]
        return
    who = _writers(cwd)
    if who:
        print(f"hpwf: error: {cwd}: hpwf was imported from the working directory, which {who} can write "
              "(code planted there runs as you); run `hpwf` or `python -P -m hpwf` with hpwf installed, "
              "or from a folder of your own", file=sys.stderr)
        raise SystemExit(2)


def _writers(folder: str) -> str:
    """Who other than this user (or root) can write ``folder``, or ``""``."""
    try:
        st = os.stat(folder)
    except OSError:
        return ""
    if st.st_uid not in (os.geteuid(), 0):
        return f"its owner (uid {st.st_uid})"
    return "anyone" if st.st_mode & 0o002 else "its group" if st.st_mode & 0o020 else ""


_leave_the_working_directory()

from hpwf.cli import main  # noqa: E402 - after the check: nothing from the working directory

sys.exit(main())
