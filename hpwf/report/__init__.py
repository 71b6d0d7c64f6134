"""Read-only views of a run: ``hpwf status`` (`_status`), the HTML report (`_html`, its sections
in one explicit list; imported when first used) with its scheduler (`_schedule`) and UQ (`_uq`) sections, and the dashboard
(`_dashboard`). May import: `hpwf.rundir`, `hpwf.ensembles`, the engine's public door
(`hpwf.engine.schedulers`) and `hpwf.slurm`'s (a job's state); never the engine's internals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpwf.report._status import status
from hpwf.report._text import best_text, format_status, front_text, print_end

if TYPE_CHECKING:
    from hpwf.report._dashboard import serve_dashboard
    from hpwf.report._html import write_report

__all__ = ['best_text', 'format_status', 'front_text', 'print_end', 'serve_dashboard', 'status', 'write_report']


def __getattr__(name: str) -> Any:
    """`write_report` imports Optuna (and plotly when drawing), `serve_dashboard` a web server:
    each only when used, so that ``hpwf status`` imports neither."""
    if name == "write_report":
        from hpwf.report._html import write_report

        return write_report
    if name == "serve_dashboard":
        from hpwf.report._dashboard import serve_dashboard

        return serve_dashboard
    raise AttributeError(f"module 'hpwf.report' has no attribute {name!r}")
