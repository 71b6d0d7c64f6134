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
      connections hung up on (the run's summary says so).
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
import hashlib
import hmac
import ipaddress
import os
import secrets
import selectors
import shutil
import socket
import tempfile
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Union

from hpwf.wire._framed import Framed

Address = Union[str, tuple[str, int]]  # a Unix socket's path, or (host, port)

HANDSHAKE_TIMEOUT_S = 10.0  # a connection that has not proved the key by then is hung up on
CONNECT_TIMEOUT_S = 120.0  # how long an agent keeps trying to reach the hub
GONE_AFTER_S = 5.0  # nobody listening for this long: the hub has closed, the agent gives up
MAX_HANDSHAKES = 128  # handshakes in flight at once
PER_PEER = 16  # handshakes in flight from one address
SILENT_S = 2.0  # a peer that has sent nothing this long after the greeting is hung up on
TCP_ENV = "HPWF_HUB_TCP"  # set to 1 to listen on TCP even when every agent is on this host

_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_MAX_UNIX_PATH = 100  # sockaddr_un holds 108 bytes on Linux, 104 on macOS
_MAGIC = b"hpwf-hub/1\n"
_NONCE = 32
_MAC = hashlib.sha256().digest_size
_REFUSED = bytes(_MAC)  # the hub's answer to a wrong proof (a hang-up means "busy": retry)


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
            sock.listen(256)
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

    def _admit(self, entry: _Pending) -> bool:
        """Make room for ``entry`` (hang up on the oldest silent handshake where full); False: none."""
        with self._pending_lock:
            pending = list(self._pending.values())
            same = [p for p in pending if p.peer == entry.peer]
            if len(same) >= PER_PEER:
                pool = same
            elif len(pending) >= MAX_HANDSHAKES:
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


def connect(address: Address, authkey: bytes, timeout: float = CONNECT_TIMEOUT_S) -> Connection:
    """The agent's end of the channel: reach the hub at ``address`` and prove ``authkey``.

    Retries, with growing pauses, while the hub does not answer or hangs up during the
    handshake (it may be busy), for at most ``timeout`` seconds in all. Nobody listening at
    ``address`` (refused, or no socket file) for `GONE_AFTER_S` means the hub has closed:
    it gives up then.

    Raises:
        multiprocessing.AuthenticationError: the hub refused the key, or the peer is not this
            run's hub.
        ConnectionError: no hub answered within ``timeout`` seconds (the last error itself
            when it was one, e.g. ``ConnectionRefusedError`` once nobody listens).
    """
    start = time.monotonic()
    deadline, gone_since = start + timeout, None
    pause = 0.05
    while True:
        try:
            return _connect_once(address, authkey, min(deadline, time.monotonic() + HANDSHAKE_TIMEOUT_S))
        except AuthenticationError:
            raise
        except (OSError, EOFError) as exc:
            now = time.monotonic()
            if isinstance(exc, (ConnectionRefusedError, FileNotFoundError)):  # nobody listens there
                gone_since = gone_since or now
                deadline = min(deadline, gone_since + GONE_AFTER_S)
            else:
                gone_since = None
            left = deadline - now
            if left <= 0:
                if isinstance(exc, ConnectionError):
                    raise  # as it is (ConnectionRefusedError, ...): an agent's report names it
                raise ConnectionError(f"cannot reach the hpwf coordinator at {format_address(address)} "
                                      f"within {now - start:.0f} s: {exc}") from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 2.0)


def _connect_once(address: Address, authkey: bytes, deadline: float) -> Connection:
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        sock.connect(address)
        _prove(sock, authkey, deadline)
        sock.settimeout(None)
        return Connection(sock.detach())
    finally:
        sock.close()  # a no-op once detached


# --- the handshake -------------------------------------------------------------------------
# hub -> agent: MAGIC + hub nonce; agent -> hub: agent nonce + HMAC(key, "agent" + both nonces);
# hub -> agent: HMAC(key, "hub" + both nonces), sent only if the agent's proof was right.
class _Pending:
    """A connection in its handshake: its peer's address, and whether the peer has said anything."""

    __slots__ = ("sock", "peer", "spoke")

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock, self.peer, self.spoke = sock, peer, False


def _check(sock: socket.socket, key: bytes, deadline: float, entry: _Pending | None = None) -> None:
    """The hub's side: the peer must prove ``key``; then prove it back. A peer silent for
    `SILENT_S` after the greeting is hung up on."""
    ours = secrets.token_bytes(_NONCE)
    _send(sock, _MAGIC + ours, deadline)
    first = _recv(sock, 1, min(deadline, time.monotonic() + SILENT_S))
    if entry is not None:
        entry.spoke = True
    reply = first + _recv(sock, _NONCE + _MAC - 1, deadline)
    theirs, proof = reply[:_NONCE], reply[_NONCE:]
    if not hmac.compare_digest(proof, _mac(key, b"agent", ours, theirs)):
        _send(sock, _REFUSED, deadline)
        raise AuthenticationError("wrong key")
    _send(sock, _mac(key, b"hub", ours, theirs), deadline)


def _prove(sock: socket.socket, key: bytes, deadline: float) -> None:
    """The agent's side: prove ``key``, and check that the peer knows it too."""
    hello = _recv(sock, len(_MAGIC) + _NONCE, deadline)
    if not hello.startswith(_MAGIC):
        raise AuthenticationError("the peer is not an hpwf coordinator")
    theirs, ours = hello[len(_MAGIC):], secrets.token_bytes(_NONCE)
    _send(sock, ours + _mac(key, b"agent", theirs, ours), deadline)
    answer = _recv(sock, _MAC, deadline)
    if answer == _REFUSED:
        raise AuthenticationError("the hpwf coordinator refused the key")
    if not hmac.compare_digest(answer, _mac(key, b"hub", theirs, ours)):
        raise AuthenticationError("the peer does not know this run's key")


def _mac(key: bytes, role: bytes, hub_nonce: bytes, agent_nonce: bytes) -> bytes:
    return hmac.new(key, role + hub_nonce + agent_nonce, hashlib.sha256).digest()


def _send(sock: socket.socket, data: bytes, deadline: float) -> None:
    sock.settimeout(_left(deadline))
    sock.sendall(data)


def _recv(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        sock.settimeout(_left(deadline))
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the peer hung up during the handshake")
        data += chunk
    return data


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("handshake timed out")
    return left


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
    return socket.create_server((host, 0), family=family, backlog=256)


def format_address(address: Address) -> str:
    """``unix:PATH`` or ``HOST:PORT``: one string for a command line (see `parse_address`)."""
    return f"unix:{address}" if isinstance(address, str) else f"{address[0]}:{address[1]}"


def parse_address(text: str) -> Address:
    """The inverse of `format_address`."""
    if text.startswith("unix:"):
        return text[len("unix:"):]
    host, port = text.rsplit(":", 1)
    return host, int(port)


def send_quietly(conn: Connection, message: Any) -> bool:
    """Send, reporting a dead peer as False instead of raising."""
    try:
        conn.send(message)
        return True
    except (OSError, EOFError, BrokenPipeError):
        return False
