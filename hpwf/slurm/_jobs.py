"""Inside and around a running job: its state (`hpwf status`, tests), the signal hand-off to rank 0,
MPICH's leftovers on a requeue, and ``python -m hpwf.slurm`` for the job script's helpers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from hpwf.slurm._schedulers import JOB_ID_FILE

ARRAY_JOB_ID_FILE = "ensemble_array_job_id"
# States after which a job will not run again (a requeued job passes through PENDING instead).
FINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED",
})


def run_job_state(run_dir: Path) -> dict[str, str | None] | None:
    """``{"job_id", "state"}`` of the Slurm job that `hpwf submit` started for ``run_dir``, with
    ``"array_job_id"`` and ``"array_state"`` (e.g. ``"RUNNING 2, PENDING 2"``) for an ensemble array."""
    paths = [Path(run_dir) / name for name in (JOB_ID_FILE, ARRAY_JOB_ID_FILE)]
    from hpwf.rundir import is_file, read_file

    if not any(is_file(p) for p in paths):
        return None
    job_id, array_id = (read_file(p).decode().strip() if is_file(p) else None for p in paths)
    result: dict[str, str | None] = {"job_id": job_id, "state": None}
    try:
        if job_id:
            result["state"] = job_state(job_id)
        if array_id:
            result.update(array_job_id=array_id, array_state=array_state(array_id))
    except OSError:  # no Slurm client on this machine
        pass
    return result

def array_state(array_id: str) -> str | None:
    """How many tasks of a job array are in each state (squeue), or None once Slurm forgot them."""
    done = subprocess.run(["squeue", "-h", "-r", "-j", array_id, "-o", "%T"], capture_output=True, text=True)
    states = done.stdout.split() if done.returncode == 0 else []
    if not states:
        return None
    return ", ".join(f"{state} {states.count(state)}" for state in sorted(set(states)))

def job_state(job_id: str) -> str | None:
    """The job's state (``PENDING``, ``RUNNING``, ``COMPLETED``, ...) from squeue, else scontrol.

    None when Slurm no longer knows the job (it left the controller's memory after MinJobAge).
    """
    done = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    state = done.stdout.strip() if done.returncode == 0 else ""
    if state:
        return state.split()[0]
    done = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
    match = re.search(r"\bJobState=(\S+)", done.stdout)
    return match.group(1) if match else None

def wait_for_job(job_id: str, timeout: float = 600.0, poll: float = 1.0) -> str:
    """Wait until the job is in a final state and return it (``UNKNOWN`` if Slurm forgot it).

    Raises:
        TimeoutError: still not done after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        state = job_state(job_id)
        if state is None:
            return "UNKNOWN"
        if state in FINAL_STATES:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {state} after {timeout:.0f} s")
        time.sleep(poll)

def signal_rank0(signame: str, token: str, wait_s: float = 10.0) -> list[int]:
    """Send ``signame`` to rank 0 of the ``hpwf`` step tagged ``HPWF_STEP_TOKEN=token`` on this node.

    Only the coordinator gets the signal; it stops the other ranks itself, so no agent dies
    mid-trial. Rank 0 is the ``python -m hpwf ...`` process of the step whose launcher variables
    (``PMI_RANK``, ``SLURM_PROCID``, ... read with `hpwf.workflow._topology.placement`) say rank 0. It is
    looked for up to ``wait_s`` seconds (the step may still be starting). Returns the pids signalled.
    """
    from hpwf.workflow import LAUNCHERS, placement

    signum = signal.Signals["SIG" + signame.removeprefix("SIG")]
    needle = f"HPWF_STEP_TOKEN={token}".encode()
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if argv[1:3] != [b"-m", b"hpwf"] and argv[1:4] != [b"-P", b"-m", b"hpwf"]:
                    continue
                raw = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle not in raw:
                continue
            env = dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)
            # (without a launcher's rank variable, placement() would ask mpi4py in this process)
            if any(rank_var in env for _, rank_var, *_ in LAUNCHERS) and placement(env).rank == 0:
                found.append(int(entry.name))
        for pid in found:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)

def mpich_shm_names(job_id: str, steps: int = 256) -> list[str]:
    """The name prefixes MPICH 4 gives its per-node shared memory in steps of ``job_id`` under srun.

    MPICH names the segment ``mpich_shm_<FNV-1a of the PMI job id>_<node>``, and under Slurm's
    pmi2/pmix plugins that id is ``JOBID.STEPID``. Ranks killed mid-run never unlink it, and a
    requeued job has the same job id and step ids: its ranks would open the stale segment and
    fail in ``MPI_Init`` ("Message truncated") or hang there.

    Example:
        >>> mpich_shm_names("9", steps=1)
        ['mpich_shm_e200f4fa_', 'mpich_vci_e200f4fa_']
    """
    names = []
    for step in range(steps):
        digest = 2166136261
        for byte in f"{job_id}.{step}".encode():
            digest = ((digest ^ byte) * 16777619) & 0xFFFFFFFF
        names += [f"mpich_shm_{digest:x}_", f"mpich_vci_{digest:x}_"]
    return names

def clean_stale_shm(job_id: str, folder: Path = Path("/dev/shm")) -> list[Path]:
    """Remove this job's MPICH segments from ``folder`` (run before its steps start again)."""
    prefixes = tuple(mpich_shm_names(job_id))
    removed = []
    for path in folder.glob("mpich_*"):
        if path.name.startswith(prefixes):
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed

def main(argv: Sequence[str]) -> int:
    """The job script's helpers: ``python -m hpwf.slurm signal-rank0 SIGNAL TOKEN`` (hand a
    signal to the coordinator) and ``python -m hpwf.slurm clean-shm JOBID`` (before a restart)."""
    if len(argv) == 3 and argv[0] == "signal-rank0":
        return 0 if signal_rank0(argv[1], argv[2]) else 1
    if len(argv) == 2 and argv[0] == "clean-shm":
        for path in clean_stale_shm(argv[1]):
            print(f"[hpwf job] removed {path}, left by a killed MPI step of job {argv[1]}")
        return 0
    print("usage: python -m hpwf.slurm signal-rank0 SIGNAL TOKEN | clean-shm JOBID", file=sys.stderr)
    return 2
