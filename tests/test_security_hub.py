"""The attacker suite: while a real run goes on (local backend), another process on the same
node attacks the hub and the Dask cluster. Every attempt is refused, and the run reaches its
budget with nothing lost.

The attacker finds its targets as a real one would: the listening sockets of the coordinator
and of its Dask workers (``ss``/``/proc``, here through psutil). A TCP port that greets with
a challenge is the hub; any other port is Dask's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from multiprocessing import AuthenticationError
from pathlib import Path
from typing import Any

import psutil
import pytest

from hpwf.wire._handshake import connect

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 8


def listening(pid: int) -> tuple[list[str], list[int]]:
    """Unix socket paths and TCP ports that the process ``pid`` and its children listen on."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    paths: set[str] = set()
    ports: set[int] = set()
    for proc in procs:
        try:
            for c in proc.net_connections(kind="unix"):
                if c.laddr and os.path.exists(c.laddr) and stat.S_ISSOCK(os.stat(c.laddr).st_mode):
                    paths.add(c.laddr)
            ports.update(c.laddr.port for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN)
        except psutil.Error:
            pass
    return sorted(paths), sorted(ports)


def is_hub(port: int) -> bool:
    """The hub greets first, with hpwf's (or multiprocessing's) challenge."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:  # it closed since it was listed (e.g. a launched group's mpirun): not the hub
        return False
    with sock:
        sock.settimeout(1.5)
        try:
            greeting = sock.recv(64)
        except (socket.timeout, OSError):
            return False
        return greeting.startswith(b"hpwf-hub") or b"#CHALLENGE#" in greeting


def find_targets(pid: int, deadline: float) -> tuple[list[Any], list[int]]:
    """(hub addresses, Dask ports) once the run's hub and cluster are up."""
    while time.time() < deadline:
        paths, ports = listening(pid)
        hubs: list[Any] = list(paths) + [("127.0.0.1", p) for p in ports if is_hub(p)]
        dask_ports = [p for p in ports if ("127.0.0.1", p) not in hubs]
        if hubs and len(dask_ports) >= 2:  # Dask's two (emptied) HTTP servers: the cluster is inproc://
            return hubs, dask_ports
        time.sleep(0.5)
    raise AssertionError(f"the run's hub and Dask cluster did not come up: {listening(pid)}")


def raw(address: Any) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX if isinstance(address, str) else socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(address)
    return sock


def attack_hub(address: Any) -> list[socket.socket]:
    """Wrong key, random bytes, silence, 200 connections in a row; returns the sockets held open."""
    box: dict[str, Any] = {}

    def wrong_key() -> None:
        try:
            connect(address, b"a guess")
            box["wrong key"] = "accepted"
        except AuthenticationError:
            box["wrong key"] = "refused"
        except BaseException as exc:  # noqa: BLE001
            box["wrong key"] = f"error {exc!r}"

    thread = threading.Thread(target=wrong_key, daemon=True)
    thread.start()
    thread.join(60)
    assert box.get("wrong key") == "refused", f"a wrong key: {box.get('wrong key', 'no answer in 60 s')}"
    for garbage in (os.urandom(4096), (32).to_bytes(4, "big") + os.urandom(32), os.urandom(64)):
        with raw(address) as sock:
            try:
                sock.sendall(garbage)
            except OSError:
                pass
    held = [raw(address)]  # silence
    for _ in range(200):
        try:
            held.append(raw(address))
        except OSError:
            pass
    return held


MARKER_CODE = "lambda path: open(path, 'w').write('pwned')"


def attack_dask(ports: list[int], marker: Path) -> list[str]:
    """Talk to every Dask port without the run's certificate, all at once; what got through."""
    got_through: list[str] = []
    threads = [threading.Thread(target=_attack_dask_port, args=(port, marker, got_through), daemon=True)
               for port in ports]
    for thread in threads:
        thread.start()
    deadline = time.time() + 30
    for thread in threads:
        thread.join(max(deadline - time.time(), 0.1))  # one still trying has not got through: the marker tells
    return got_through


def _attack_dask_port(port: int, marker: Path, got_through: list[str]) -> None:
    import distributed
    from distributed.security import Security

    for address, security in ((f"tcp://127.0.0.1:{port}", None), (f"tls://127.0.0.1:{port}", Security.temporary())):
        try:
            with distributed.Client(address, timeout=5, security=security) as client:
                client.run(eval(MARKER_CODE), str(marker))
                got_through.append(f"{address}: client.run executed")
        except Exception:  # noqa: BLE001 - refused, as it should be
            pass
    for page in ("/json/identity.json", "/info/main/workers.html", "/metrics"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=5) as reply:
                got_through.append(f"http://127.0.0.1:{port}{page}: HTTP {reply.status}")
        except (urllib.error.URLError, OSError, ValueError):
            pass


@pytest.mark.mpi
def test_attacks_during_a_local_run_are_refused_and_the_run_reaches_its_budget(tmp_path: Path) -> None:
    run_dir, marker = tmp_path / "run", tmp_path / "pwned"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PAIRS_TRIALS": str(TRIALS), "PAIRS_SLEEP": "8"}
    log = open(tmp_path / "run.log", "w")  # noqa: SIM115 - a file, not a pipe that could fill up
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpwf", "run", "tests/workflows/pairs.py", "--workers", "2", "--run-dir",
         str(run_dir), "--quiet"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    held: list[socket.socket] = []
    try:
        hubs, _ = find_targets(proc.pid, time.time() + 120)
        for hub in hubs:
            held += attack_hub(hub)
        _, ports = listening(proc.pid)  # the workers' ports too, by now
        got_through = attack_dask([p for p in ports if ("127.0.0.1", p) not in hubs], marker)
        assert proc.poll() is None, "the run ended before the attacks did: make it longer (PAIRS_SLEEP)"
        assert not got_through, f"Dask let a client without the run's certificate in: {got_through}"
        assert not marker.exists(), "code sent by an unauthenticated Dask client ran on a worker"
        try:
            proc.wait(timeout=400)
        except subprocess.TimeoutExpired:
            raise AssertionError("the run did not finish within 400 s after the attacks") from None
    finally:
        for sock in held:
            sock.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the run's own session: its Dask workers and mpirun too
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["complete"], summary["fail"]) == (TRIALS, 0), summary
