"""Dask under hpwf: TLS everywhere hpwf starts a cluster, the user's certificates for theirs, a
warning for a plain ``tcp://`` scheduler, and the hub's key never inside a Dask task."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

import hpwf
from hpwf.wire._channel import Hub
from hpwf.backends.dask import DaskBackend
from hpwf.backends.local import LocalBackend
from tests import objectives
from tests.conformance import run, states
from hpwf.rundir._trialdir import trial_folders

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tasks(dask_scheduler: Any) -> list[tuple[str, bytes]]:
    out = []
    for ts in dask_scheduler.tasks.values():
        try:
            spec = pickle.dumps(ts.run_spec)
        except Exception:  # noqa: BLE001 - an unpicklable spec is still readable as text
            spec = repr(ts.run_spec).encode()
        out.append((str(ts.key), spec))
    return out


def _write_marker(path: str) -> None:
    Path(path).write_text("pwned")


def test_the_local_cluster_opens_no_port_to_strangers_and_tasks_carry_no_key(tmp_path: Path) -> None:
    import psutil

    hub, backend = Hub("127.0.0.1"), LocalBackend(workers=1)
    try:
        listening_before = _listening()
        backend.start(hub.address, hub.authkey)
        deadline = time.time() + 120
        while not (arrived := hub.take_new()) and time.time() < deadline:  # the agent found its key and got in
            time.sleep(0.1)
        assert arrived, "the local backend's agent never reached the hub"
        agents = [p for p in psutil.Process().children(recursive=True) if "hpwf.worker._child" in p.cmdline()]
        assert len(agents) == 1  # a process of its own, a child of the coordinator's
        client = backend._client
        assert client is not None
        key = hub.authkey
        for task_key, spec in client.run_on_scheduler(_tasks):
            assert key.hex()[:8] not in task_key, f"bits of the hub key in the Dask task key {task_key}"
            assert key not in spec and key.hex().encode() not in spec, f"the hub key in the arguments of {task_key}"
        assert client.scheduler.address.startswith("inproc://"), client.scheduler.address  # memory, no socket
        opened = _listening() - listening_before
        assert all(host == "127.0.0.1" for host, _ in opened), opened  # only Dask's emptied HTTP server, on loopback
        for host, port in opened:  # Dask's pages are off: a stranger on the host reads nothing
            for page in ("/", "/info/main/workers.html", "/json/identity.json"):
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(f"http://{host}:{port}{page}", timeout=5)
                assert refused.value.code == 404, page
    finally:
        backend.close()
        hub.close()


def _listening() -> set[tuple[str, int]]:
    import psutil

    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


def test_the_hub_key_file_is_private_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpwf.backends._dask_security import read_key_file, remove_key_file, write_key_file

    keys = tmp_path / "keys"
    keys.mkdir(mode=0o755)
    keys.chmod(0o755)
    monkeypatch.setenv("HPWF_KEY_DIR", str(keys))
    path = write_key_file(b"k" * 32, ("10.0.0.1", 5000))  # a TCP hub: agents on other hosts
    assert path.parent == keys and stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and read_key_file(path) == b"k" * 32
    remove_key_file(path)
    assert not path.exists()
    with pytest.raises(FileNotFoundError, match="shared filesystem"):
        read_key_file(path)


def test_a_plain_tcp_scheduler_draws_one_warning_line(capsys: pytest.CaptureFixture[str]) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                      host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        backend = DaskBackend(scheduler=cluster.scheduler_address)
        backend.close()
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and cluster.scheduler_address in warnings[0] and "tls://" in warnings[0], err


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The user's own certificate authority: one self-signed certificate and its key, in 0600 files."""
    from distributed.security import Security

    folder = tmp_path_factory.mktemp("tls")
    made = Security.temporary()
    cert, key = made.tls_ca_file, made.tls_client_key
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    for path, text in ((paths["ca"], cert), (paths["cert"], cert), (paths["key"], key)):
        path.write_text(text)
        path.chmod(0o600)
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def tls_cluster(certificates: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two workers started with Dask's own command line, TLS only."""
    from distributed import Client
    from distributed.security import Security

    folder = tmp_path_factory.mktemp("tls-dask")
    scheduler_file = folder / "scheduler.json"
    tls = ["--tls-ca-file", certificates["ca"], "--tls-cert", certificates["cert"], "--tls-key", certificates["key"]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(scheduler_file), *tls],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 120
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://"), address
        procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
                                       "--no-dashboard", "--host", "127.0.0.1", *tls],
                                      cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        security = Security(require_encryption=True, tls_ca_file=certificates["ca"],
                            tls_client_cert=certificates["cert"], tls_client_key=certificates["key"])
        with Client(address, timeout=60, security=security) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for proc in procs[::-1]:
            proc.terminate()
            proc.wait(timeout=30)


def test_a_tls_scheduler_with_explicit_certificate_paths(tls_cluster: str, certificates: dict[str, str],
                                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backend = DaskBackend(scheduler=tls_cluster, tls_ca_file=certificates["ca"], tls_cert=certificates["cert"],
                          tls_key=certificates["key"])
    result = run(backend, tmp_path, objectives.quadratic, n_trials=4, seed=1)
    assert states(result) == {"COMPLETE": 4}
    assert "warning" not in capsys.readouterr().err


def test_a_tls_scheduler_from_dask_config_on_the_command_line(tls_cluster: str, certificates: dict[str, str],
                                                             tmp_path: Path) -> None:
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": certificates["ca"],
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": certificates["cert"],
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": certificates["key"]}
    proc = subprocess.run(
        [sys.executable, "-m", "hpwf", "run", "tests/workflows/toy.py", "--backend", "dask", "--scheduler",
         tls_cluster, "--run-dir", str(tmp_path / "run"), "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning" not in proc.stderr
    info = hpwf.status(tmp_path / "run")
    assert info["complete"] + info["pruned"] == 12


def test_a_tls_scheduler_without_certificates_exits_2(tls_cluster: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_DISTRIBUTED__COMM__TLS")}
    proc = subprocess.run(
        [sys.executable, "-m", "hpwf", "run", "tests/workflows/toy.py", "--backend", "dask", "--scheduler",
         tls_cluster, "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and "distributed.comm.tls.ca-file" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.mpi
def test_dask_mpi_refuses_a_plain_client(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [str(BIN / "mpirun"), "-np", "4", sys.executable, "-m", "hpwf", "run", "tests/workflows/dask_probe.py",
         "--backend", "dask-mpi", "--run-dir", str(run_dir), "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "HPWF_DASK_INTERFACE": "lo"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = [log.read_text() for log in (p / "log.txt" for p in trial_folders(run_dir) if (p / "log.txt").exists())]
    assert len(logs) == 2 and all("plain client refused" in log for log in logs), logs
    assert not any("got in" in log for log in logs) and not [p for p in trial_folders(run_dir) if (p / "pwned").exists()], logs
