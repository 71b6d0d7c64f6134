"""The control channel: authenticated pickled messages over TCP (stdlib multiprocessing)."""

from __future__ import annotations

import os
import secrets
import socket
import threading
from multiprocessing.connection import Client, Connection, Listener, wait
from typing import Any


class Hub:
    """The coordinator's end: accepts agents in a thread, multiplexes their messages.

    Example:
        >>> hub = Hub("127.0.0.1")
        >>> hub.address[0]
        '127.0.0.1'
        >>> hub.close()
    """

    def __init__(self, host: str = "127.0.0.1", advertise: str | None = None) -> None:
        self.authkey = secrets.token_bytes(16)
        self._listener = Listener((host, 0), authkey=self.authkey, backlog=256)
        port = self._listener.address[1]
        self.address: tuple[str, int] = (advertise or host, port)
        self._new: list[Connection] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closed = False
        threading.Thread(target=self._accept_forever, name="hpwf-accept", daemon=True).start()

    def _accept_forever(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
            except (OSError, EOFError):
                if self._closed:
                    return
                continue  # a client that failed authentication or hung up
            with self._lock:
                self._new.append(conn)
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass  # the pipe is full: the poller is awake anyway

    def take_new(self) -> list[Connection]:
        """Connections accepted since the last call."""
        with self._lock:
            new, self._new = self._new, []
        return new

    @property
    def wake_fd(self) -> int:
        """Readable whenever a new connection was accepted (poll it beside the agents')."""
        return self._wake_r

    def clear_wake(self) -> None:
        """Empty the wake pipe after `wake_fd` was readable."""
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass

    def wait(self, conns: list[Connection], timeout: float) -> list[Connection]:
        """The connections with something to read (or that closed); wakes early on a new agent."""
        ready = wait([*conns, self._wake_r], timeout)
        if self._wake_r in ready:
            os.read(self._wake_r, 4096)
        return [c for c in ready if c is not self._wake_r]  # type: ignore[misc]

    def close(self) -> None:
        """Stop accepting, and hang up on agents that connected too late to be served."""
        self._closed = True
        try:
            self._listener.close()
        except OSError:
            pass
        for conn in self.take_new():
            conn.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


def connect(address: tuple[str, int], authkey: bytes) -> Connection:
    """The agent's end of the channel."""
    return Client(address, authkey=authkey)


def default_advertise_host() -> str:
    """A name other hosts can reach this one by (for remote Dask or MPI agents)."""
    return socket.gethostname()


def send_quietly(conn: Connection, message: Any) -> bool:
    """Send, reporting a dead peer as False instead of raising."""
    try:
        conn.send(message)
        return True
    except (OSError, EOFError, BrokenPipeError):
        return False
