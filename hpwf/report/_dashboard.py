"""``hpwf dashboard RUN_DIR``: optuna-dashboard on the run's study, live while the run goes.

optuna-dashboard reads the store in place (the journal file, SQLite, PostgreSQL), so the search
and the dashboard need no coordination: each page load reads what the coordinator wrote so far.
It binds to 127.0.0.1 unless told otherwise: a login node is shared, and the dashboard has no
authentication (reach it from a laptop with ``ssh -L 8080:127.0.0.1:8080 login-node``).
"""

from __future__ import annotations

import socketserver
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hpwf.errors import ConfigError
from hpwf.progress import say
from hpwf.rundir import RunRecord, open_storage


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No line per request."""


def serve_dashboard(run_dir: Path, host: str = "127.0.0.1", port: int = 8080) -> int:
    """Serve optuna-dashboard on the run's storage until interrupted; 0 on Ctrl-C.

    ``port=0`` takes a free port; the address is printed on stderr either way.

    Raises:
        ConfigError: optuna-dashboard missing, not a run directory, an in-memory store, or the
            port cannot be bound.
    """
    try:
        import optuna_dashboard
    except ImportError:
        raise ConfigError("hpwf dashboard needs optuna-dashboard: pip install 'hpwf[dashboard]'") from None
    record = RunRecord.load(run_dir)
    if record.storage == "memory":
        raise ConfigError(f"{run_dir}: the run kept its study in memory; nothing is left to show")
    app = optuna_dashboard.wsgi(open_storage(record.storage, run_dir))
    try:
        server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError(f"--host {host} --port {port}: cannot listen: {exc.strerror or exc}") from None
    bound_host, bound_port = server.server_address[:2]
    say(f"[hpwf] optuna-dashboard for study {record.study_name!r} ({run_dir}) on "
        f"http://{_url_host(str(bound_host))}:{bound_port}/  (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
