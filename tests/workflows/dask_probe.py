"""Each trial attacks the Dask cluster it runs on: a separate process without the cluster's
certificate tries a plain ``tcp://`` client on every port its Dask worker talks to (the
scheduler among them) and runs ``os.mkdir`` there. The trial prints what happened."""

import os
import subprocess
import sys

import hpwf

search = hpwf.Search(direction="minimize", n_trials=2, sampler="random", pruner="none", seed=0)

ATTACK = """
import os, sys, distributed
host, port, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    with distributed.Client(f"tcp://{host}:{port}", timeout=5) as client:
        client.run(os.mkdir, marker)
        print(f"plain client got in at {host}:{port}")
except Exception as exc:
    print(f"plain client refused at {host}:{port}: {type(exc).__name__}: {str(exc)[:200]}")
"""


def _dask_peers() -> set:
    """Remote (host, port) of the TCP connections of this process and of its parent: the agent
    runs inside its Dask worker or in a child of it."""
    import psutil

    peers = set()
    for pid in (os.getpid(), os.getppid()):
        try:
            peers.update((c.raddr.ip, c.raddr.port) for c in psutil.Process(pid).net_connections(kind="inet")
                         if c.raddr and c.status == psutil.CONN_ESTABLISHED)
        except psutil.Error:
            pass
    return peers


def objective(trial: hpwf.Trial) -> float:
    marker = str(trial.folder / "pwned")
    stranger = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}  # no certificate, no config
    peers = sorted(_dask_peers())
    print(f"dask peers {len(peers)}")
    for host, port in peers:
        out = subprocess.run([sys.executable, "-c", ATTACK, host, str(port), marker], capture_output=True,
                             text=True, timeout=120, env=stranger, cwd="/")
        print(out.stdout.strip() or f"attack on {host}:{port} printed nothing: {out.stderr[-300:]}")
    return trial.suggest_float("x", 0.0, 1.0)
