"""The hub's key handshake, both sides (a mutual HMAC over fresh nonces, each step under a
deadline), addresses, and an agent's `connect` to the hub with bounded retries."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection
from typing import Union


Address = Union[str, tuple[str, int]]  # a Unix socket's path, or (host, port)


HANDSHAKE_TIMEOUT_S = 10.0  # a connection that has not proved the key by then is hung up on


CONNECT_TIMEOUT_S = 120.0  # how long an agent keeps trying to reach the hub


GONE_AFTER_S = 5.0  # nobody listening for this long: the hub has closed, the agent gives up


SILENT_S = 2.0  # a peer that has sent nothing this long after the greeting is hung up on


_MAGIC = b"hpwf-hub/1\n"


_NONCE = 32


_MAC = hashlib.sha256().digest_size


_REFUSED = bytes(_MAC)  # the hub's answer to a wrong proof (a hang-up means "busy": retry)


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


def format_address(address: Address) -> str:
    """``unix:PATH`` or ``HOST:PORT``: one string for a command line (see `parse_address`)."""
    return f"unix:{address}" if isinstance(address, str) else f"{address[0]}:{address[1]}"


def parse_address(text: str) -> Address:
    """The inverse of `format_address`."""
    if text.startswith("unix:"):
        return text[len("unix:"):]
    host, port = text.rsplit(":", 1)
    return host, int(port)
