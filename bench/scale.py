"""`bench scale`: one coordinator, 16 to 4,096 agents that speak the real protocol.

One driver process (`bench/_scale_driver.py`) opens N agent connections to a real coordinator
(a real hub, the real engine, no Dask or MPI processes). Trials are zero-length with one
``suggest_float`` each (random sampler). Each count runs on the in-memory store and on a
journal file. Printed: trials/s and p50/p99 hand-out latency (an agent's `Done` sent to its next
`Assign` received). Aim: at 4,096 agents at least 90 % of the throughput at 16, and at least
1,000 trials/s in memory.
"""

from __future__ import annotations

import base64
import json
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from bench._common import env, scratch
from hpwf.wire._protocol import Setup
from hpwf.backends import Backend
from hpwf.engine import Budget, Coordinator

COUNTS = (16, 256, 1024, 4096)


class DriverBackend(Backend):
    """Starts the driver process as the backend's 'agents'."""

    name = "scale-driver"

    def __init__(self, agents: int, out: Path) -> None:
        self.agents, self.out = agents, out
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def slots(self) -> int:
        return self.agents

    def start(self, address: Any, authkey: bytes) -> None:
        hub = base64.b64encode(pickle.dumps((address, authkey))).decode()
        self.proc = subprocess.Popen([sys.executable, "-m", "bench._scale_driver", str(self.agents), str(self.out)],
                                     env=env(HPWF_SCALE_HUB=hub), stdin=subprocess.DEVNULL)

    def failure(self, live: int, seen: int) -> str | None:
        if self.proc is not None and self.proc.poll() not in (None, 0):
            return f"the driver exited {self.proc.returncode}"
        return None

    def close(self, exit_code: int = 0) -> None:
        if self.proc is not None:
            self.proc.wait(timeout=300)
            self.proc = None


def one(agents: int, n_trials: int, store: str, folder: Path) -> dict[str, Any]:
    out = folder / f"driver-{agents}-{store}.json"
    run_dir = folder / f"run-{agents}-{store}"
    run_dir.mkdir()
    storage = optuna.storages.InMemoryStorage() if store == "memory" else None
    if storage is None:
        from hpwf.rundir._run import journal_storage

        storage = journal_storage(run_dir / "study.journal")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    backend = DriverBackend(agents, out)
    coordinator = Coordinator(study, backend, Setup(str(run_dir), None, None, heartbeat_s=10.0), run_dir,
                              Budget(n_trials=n_trials, timeout=None, max_failures=0), run_id="scale", seed=0)
    cpu = time.process_time()
    summary = coordinator.run()
    cpu = time.process_time() - cpu
    backend.close()
    figures = json.loads(out.read_text())
    assert summary["complete"] == n_trials, summary
    return {**figures, "store": store, "n_trials": n_trials, "coordinator_cpu_ms_per_trial": 1e3 * cpu / n_trials}


def run(quick: bool = False) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    counts = (16, 256) if quick else COUNTS
    rows = []
    with scratch("scale") as folder:
        for store in ("memory", "journal"):
            for agents in counts:
                per_agent = 8 if store == "memory" else 2  # the journal store is ~10x slower per trial
                n_trials = 300 if quick else max(2000 if store == "memory" else 1000, per_agent * agents)
                rows.append(one(agents, n_trials, store, folder))
    table = ["agents  store    trials/s   p50 ms   p99 ms   coordinator CPU ms/trial"]
    for r in rows:
        table.append(f"{r['agents']:>6}  {r['store']:<7} {r['trials_per_s']:>9.0f} {r['p50_ms'] or 0:>8.2f} "
                     f"{r['p99_ms'] or 0:>8.2f} {r['coordinator_cpu_ms_per_trial']:>10.3f}")
    mem = {r["agents"]: r["trials_per_s"] for r in rows if r["store"] == "memory"}
    biggest = max(mem)
    ratio = mem[biggest] / mem[min(mem)]
    print("\n".join(table), flush=True)
    return {
        "benchmark": "scale", "rows": rows, "ratio": round(ratio, 3),
        "comparison": f"in-memory trials/s at {biggest} agents / at {min(mem)} agents (aim >= 0.9; and >= 1000 trials/s)",
        "line": f"scale: {biggest} vs {min(mem)} agents {ratio:.2f}x throughput; "
                f"{mem[biggest]:.0f} trials/s in memory at {biggest} agents",
    }
