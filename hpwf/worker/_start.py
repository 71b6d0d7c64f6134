"""How hpwf starts a Python child (an agent, an MPI rank, a launched group): never with code
from the working directory (issue 21, item 1).

``python -m MODULE`` puts the working directory first on ``sys.path``: an ``hpwf/`` (or
``optuna/``...) planted in a folder the user runs from (a shared project folder, ``/tmp``) would
run as that user in every child. So every child runs ``python -P -m ...`` (`python_command`),
with this process's import path as its ``PYTHONPATH`` (`child_pythonpath`): ``python -m hpwf``
has left the working directory off it already (``hpwf/__main__.py``), and a workflow's own
folder stays importable (every process that loads the workflow puts its folder first).
"""

from __future__ import annotations

import os
import sys


def python_command(module: str, *args: str) -> list[str]:
    """``[python, -P, -m, module, *args]``: a child that never imports from its working directory."""
    return [sys.executable, "-P", "-m", module, *args]


def child_pythonpath() -> str:
    """``PYTHONPATH`` for a child: this process's ``sys.path`` without ``''`` (the working directory)."""
    return os.pathsep.join(p for p in sys.path if p)
