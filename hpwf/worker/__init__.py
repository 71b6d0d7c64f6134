"""The agent side: an agent serves trials (`_agent`), a launched group runs one trial on K
ranks under mpirun (`_launched`), and launcher variables map to one placement record
(`_topology`). May import: `hpwf.wire`, `hpwf.workflow`, `hpwf.rundir`, `hpwf.ensembles`;
never the engine or a backend.
"""

from __future__ import annotations

from hpwf.worker._agent import run_agent, serve_or_report
from hpwf.worker._child import allow_children, end_children, serve_in_child
from hpwf.worker._launched import mpirun
from hpwf.worker._scratch import private_scratch
from hpwf.worker._start import child_pythonpath, python_command
from hpwf.worker._threads import AGENTS_ENV
from hpwf.worker._trial_run import run_trial

__all__ = ['AGENTS_ENV', 'allow_children', 'child_pythonpath', 'end_children', 'mpirun', 'private_scratch', 'python_command', 'run_agent', 'run_trial', 'serve_in_child', 'serve_or_report']
