"""The hub's end of an agent connection: sends like `multiprocessing.connection.Connection`,
reads without ever blocking.

`Connection.recv` reads a whole message, and blocks until it has one: a peer that froze after
sending half a frame (a 4-byte length and part of the payload) would block the coordinator's
loop for good. `Framed.take` makes one ``read`` per readiness (which never blocks on a readable
socket), keeps a partial frame buffered, and returns only the messages complete so far. A
peer stuck mid-frame then sends nothing more, and is lost for its silence like any frozen agent.
The wire format is `Connection`'s, so agents are unchanged.
"""

from __future__ import annotations

import os
import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any

READ_CHUNK = 1 << 16


class Frames:
    """The frames of one byte stream, as `Connection` writes them: ``feed`` what arrived, get the
    messages complete so far; a partial frame stays buffered (never waited for)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def partial(self) -> int:
        """Bytes of a frame not complete yet."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[Any]:
        """The messages complete once ``chunk`` is added.

        Raises:
            pickle.UnpicklingError (or any unpickling error): a frame that is not a message.
        """
        self._buffer += chunk
        messages: list[Any] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return messages
            messages.append(pickle.loads(frame))

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        if len(buffer) < 4:
            return None
        (size,) = struct.unpack("!i", buffer[:4])
        start = 4
        if size == -1:
            if len(buffer) < 12:
                return None
            (size,) = struct.unpack("!Q", buffer[4:12])
            start = 12
        if size < 0:
            raise pickle.UnpicklingError(f"a frame of negative length {size}")
        if len(buffer) < start + size:
            return None
        frame = bytes(buffer[start:start + size])
        del buffer[:start + size]
        return frame


def encode(message: Any) -> bytes:
    """``message`` as one frame, byte for byte as `Connection.send` writes it."""
    payload = pickle.dumps(message)
    size = len(payload)
    header = struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!i", -1) + struct.pack("!Q", size)
    return header + payload


class Framed:
    """Wraps an accepted `Connection`: ``send``, ``fileno`` and ``close`` as before; ``take`` reads."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._frames = Frames()

    def fileno(self) -> int:
        return self._conn.fileno()

    def send(self, message: Any) -> None:
        self._conn.send(message)

    def close(self) -> None:
        self._conn.close()

    @property
    def closed(self) -> bool:
        return self._conn.closed

    def take(self) -> list[Any]:
        """The messages complete after one read of what has arrived (call when readable).

        Raises:
            EOFError: the peer closed the connection (after the messages complete before it are
                returned by earlier calls; a partial frame at the end is dropped).
            pickle.UnpicklingError (or any unpickling error): a frame that is not a message.
        """
        chunk = os.read(self._conn.fileno(), READ_CHUNK)
        if not chunk:
            raise EOFError("the peer closed the connection")
        return self._frames.feed(chunk)
