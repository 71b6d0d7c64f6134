"""Read-only views of a run: the HTML report (`_html`) with its scheduler (`_schedule`) and UQ
(`_uq`) sections, and the dashboard (`_dashboard`). May import: `hpwf.rundir`,
`hpwf.ensembles`, the engine's public door (`hpwf.engine.schedulers`); never its internals.
"""

from __future__ import annotations

from hpwf.report._dashboard import serve_dashboard
from hpwf.report._html import write_report

__all__ = ['serve_dashboard', 'write_report']
