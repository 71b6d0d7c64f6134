"""The control channel between the coordinator (the `Hub`) and its agents (`connect`).

Contract:
    * The hub listens on a Unix socket in a directory only the user can enter when every agent
      runs on this host (the listen host is a loopback address), else on TCP.
    * Every connection proves it holds the run's key before the hub reads a single pickle: a
      mutual HMAC-SHA256 challenge (`_prove`, `_check`), done in a thread of its own with a
      deadline of `HANDSHAKE_TIMEOUT_S` (`SILENT_S` for a peer that has sent nothing yet). A
      wrong key, silence, random bytes or a flood of connections costs the hub a short-lived
      thread each; the accept loop goes on.
    * A flood of silent connections cannot keep agents out (issue 21, item 6): at most
      `PER_PEER` handshakes are in flight per peer address and `MAX_HANDSHAKES` in all; when
      either is full, the oldest handshake whose peer has said nothing (of that address, or of
      the address holding the most) is hung up on to make room. An agent answers the hub's
      greeting at once, so it is not the oldest silent one for long. `Hub.refused` counts the
      connections hung up on (the run's summary says so). The TCP listen queue (`LISTEN_BACKLOG`)
      is deeper than a flood keeps waiting: a full one drops an agent's SYN (retried in 1, 3, 7 s).
    * Known agents first: a peer is *known* when its address is one of the hosts the backend
      placed agents on (`Hub.expect`) or when a connection from it proved the key before. Known
      peers have `KNOWN_HANDSHAKES` slots of their own, apart from everyone else's
      `MAX_HANDSHAKES`: a flood from unknown addresses never takes a known agent's slot nor hangs
      up on its handshake. (A flood from a known address, say the agents' own host, still meets
      only `PER_PEER` and the oldest-silent rule: an address is all the hub can tell apart.)
    * After `Hub.close` nothing is accepted: the listener is closed (the Unix socket removed),
      and a connection still in its handshake is hung up on.
    * `connect` retries (bounded by its ``timeout``) while the hub is not there yet or is busy,
      and gives up at once on a wrong key.

Messages after the handshake are pickles over `multiprocessing.connection.Connection`; the hub
reads them without blocking (`hpwf.wire._framed`).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import secrets
import selectors
import shutil
import socket
import tempfile
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Iterable

from hpwf.wire._framed import Framed
from hpwf.wire._handshake import Address, HANDSHAKE_TIMEOUT_S, SILENT_S, _Pending, _check, _prove, connect


MAX_HANDSHAKES = 128  # handshakes in flight at once
PER_PEER = 16  # handshakes in flight from one address
KNOWN_HANDSHAKES = 64  # handshakes in flight from known peers (`Hub.expect`), apart from the rest
LISTEN_BACKLOG = 4096  # connections the kernel queues for `accept` (capped by net.core.somaxconn)
TCP_ENV = "HPWF_HUB_TCP"  # set to 1 to listen on TCP even when every agent is on this host

_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_MAX_UNIX_PATH = 100  # sockaddr_un holds 108 bytes on Linux, 104 on macOS


class Hub:
    """The coordinator's end: accepts agents, multiplexes their messages.

    Args:
        host: the interface to listen on; a loopback address means "agents on this host only",
            and then the hub listens on a Unix socket instead (unless ``unix=False``).
        advertise: the host name agents use to reach a TCP hub (default: ``host``).
        unix: force (True) or forbid (False) the Unix socket; ``None`` decides from ``host``.
        socket_dir: where to make the hub's private directory (default: the temp directory).

    Example:
        >>> hub = Hub("127.0.0.1")
        >>> isinstance(hub.address, str) and hub.address.endswith("hub.sock")
        True
        >>> hub.close()
    """

    def __init__(self, host: str = "127.0.0.1", advertise: str | None = None, *,
                 unix: bool | None = None, socket_dir: str | Path | None = None) -> None:
        self.authkey = secrets.token_bytes(32)
        self.private_dir: Path | None = None
        if unix is None:
            unix = _prefers_unix(host, advertise)
        self._sock = self._listen_unix(socket_dir) if unix else _listen_tcp(host)
        self.address: Address = str(self.private_dir / "hub.sock") if self.private_dir \
            else (advertise or host, self._sock.getsockname()[1])
        self._new: list[Framed] = []
        self._lock = threading.Lock()
        self._closed = False
        self._pending: dict[int, _Pending] = {}  # handshakes in flight, by id(): oldest first
        self._pending_lock = threading.Lock()
        self.refused = 0  # connections hung up on before or during their handshake
        self._known: set[str] = set()  # peer addresses let through first (`expect`, and every key proved)
        self._wake_r, self._wake_w = os.pipe()
        self._stop_r, self._stop_w = os.pipe()
        for fd in (self._wake_r, self._wake_w, self._stop_r, self._stop_w):
            os.set_blocking(fd, False)
        self._thread = threading.Thread(target=self._accept_forever, name="hpwf-accept", daemon=True)
        self._thread.start()

    def _listen_unix(self, socket_dir: str | Path | None) -> socket.socket:
        self.private_dir = Path(tempfile.mkdtemp(prefix="hpwf-", dir=socket_dir))  # mode 0700
        path = str(self.private_dir / "hub.sock")
        if len(path) > _MAX_UNIX_PATH and socket_dir is None:  # a long $TMPDIR: /tmp will do
            self.private_dir.rmdir()
            self.private_dir = Path(tempfile.mkdtemp(prefix="hpwf-", dir="/tmp"))
            path = str(self.private_dir / "hub.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, 0o600)
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            shutil.rmtree(self.private_dir, ignore_errors=True)
            raise
        return sock

    # --- the accept loop: never blocks on a client, never dies ------------------------------
    def _accept_forever(self) -> None:
        self._sock.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._stop_r, selectors.EVENT_READ)
            while not self._closed:
                try:
                    events = selector.select()
                    if self._closed or any(key.fileobj == self._stop_r for key, _ in events):
                        return
                    self._accept_one()
                except Exception as exc:  # noqa: BLE001 - the loop must outlive anything a client does
                    out_of_files = getattr(exc, "errno", None) in _OUT_OF_FILES
                    time.sleep(0.1 if out_of_files else 0.01)  # let handshakes finish; never spin

    def _accept_one(self) -> None:
        try:
            sock, peer = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # the client left between select and accept
        entry = _Pending(sock, peer[0] if isinstance(peer, tuple) else "unix")
        if not self._admit(entry):
            self.refused += 1
            sock.close()  # full of handshakes that all speak: an agent retries
            return
        try:
            threading.Thread(target=self._handshake, args=(entry,), name="hpwf-handshake", daemon=True).start()
        except RuntimeError:  # no thread to be had
            self._settle(entry)
            sock.close()

    def expect(self, hosts: Iterable[str]) -> None:
        """Count the addresses of ``hosts`` (names or addresses) as known: their connections get
        the known peers' slots. A name that does not resolve is left out."""
        for host in hosts:
            with contextlib.suppress(OSError, UnicodeError):
                for *_, sockaddr in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP):
                    with self._pending_lock:
                        self._known.add(str(sockaddr[0]))

    def _admit(self, entry: _Pending) -> bool:
        """Make room for ``entry`` among the handshakes of its kind (known or not) and of its
        address: hang up on the oldest silent one where full. False: all of them speak."""
        with self._pending_lock:
            known = entry.peer in self._known
            pending = [p for p in self._pending.values() if (p.peer in self._known) == known]
            same = [p for p in pending if p.peer == entry.peer]
            if len(same) >= PER_PEER:
                pool = same
            elif len(pending) >= (KNOWN_HANDSHAKES if known else MAX_HANDSHAKES):
                by_peer: dict[str, list[_Pending]] = {}
                for p in pending:
                    by_peer.setdefault(p.peer, []).append(p)
                pool = max(by_peer.values(), key=len)
            else:
                pool = None
            if pool is not None:
                victim = next((p for p in pool if not p.spoke), None)
                if victim is None:
                    return False
                del self._pending[id(victim)]
                self.refused += 1
                with contextlib.suppress(OSError):
                    victim.sock.shutdown(socket.SHUT_RDWR)  # its thread sees the hang-up and ends
            self._pending[id(entry)] = entry
            return True

    def _settle(self, entry: _Pending) -> None:
        with self._pending_lock:
            self._pending.pop(id(entry), None)

    def _handshake(self, entry: _Pending) -> None:
        sock = entry.sock
        try:
            deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
            _check(sock, self.authkey, deadline, entry)
            sock.settimeout(None)
            if entry.peer != "unix":
                with self._pending_lock:
                    self._known.add(entry.peer)
            with self._lock:
                if self._closed:
                    sock.close()
                    return
                self._new.append(Framed(Connection(sock.detach())))
                with contextlib.suppress(OSError):  # full pipe: the loop is awake anyway
                    os.write(self._wake_w, b"x")
        except Exception:  # noqa: BLE001 - a wrong key, silence, garbage, a hang-up: drop it
            with self._pending_lock:
                if id(entry) in self._pending:  # (an evicted one is counted already)
                    self.refused += 1
            sock.close()
        finally:
            self._settle(entry)

    # --- what the coordinator calls ----------------------------------------------------------
    def take_new(self) -> list[Framed]:
        """Connections that proved the key since the last call (read with `Framed.take`)."""
        with self._lock:
            new, self._new = self._new, []
        return new

    @property
    def wake_fd(self) -> int:
        """Readable whenever a new agent was accepted (poll it beside the agents' connections)."""
        return self._wake_r

    def clear_wake(self) -> None:
        """Empty the wake pipe after `wake_fd` was readable; a no-op once closed."""
        with self._lock, contextlib.suppress(OSError):
            if not self._closed:
                os.read(self._wake_r, 4096)

    def wait(self, conns: list[Framed], timeout: float) -> list[Framed]:
        """The connections with something to read (or that closed); wakes early on a new agent."""
        with self._lock:
            wake = None if self._closed else self._wake_r
        ready = wait([*conns, *([wake] if wake is not None else [])], timeout)  # type: ignore[list-item]
        if wake is not None and wake in ready:
            self.clear_wake()
        return [c for c in ready if c is not wake]  # type: ignore[misc]

    def close(self) -> None:
        """Stop listening (a late agent is refused), and hang up on agents not yet taken.

        Safe to call twice.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._sock.close()
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)
        for conn in self.take_new():
            conn.close()
        with self._lock:
            for fd in (self._wake_r, self._wake_w, self._stop_r, self._stop_w):
                with contextlib.suppress(OSError):
                    os.close(fd)


# --- addresses -----------------------------------------------------------------------------
def _prefers_unix(host: str, advertise: str | None) -> bool:
    """A Unix socket when every agent is on this host (a loopback listen address)."""
    if not hasattr(socket, "AF_UNIX") or os.environ.get(TCP_ENV, "") not in ("", "0"):
        return False
    return _is_loopback(host) and (advertise is None or _is_loopback(advertise))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen_tcp(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, 0), family=family, backlog=LISTEN_BACKLOG)


def send_quietly(conn: Connection, message: Any) -> bool:
    """Send, reporting a dead peer as False instead of raising."""
    try:
        conn.send(message)
        return True
    except (OSError, EOFError, BrokenPipeError):
        return False
