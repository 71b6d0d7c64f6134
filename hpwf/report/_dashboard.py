"""``hpwf dashboard RUN_DIR``: optuna-dashboard on the run's study, live while the run goes.

optuna-dashboard reads the store in place (the journal file, SQLite, PostgreSQL), so the search
and the dashboard need no coordination: each page load reads what the coordinator wrote so far.
It binds to 127.0.0.1 unless told otherwise (reach it from a laptop with ``ssh -L
8080:127.0.0.1:8080 login-node``). A login node is shared, and 127.0.0.1 is open to every user
of it, so (issue 21, item 2):

- every request must carry the run's dashboard token (`TokenGate`): a fresh random token,
  printed in the URL and kept in ``RUN_DIR/dashboard.token`` (``0600``, in a ``0700`` folder).
  The URL's ``?token=`` sets a cookie (``HttpOnly``, ``SameSite=Strict``) that the page's own
  requests carry; anything else is answered ``403``;
- it is read only unless ``--writable``: optuna-dashboard's routes that change the study
  (``POST``/``PUT``/``PATCH``/``DELETE``: tell a trial, notes, delete a study) answer ``405``;
- the run directory must be the user's, and the store is the one inside it unless named with
  ``--storage`` (`hpwf.rundir._run.open_run_store`).
"""

from __future__ import annotations

import hmac
import secrets
import socketserver
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hpwf.errors import ConfigError
from hpwf.progress import say
from hpwf.rundir import atomic_write, open_run_store

TOKEN_FILE = "dashboard.token"
_COOKIE = "hpwf_dashboard"
_READS = ("GET", "HEAD", "OPTIONS")
App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class TokenGate:
    """WSGI middleware: only a request with ``token`` (in ``?token=`` or the cookie) reaches ``app``,
    and only a reading one unless ``writable``."""

    def __init__(self, app: App, token: str, writable: bool = False) -> None:
        self.app, self.token, self.writable = app, token, writable

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = parse_qs(environ.get("QUERY_STRING", "")).get("token", [""])[0]
        if given and self._right(given):  # from the printed URL: keep it as a cookie, drop it from the address
            cookie = f"{_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
            start_response("303 See Other", [("Location", environ.get("PATH_INFO") or "/"), ("Set-Cookie", cookie),
                                             ("Content-Length", "0")])
            return [b""]
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(environ.get("HTTP_COOKIE", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            jar = SimpleCookie()
        if _COOKIE not in jar or not self._right(jar[_COOKIE].value):
            return _answer(start_response, "403 Forbidden", "hpwf dashboard: open the URL it printed (with ?token=)")
        if not self.writable and environ.get("REQUEST_METHOD", "GET").upper() not in _READS:
            return _answer(start_response, "405 Method Not Allowed",
                           "hpwf dashboard is read only; start it with --writable to change the study")
        return self.app(environ, start_response)

    def _right(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())


def _answer(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    body = (text + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No line per request."""


def serve_dashboard(run_dir: Path, host: str = "127.0.0.1", port: int = 8080, storage: str | None = None,
                    writable: bool = False) -> int:
    """Serve optuna-dashboard on the run's storage until interrupted; 0 on Ctrl-C.

    ``port=0`` takes a free port; the address (with its token) is printed on stderr either way.

    Raises:
        ConfigError: optuna-dashboard missing, not a run directory, an in-memory store, or the
            port cannot be bound.
    """
    try:
        import optuna_dashboard
    except ImportError:
        raise ConfigError("hpwf dashboard needs optuna-dashboard: pip install 'hpwf[dashboard]'") from None
    record, store = open_run_store(run_dir, storage, read_only=not writable)
    token = secrets.token_urlsafe(32)
    atomic_write(run_dir / TOKEN_FILE, token + "\n", mode=0o600)
    app = TokenGate(optuna_dashboard.wsgi(store), token, writable)
    try:
        server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError(f"--host {host} --port {port}: cannot listen: {exc.strerror or exc}") from None
    bound_host, bound_port = server.server_address[:2]
    say(f"[hpwf] optuna-dashboard for study {record.study_name!r} ({run_dir}) on "
        f"http://{_url_host(str(bound_host))}:{bound_port}/?token={token}  "
        f"({'read and write' if writable else 'read only'}; Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
