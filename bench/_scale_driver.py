"""One process that plays N agents over the real protocol (for `bench scale`).

``python -m bench._scale_driver N OUT.json`` with the hub's address and key pickled in the
environment (``HPWF_SCALE_HUB``). Each fake agent answers an `Assign` with one `Suggest`, then a
zero-length `Done`; it beats like a real agent. It writes trials/s and hand-out latencies (from
sending `Done` to receiving the next `Assign`, per agent) to OUT.json.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import resource
import selectors
import sys
import time

from hpwf.wire._dists import float_dist

from hpwf.wire._handshake import connect
from hpwf.wire._protocol import Assign, Done, Heartbeat, Hello, Reply, Setup, Stop, Suggest

DIST = float_dist(0.0, 1.0, None, False)  # as an agent describes it


def main(n: int, out: str) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    address, authkey = pickle.loads(base64.b64decode(os.environ["HPWF_SCALE_HUB"]))
    conns = []
    for i in range(n):
        conn = connect(address, authkey)
        conn.send(Hello(f"fake-{i}", "localhost", os.getpid(), i))
        conns.append(conn)
    selector = selectors.DefaultSelector()
    for i, conn in enumerate(conns):
        selector.register(conn.fileno(), selectors.EVENT_READ, i)
    done_at: dict[int, float] = {}
    latencies: list[float] = []
    first, last, trials, stopped, beat_every = None, 0.0, 0, 0, 10.0
    next_beat = time.monotonic() + 1.0
    while stopped < n:
        for key, _ in selector.select(0.5):
            i = key.data
            try:
                message = conns[i].recv()
            except (EOFError, OSError):
                selector.unregister(conns[i].fileno())
                stopped += 1
                continue
            now = time.monotonic()
            if isinstance(message, Setup):
                beat_every = message.heartbeat_s
            elif isinstance(message, Assign):
                first = first or now
                if i in done_at:
                    latencies.append(now - done_at.pop(i))
                conns[i].send(Suggest(message.ticket, "x", DIST))
            elif isinstance(message, Reply):
                conns[i].send(Done(message.ticket, "complete", [float(message.value)], None, 0.0))
                done_at[i] = last = time.monotonic()
                trials += 1
            elif isinstance(message, Stop):
                selector.unregister(conns[i].fileno())
                stopped += 1
        if time.monotonic() > next_beat:  # every agent proves alive, as real ones do
            next_beat = time.monotonic() + beat_every / 2
            for conn in conns:
                try:
                    conn.send(Heartbeat(None))
                except OSError:
                    pass
    latencies.sort()
    pick = (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]) if latencies else (lambda q: None)
    span = max(last - (first or last), 1e-9)
    with open(out, "w") as f:
        json.dump({"agents": n, "trials": trials, "trials_per_s": trials / span, "span_s": span,
                   "p50_ms": pick(0.5) and pick(0.5) * 1e3, "p99_ms": pick(0.99) and pick(0.99) * 1e3}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2]))
