"""Dask without strangers: TLS for the clusters hpwf starts, the user's certificates for theirs,
no Dask HTTP pages, and the hub's key handed to agents as a file only the user can read.

Why a key file: whatever goes into a Dask task (arguments, key) can be read by anyone who can
talk to the scheduler. With TLS that is only the user, but a plain ``tcp://`` scheduler is open
to every user who can reach its port. So a task carries only the path of a file (mode 0600, in
a directory only the user can enter) that holds the key: knowing the path gives nothing.
For a hub on a Unix socket the file sits next to the socket, in the hub's private directory;
for a TCP hub (agents on other hosts) it goes into a private directory on a filesystem those
hosts share (``key_dir``; default ``~/.hpwf/keys``, shared by the nodes of a typical cluster).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from hpwf.errors import ConfigError

if TYPE_CHECKING:
    from distributed.security import Security

    from hpwf.wire import Address

# Dask serves /info, /json, /proxy, /metrics over plain HTTP even with the dashboard off; no pages.
NO_HTTP_PAGES: dict[str, Any] = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
LOOPBACK_HTTP = "127.0.0.1:0"  # where Dask's (now empty) HTTP server listens: not port 8787, not 0.0.0.0
KEY_DIR_ENV = "HPWF_KEY_DIR"
_SECURE_SCHEMES = ("tls", "wss")
_TLS_KEYS = ("distributed.comm.tls.ca-file", "distributed.comm.tls.client.cert")


def temporary_pem() -> tuple[str, str]:
    """A fresh self-signed certificate and its key (PEM text), kept in memory only."""
    from distributed.security import Security

    security = Security.temporary()
    return str(getattr(security, "tls_ca_file")), str(getattr(security, "tls_client_key"))  # noqa: B009 (untyped slots)


def tls_config(cert: str, key: str) -> dict[str, Any]:
    """Dask config under which every role (scheduler, worker, client) needs ``cert``."""
    config: dict[str, Any] = {"distributed.comm.require-encryption": True, "distributed.comm.tls.ca-file": cert}
    for role in ("scheduler", "worker", "client"):
        config[f"distributed.comm.tls.{role}.cert"] = cert
        config[f"distributed.comm.tls.{role}.key"] = key
    return config


def user_security(ca_file: str | None = None, cert: str | None = None, key: str | None = None) -> Security:
    """The user's certificates for a ``tls://`` scheduler: explicit paths, else Dask's config
    (``distributed.comm.tls.ca-file``, ``.client.cert``, ``.client.key``; also settable as
    ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE`` and so on).

    Raises:
        ConfigError: no CA file or no client certificate is given.
    """
    from distributed.security import Security

    explicit = {k: v for k, v in {"tls_ca_file": ca_file, "tls_client_cert": cert, "tls_client_key": key}.items() if v}
    security = Security(require_encryption=True, **explicit)
    ca, cert, key = (getattr(security, f"tls_{name}") for name in ("ca_file", "client_cert", "client_key"))
    if not ca or not cert:
        raise ConfigError(f"a tls:// scheduler needs the user's certificates: set {' and '.join(_TLS_KEYS)} "
                          "(and .client.key) in Dask's config, or pass tls_ca_file/tls_cert/tls_key")
    for path in (ca, cert, key):
        if path and "\n" not in path and not os.path.isfile(path):
            raise ConfigError(f"Dask TLS: no such certificate file: {path}")
    return security


def is_plain(address: str) -> bool:
    """True for a scheduler address that neither encrypts nor authenticates (``tcp://``, ``ws://``)."""
    scheme = urlparse(address).scheme if "://" in address else "tcp"
    return scheme not in (*_SECURE_SCHEMES, "inproc")


def plain_warning(address: str) -> str:
    return (f"[hpwf] warning: the Dask scheduler {address} is not authenticated: anyone who can reach it "
            "can run code as you; use a tls:// scheduler (README: Security)")


# --- the hub key, as a file ------------------------------------------------------------------
def write_key_file(authkey: bytes, address: Address, key_dir: str | Path | None = None) -> Path:
    """Write ``authkey`` to a new 0600 file in a directory only this user can enter; its path.

    The directory: ``key_dir`` if given; for a hub on a Unix socket, the socket's directory;
    else ``$HPWF_KEY_DIR`` or ``~/.hpwf/keys``.
    """
    if key_dir is None and isinstance(address, str):
        folder = Path(address).parent
    else:
        folder = Path(key_dir or os.environ.get(KEY_DIR_ENV) or Path.home() / ".hpwf" / "keys")
    _make_private(folder)
    path = folder / f"hub-{secrets.token_hex(8)}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(authkey)
    return path


def read_key_file(path: str | Path) -> bytes:
    """The key in ``path``; a clear error when an agent's host cannot see the file."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"hpwf: the hub key file {path} is not on this host: Dask workers on other "
                                f"hosts need it on a shared filesystem (set {KEY_DIR_ENV})") from None


def remove_key_file(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _make_private(folder: Path) -> None:
    """Create ``folder`` (mode 0700) or check that only this user can enter it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(f"{folder}: the hub key directory belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        folder.chmod(0o700)


def serve_with_key_file(address: Address, key_path: str, name: str, reports: Path | None = None) -> int:
    """A Dask task's body: read the hub key from ``key_path``, then serve as an agent (one that
    cannot reach the coordinator leaves a report in ``reports``: `hpwf.wire._reach`)."""
    from hpwf.worker import serve_or_report

    return serve_or_report(address, read_key_file(key_path), name, reports=reports)
