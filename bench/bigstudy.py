"""`bench bigstudy`: one coordinator, real agents over the real protocol, 100,000 trials.

Zero-length trials with 2 suggests and 3 reports each (`bench/_bigstudy_workflow.py`, random
sampler), run by ``--agents`` real agent processes (`hpwf.worker._agent.serve`, the code every
backend runs) against one real coordinator, on the journal store and in memory. Printed and
recorded:

- trials/s per 10,000-trial slice (from each trial's completion time in the study), and the
  last slice over the first (aim >= 0.9);
- coordinator RSS at 10 % and at 100 % of the trials, and per 10,000 trials, beside a bare
  Optuna ask/tell loop that stores the same trials in the same kind of store (what the store
  itself holds);
- files and directories the run created per trial (aim <= 0.05);
- on the finished journal run: `hpwf status`, `hpwf status --json`, `hpwf report` (and the size
  of report.html), the start of `hpwf resume` (command start to the first new trial's start
  in the study), beside Optuna's own ``load_study`` + ``get_trials`` on the same journal.

Slices are printed as the run goes ("[slice]" lines). The resume is timed three ways: from the
snapshot the run's end leaves, from the one the coordinator kept while running (as a
coordinator killed at the end leaves it: ``resume_killed``), and with none.
``HPWF_BIGSTUDY_STORES=journal``: the journal alone; ``HPWF_BIGSTUDY_BARE=0``: no bare Optuna loop
beside it (Optuna's own journal ``ask`` walks every trial: about 1,000 CPU s more at 100,000).

``python -m bench bigstudy [--trials N]`` (default 100,000; ``--quick``: 2,000).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import threading
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any

import optuna

from bench._common import PY, ROOT, env, scratch, timed
from hpwf.backends import Backend
from hpwf.engine import Budget, Coordinator
from hpwf.rundir import save_journal_snapshot
from hpwf.rundir._run import RunRecord, journal_storage
from hpwf.wire._protocol import Setup

WORKFLOW = ROOT / "bench" / "_bigstudy_workflow.py"
SLICE = 10_000
AGENT = ("import base64, os, pickle, sys; from hpwf.worker._agent import serve; "
         "a, k = pickle.loads(base64.b64decode(os.environ['HPWF_BIG_HUB'])); serve(a, k, sys.argv[1])")


class AgentsBackend(Backend):
    """``agents`` real agent processes on this machine (what the local backend starts, without Dask)."""

    name = "bigstudy-agents"

    def __init__(self, agents: int) -> None:
        self.agents = agents
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def slots(self) -> int:
        return self.agents

    def start(self, address: Any, authkey: bytes) -> None:
        hub = base64.b64encode(pickle.dumps((address, authkey))).decode()
        self.procs = [subprocess.Popen([PY, "-c", AGENT, f"agent-{i}"], env=env(HPWF_BIG_HUB=hub),
                                       stdin=subprocess.DEVNULL) for i in range(self.agents)]

    def failure(self, live: int, seen: int) -> str | None:
        bad = [p.returncode for p in self.procs if p.poll() not in (None, 0)]
        return f"an agent exited {bad[0]}" if bad else None

    def close(self, exit_code: int = 0) -> None:
        for proc in self.procs:
            proc.wait(timeout=120)
        self.procs = []


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    """This process's RSS and CPU time every ``every`` seconds, with the time."""

    def __init__(self, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.every, self.stop = every, threading.Event()
        self.samples = [(time.time(), _rss_mb(), time.process_time())]

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.samples.append((time.time(), _rss_mb(), time.process_time()))

    def at(self, when: float, what: int = 1) -> float:
        """The RSS (``what=2``: CPU seconds) sampled last before ``when``."""
        times = [t for t, _, _ in self.samples]
        return self.samples[max(0, bisect_right(times, when) - 1)][what]


class SliceWatch(threading.Thread):
    """Prints each finished ``slice`` of trials as the run goes: its trials/s, the coordinator's
    CPU ms per trial and RSS, and the load (a long run shows its trend before it ends)."""

    def __init__(self, coordinator: Coordinator, slice_size: int, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.coordinator, self.size, self.every, self.stop = coordinator, slice_size, every, threading.Event()

    def run(self) -> None:
        mark, done, cpu = time.time(), 0, time.process_time()
        while not self.stop.wait(self.every):
            finished = self.coordinator.counts.finished_ok
            if finished >= done + self.size:
                now, now_cpu = time.time(), time.process_time()
                print(f"  [slice] {finished} trials at {time.strftime('%H:%M:%S')}: {(finished - done) / (now - mark):.1f} "
                      f"trials/s, {1e3 * (now_cpu - cpu) / (finished - done):.2f} coordinator CPU ms/trial, RSS "
                      f"{_rss_mb():.0f} MB, load {os.getloadavg()[0]:.1f}", flush=True)
                mark, done, cpu = now, finished, now_cpu


def count_entries(run_dir: Path) -> tuple[int, int]:
    """Files and directories under ``run_dir`` (the run directory itself not counted)."""
    files = dirs = 0
    for _, dirnames, filenames in os.walk(run_dir):
        files += len(filenames)
        dirs += len(dirnames)
    return files, dirs


def one(store: str, n: int, agents: int, folder: Path) -> dict[str, Any]:
    """A whole run of ``n`` trials; its figures, and the run directory (journal) for the readers."""
    run_dir = folder / f"run-{store}"
    run_dir.mkdir(mode=0o700)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage() if store == "memory" else journal_storage(run_dir / "study.journal")
    study = optuna.create_study(study_name="big", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    RunRecord("big", None if store == "journal" else "memory", str(WORKFLOW), "local",
              {"n_trials": n, "timeout": None, "seed": 0, "workers": agents, "max_failures": None,
               "run_id": "big"}).save(run_dir)
    before = count_entries(run_dir)
    backend = AgentsBackend(agents)
    coordinator = Coordinator(study, backend, Setup(str(run_dir), str(WORKFLOW), None, heartbeat_s=10.0), run_dir,
                              Budget(n_trials=n, timeout=None, max_failures=0), run_id="big", seed=0)
    sampler, watch = RssSampler(), SliceWatch(coordinator, min(SLICE, max(n // 10, 1)))
    sampler.start()
    watch.start()
    start, cpu = time.time(), time.process_time()
    summary = coordinator.run()
    wall, cpu = time.time() - start, time.process_time() - cpu
    backend.close()
    sampler.stop.set()
    watch.stop.set()
    kept = coordinator.snapshots.written  # snapshots written while the run went on
    if store == "journal" and (run_dir / "study.journal.snapshot").exists():  # what a coordinator killed now leaves
        shutil.copy2(run_dir / "study.journal.snapshot", folder / "running.snapshot")
    snapshot_s = time.perf_counter()
    save_journal_snapshot(study, run_dir / "study.journal" if store == "journal" else None)  # as `hpwf run` ends
    snapshot_s = time.perf_counter() - snapshot_s
    assert summary["complete"] == n, summary
    trials = study.get_trials(deepcopy=False)
    ends = sorted(t.datetime_complete.timestamp() for t in trials if t.datetime_complete is not None)
    first = min(t.datetime_start.timestamp() for t in trials if t.datetime_start is not None)
    size = min(SLICE, max(n // 10, 1))
    marks = [first] + [ends[min(k, len(ends)) - 1] for k in range(size, n + 1, size)]  # (agents' start-up left out)
    rates = [size / max(b - a, 1e-9) for a, b in zip(marks, marks[1:])]
    cpu_ms = [1e3 * (sampler.at(b, 2) - sampler.at(a, 2)) / size for a, b in zip(marks, marks[1:])]  # steadier on a busy machine
    files, dirs = count_entries(run_dir)
    created = files + dirs - sum(before) - (2 if store == "journal" else 1)  # less the journal (+ lock) and summary
    tenth = ends[size - 1]
    return {
        "store": store, "n_trials": n, "agents": agents, "wall_s": round(wall, 1), "trials_per_s": round(n / wall, 1),
        "coordinator_cpu_ms_per_trial": round(1e3 * cpu / n, 3), "slice": size,
        "slice_trials_per_s": [round(r, 1) for r in rates], "last_over_first": round(rates[-1] / rates[0], 3),
        "slice_coordinator_cpu_ms_per_trial": [round(c, 3) for c in cpu_ms],
        "cpu_last_over_first": round(cpu_ms[-1] / cpu_ms[0], 3) if cpu_ms[0] > 0 else None,
        "rss_mb_at_10pct": round(sampler.at(tenth), 1), "rss_mb_at_end": round(sampler.at(ends[-1]), 1),
        "rss_mb_per_10k": round((sampler.at(ends[-1]) - sampler.at(tenth)) / max(n - size, 1) * 1e4, 2),
        "files": files, "dirs": dirs, "created_per_trial": round(max(created, 0) / n, 5),
        "snapshot_save_s": round(snapshot_s, 2) if store == "journal" else None,
        "snapshots_during_run": kept if store == "journal" else None,
    }


BARE = """
import sys, time, resource, optuna
from optuna.storages.journal import JournalFileBackend
optuna.logging.set_verbosity(optuna.logging.WARNING)
n, store = int(sys.argv[1]), sys.argv[2]
storage = optuna.storages.InMemoryStorage() if store == "memory" else optuna.storages.JournalStorage(JournalFileBackend(sys.argv[3]))
study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
tenth = None
for i in range(n):
    t = study.ask()
    x, y = t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)
    for s in range(3):
        t.report(x + y, s)
    t.set_user_attr("hpwf:run", "big")
    study.tell(t, x + y)
    if i + 1 == max(n // 10, 1):
        tenth = rss()
print(tenth, rss())
"""


def bare_store_rss(store: str, n: int, folder: Path) -> dict[str, float]:
    """RSS of a bare Optuna ask/tell loop holding the same trials in the same kind of store."""
    _, proc = timed([PY, "-c", BARE, str(n), store, str(folder / f"bare-{store}.journal")], timeout=1800)
    tenth, end = map(float, proc.stdout.split())
    return {"bare_rss_mb_at_10pct": round(tenth, 1), "bare_rss_mb_at_end": round(end, 1),
            "bare_rss_mb_per_10k": round((end - tenth) / max(n - max(n // 10, 1), 1) * 1e4, 2)}


def cpu_timed(command: list[str], timeout: float = 600) -> tuple[float, float, Any]:
    """`timed`, plus the CPU seconds (user + system) the command and its children used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, proc = timed(command, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc


def readers(run_dir: Path, n: int) -> dict[str, Any]:
    """Times of what a user runs on the finished run, beside Optuna's own load of the same journal
    (wall ``_s``; ``_cpu_s``: CPU seconds, which a busy machine inflates much less)."""
    out: dict[str, Any] = {}
    for key, extra in (("status", []), ("status_json", ["--json"])):
        wall, cpu, _ = cpu_timed([PY, "-m", "hpwf", "status", str(run_dir), *extra])
        out[f"{key}_s"], out[f"{key}_cpu_s"] = round(wall, 2), round(cpu, 2)
    load = ("import sys, time, optuna; from optuna.storages.journal import JournalFileBackend; t = time.perf_counter(); "
            "s = optuna.load_study(study_name='big', storage=optuna.storages.JournalStorage(JournalFileBackend(sys.argv[1]))); "
            "s.get_trials(deepcopy=False); print(time.perf_counter() - t)")
    wall, cpu, proc = cpu_timed([PY, "-c", load, str(run_dir / "study.journal")])
    out["optuna_load_get_trials_s"], out["optuna_load_process_s"] = round(float(proc.stdout), 2), round(wall, 2)
    out["optuna_load_process_cpu_s"] = round(cpu, 2)
    wall, cpu, _ = cpu_timed([PY, "-m", "hpwf", "report", str(run_dir)], timeout=1800)
    out["report_s"], out["report_cpu_s"] = round(wall, 2), round(cpu, 2)
    out["report_html_mb"] = round((run_dir / "report.html").stat().st_size / 1e6, 2)
    bare = run_dir.with_name(run_dir.name + "-crashed")  # the same run with no snapshot (a coordinator killed early)
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("*.snapshot"))
    cases = [("resume", run_dir), ("resume_no_snapshot", bare)]
    running = run_dir.parent / "running.snapshot"  # the snapshot kept during the run: a coordinator killed at its end
    if running.exists():
        killed = run_dir.with_name(run_dir.name + "-killed")
        shutil.copytree(run_dir, killed, ignore=shutil.ignore_patterns("*.snapshot"))
        shutil.copy2(running, killed / "study.journal.snapshot")
        cases.insert(1, ("resume_killed", killed))
    for key, folder in cases:
        start = time.time()
        wall, cpu, _ = cpu_timed([PY, "-m", "hpwf", "resume", str(folder), "--n-trials", str(n + 1), "--workers", "1",
                                  "--quiet"], timeout=1800)
        study = optuna.load_study(study_name="big", storage=journal_storage(folder / "study.journal", read_only=True))
        new = [t for t in study.get_trials(deepcopy=False) if t.number >= n]
        first = min(t.datetime_start.timestamp() for t in new if t.datetime_start is not None)
        out[f"{key}_start_s"], out[f"{key}_wall_s"], out[f"{key}_cpu_s"] = round(first - start, 2), round(wall, 2), round(cpu, 2)
    for _, folder in cases[1:]:
        shutil.rmtree(folder)
    return out


def synthetic_readers(folder: Path, n: int) -> dict[str, Any]:
    """The readers on a finished ``n``-trial run written straight into a journal (`tests/bigjournal.py`):
    the figures at full size when the run itself was measured smaller."""
    from tests.bigjournal import make_run

    run_dir = make_run(folder / "written", n, workflow=WORKFLOW)
    snapshot_s = time.perf_counter()  # what `hpwf run` leaves when it ends: the replay snapshot
    save_journal_snapshot(optuna.load_study(study_name="big", storage=journal_storage(run_dir / "study.journal")),
                          run_dir / "study.journal")
    return {"n_trials": n, "snapshot_save_s": round(time.perf_counter() - snapshot_s, 2), **readers(run_dir, n)}


def run(quick: bool = False, trials: int | None = None, agents: int = 8) -> dict[str, Any]:
    """``HPWF_BIGSTUDY_JOURNAL_TRIALS``: a smaller size for the journal run (its store fsyncs every
    record); the readers are then also timed on a journal of ``trials`` written straight."""
    n = trials or (2000 if quick else 100_000)
    sizes = {"memory": n, "journal": int(os.environ.get("HPWF_BIGSTUDY_JOURNAL_TRIALS", n))}
    stores = os.environ.get("HPWF_BIGSTUDY_STORES", "journal,memory").split(",")  # e.g. ``journal`` alone
    bare = os.environ.get("HPWF_BIGSTUDY_BARE", "1") == "1"  # 0: no bare Optuna loop (its own journal ask is O(n))
    rows = []
    written: dict[str, Any] = {}
    with scratch("bigstudy") as folder:
        for store in stores:
            row = one(store, sizes[store], agents, folder)
            row.update(bare_store_rss(store, sizes[store], folder) if bare else {})
            print(f"  {store}: {row['trials_per_s']} trials/s; slices {row['slice_trials_per_s']}; RSS "
                  f"{row['rss_mb_at_10pct']} -> {row['rss_mb_at_end']} MB (bare Optuna {row.get('bare_rss_mb_at_10pct')} -> "
                  f"{row.get('bare_rss_mb_at_end')}); {row['created_per_trial']} files+dirs/trial", flush=True)
            if store == "journal":
                row.update(readers(folder / "run-journal", sizes[store]))
                print(f"  readers: {json.dumps({k: v for k, v in row.items() if k.endswith(('_s', '_mb')) and k != 'wall_s'})}",
                      flush=True)
            rows.append(row)
        full = 100_000 if not quick else n
        if sizes["journal"] < full:
            written = synthetic_readers(folder, full)
            print(f"  readers on {full} trials written straight into a journal: {json.dumps(written)}", flush=True)
    journal = rows[0]
    worst = min(r["last_over_first"] for r in rows)
    return {
        "benchmark": "bigstudy", "n_trials": n, "rows": rows, "ratio": worst, "readers_written": written,
        "comparison": "last 10,000-trial slice's trials/s over the first's, worst of journal and memory (aim >= 0.9); "
                      "readers on the finished journal run beside Optuna's load_study + get_trials",
        "line": f"bigstudy: {sizes['memory']} trials in memory, {sizes['journal']} on the journal; last/first slice {', '.join(str(r['last_over_first']) for r in rows)} "
                f"(journal, memory); {journal['created_per_trial']} files/trial; status {journal['status_s']} s, "
                f"report {journal['report_s']} s ({journal['report_html_mb']} MB), resume start {journal['resume_start_s']} s (killed coordinator: {journal.get('resume_killed_start_s')} s); "
                f"Optuna load {journal['optuna_load_get_trials_s']} s"
                + (f"; at {written.get('n_trials')} written: status {written['status_s']} s, report {written['report_s']} s "
                   f"({written['report_html_mb']} MB), resume start {written['resume_start_s']} s, Optuna load "
                   f"{written['optuna_load_get_trials_s']} s" if written else ""),
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.bigstudy")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--agents", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(run(trials=args.trials, agents=args.agents), indent=1))
    sys.exit(0)
