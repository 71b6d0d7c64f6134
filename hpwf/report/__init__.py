"""Read-only views of a run: ``hpwf status`` (`_status`), the HTML report (`_html`, its sections
in one explicit list) with its scheduler (`_schedule`) and UQ (`_uq`) sections, and the dashboard
(`_dashboard`). May import: `hpwf.rundir`, `hpwf.ensembles`, the engine's public door
(`hpwf.engine.schedulers`) and `hpwf.slurm`'s (a job's state); never the engine's internals.
"""

from __future__ import annotations

from hpwf.report._dashboard import serve_dashboard
from hpwf.report._html import write_report
from hpwf.report._status import status
from hpwf.report._text import best_text, format_status, front_text, print_end

__all__ = ['best_text', 'format_status', 'front_text', 'print_end', 'serve_dashboard', 'status', 'write_report']
