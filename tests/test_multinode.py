"""hpwf across simulated nodes: MPI groups within and across nodes, agents on other hosts, Dask, a lost node.

The module fixture runs tests/multinode/nodes.sh: three "nodes" (network, UTS and mount
namespaces joined by a bridge, 10.77.0.1-3, hostnames nodeA-nodeC), each with an sshd and a
test key, sharing this machine's file system. Commands run on a node through its sshd, so they
see its hostname; MPICH's ssh launcher starts ranks on the others. Needs root (as CI runs);
nothing is skipped: a machine that cannot create namespaces fails these tests, saying why.
The node-loss tests kill nodeC and bring its sshd back afterwards. Select them with
``pytest -m multinode``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
from optuna.trial import TrialState

import hpwf
from hpwf.rundir._trialdir import trial_folder, trial_folders

pytestmark = [pytest.mark.multinode, pytest.mark.mpi]

ROOT = Path(__file__).resolve().parents[1]
NODES_SH = ROOT / "tests" / "multinode" / "nodes.sh"
VENV_BIN = Path(sys.executable).parent
HVD = "tests/workflows/hvd_check.py"
WHERE = "tests/workflows/where.py"


@dataclass
class Nodes:
    """The simulated nodes: run commands on them, start daemons there, lose one."""

    state: Path
    address: dict[str, str] = field(default_factory=dict)
    namespace: dict[str, str] = field(default_factory=dict)
    daemons: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for line in (self.state / "nodes").read_text().splitlines():
            name, address, namespace = line.split()
            self.address[name], self.namespace[name] = address, namespace

    @property
    def ssh(self) -> str:
        return str(self.state / "ssh")

    def _argv(self, node: str, command: str, env: dict[str, str] | None) -> list[str]:
        exports = {"PATH": f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(ROOT),
                   "HOME": os.environ.get("HOME", "/root"), **(env or {})}
        line = f"cd {shlex.quote(str(ROOT))} && env " + " ".join(
            f"{k}={shlex.quote(v)}" for k, v in exports.items()) + " " + command
        return ["ip", "netns", "exec", self.namespace[node], self.ssh, self.address[node], line]

    def run(self, node: str, command: str, env: dict[str, str] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """Run ``command`` (a shell line) on ``node`` in the repository, with the venv on PATH."""
        return subprocess.run(self._argv(node, command, env), capture_output=True, text=True, timeout=timeout)

    def start(self, node: str, command: str, log: Path, env: dict[str, str] | None = None) -> None:
        """Start a daemon on ``node``; it is ended by `stop_daemons` (or with its node)."""
        pidfile = log.with_suffix(".pid")
        line = f"sh -c {shlex.quote(f'echo $$ > {pidfile}; exec {command}')}"
        with open(log, "wb") as out:
            proc = subprocess.Popen(self._argv(node, line, env), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        self.daemons.append((proc, pidfile))

    def stop_daemons(self) -> None:
        for proc, pidfile in self.daemons:
            try:
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.daemons.clear()

    def lose(self, node: str) -> None:
        """Every process of ``node`` is killed at once (the node is gone)."""
        subprocess.run([str(NODES_SH), "kill", str(self.state), node], check=True, capture_output=True, timeout=60)

    def revive(self, node: str) -> None:
        """A lost node comes back (its sshd; nothing else it ran)."""
        subprocess.run([str(NODES_SH), "revive", str(self.state), node], check=True, capture_output=True, timeout=60)

    def mpirun(self, hosts: str, np: int, args: str) -> str:
        return f"mpirun -launcher ssh -launcher-exec {shlex.quote(self.ssh)} -hosts {hosts} -np {np} {args}"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    state = tmp_path_factory.mktemp("nodes")
    started = time.time()
    proc = subprocess.run([str(NODES_SH), "start", str(state), "3"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHON": sys.executable,
                               "HPWF_NODES_OWNER": str(os.getpid())})  # if killed, the next start removes them
    try:
        if proc.returncode != 0:
            pytest.fail(f"cannot create the simulated nodes (tests/multinode/nodes.sh start):\n{proc.stderr[-3000:]}",
                        pytrace=False)
        print(f"\n[nodes] ready in {time.time() - started:.1f} s")
        cluster = Nodes(state)
        try:
            yield cluster
        finally:
            cluster.stop_daemons()
    finally:
        subprocess.run([str(NODES_SH), "stop", str(state)], capture_output=True, timeout=120)


def rank_records(run_dir: Path, number: int) -> list[dict]:  # type: ignore[type-arg]
    folder = trial_folder(run_dir, number)
    return [json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"))]


def hosts_of_trials(run_dir: Path) -> dict[int, str]:
    return {int(p.parent.name): p.read_text() for p in (p / "host.txt" for p in trial_folders(run_dir) if (p / "host.txt").exists())}


def complete(run_dir: Path) -> list:  # type: ignore[type-arg]
    return [t for t in hpwf.load_study(run_dir).trials if t.state == TrialState.COMPLETE]


def test_groups_of_two_stay_within_a_node(nodes: Nodes, tmp_path: Path) -> None:
    """mpirun -np 9 -hosts nodeA,nodeB: ranks alternate between the nodes, yet every 2-rank group
    is placed on one node; MPICH's local rank and node come out right on each."""
    run_dir = tmp_path / "run"
    proc = nodes.run("nodeA", nodes.mpirun("nodeA,nodeB", 9, f"python -m hpwf run {HVD} --backend mpi "
                                                              f"--run-dir {run_dir} --quiet"),
                     env={"HVD_TRIALS": "4", "HVD_RANKS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = complete(run_dir)
    assert len(trials) == 4
    used = set()
    for t in trials:
        ranks = rank_records(run_dir, t.number)
        assert [r["hvd_size"] for r in ranks] == [2, 2]
        assert len({r["host"] for r in ranks}) == 1, f"trial {t.number} spans nodes: {ranks}"
        assert ranks[0]["weights"] == ranks[1]["weights"]
        for r in ranks:  # round-robin placement: even ranks on nodeA, odd on nodeB
            assert r["host"] == ("nodeA" if r["world_rank"] % 2 == 0 else "nodeB")
            assert r["node"] == r["host"] and r["local_rank"] == r["world_rank"] // 2
            used.add(r["host"])
    assert used == {"nodeA", "nodeB"}


def test_a_group_spanning_two_nodes_trains_with_horovod(nodes: Nodes, tmp_path: Path) -> None:
    """Two worker ranks per node and ranks_per_trial=4: each group spans both nodes, and
    Horovod's broadcast and allreduce across them leave identical weights on every rank."""
    run_dir = tmp_path / "run"
    proc = nodes.run("nodeA", nodes.mpirun("nodeA:3,nodeB:2", 5, f"python -m hpwf run {HVD} --backend mpi "
                                                                  f"--run-dir {run_dir} --quiet"),
                     env={"HVD_TRIALS": "2", "HVD_RANKS": "4"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = complete(run_dir)
    assert len(trials) == 2
    for t in trials:
        ranks = rank_records(run_dir, t.number)
        assert [r["hvd_size"] for r in ranks] == [4] * 4 and [r["hvd_rank"] for r in ranks] == [0, 1, 2, 3]
        assert [r["host"] for r in ranks] == ["nodeA", "nodeA", "nodeB", "nodeB"]
        assert [r["local_rank"] for r in ranks] == [1, 2, 0, 1]  # rank 0 (coordinator) is nodeA's local 0
        assert all(r["weights"] == ranks[0]["weights"] for r in ranks)
        assert all(r["params"] == t.params for r in ranks)


def hydra_env(nodes: Nodes, tmp_path: Path, layout: str) -> dict[str, str]:
    """MPICH's variables for an ``mpirun`` that hpwf starts itself (--backend mpirun)."""
    hostfile = tmp_path / "hosts"
    hostfile.write_text("\n".join(layout.split(",")) + "\n")
    return {"HYDRA_HOST_FILE": str(hostfile), "HYDRA_LAUNCHER": "ssh", "HYDRA_LAUNCHER_EXEC": nodes.ssh}


def test_mpirun_backend_agents_on_the_other_node_connect(nodes: Nodes, tmp_path: Path) -> None:
    """The coordinator on nodeA listens on the interface that reaches nodeB, not on loopback; it
    places trials once every rank has said hello, so 2-rank groups stay within a node."""
    run_dir = tmp_path / "run"
    env = {**hydra_env(nodes, tmp_path, "nodeA:2,nodeB:2"), "HVD_TRIALS": "4", "HVD_RANKS": "2"}
    proc = nodes.run("nodeA", f"python -m hpwf run {HVD} --backend mpirun --workers 4 --run-dir {run_dir} --quiet",
                     env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "never connected" not in proc.stderr and "cannot reach" not in proc.stderr
    trials = complete(run_dir)
    assert len(trials) == 4
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["agents_seen"] == 4 and summary["slots"] == 4
    used = set()
    for t in trials:
        ranks = rank_records(run_dir, t.number)
        assert [r["hvd_size"] for r in ranks] == [2, 2] and ranks[0]["weights"] == ranks[1]["weights"]
        assert len({r["host"] for r in ranks}) == 1, f"trial {t.number} spans nodes: {ranks}"
        used.update(r["host"] for r in ranks)
    assert used == {"nodeA", "nodeB"}


# A hub on loopback listens on a Unix socket in a private /tmp folder; these simulated nodes share
# one file system, so nodeB would reach it, while a real node's /tmp is its own: TCP it is here.
LOOPBACK_TCP = {"HPWF_HUB_TCP": "1"}


def test_agents_that_cannot_connect_are_reported(nodes: Nodes, tmp_path: Path) -> None:
    """Forced onto loopback (--interface lo), the agents on nodeB cannot connect: each says so
    (rank, host, error) in RUN_DIR/agents, the coordinator prints the capacity lost, and the run
    finishes on nodeA's agents."""
    run_dir = tmp_path / "run"
    env = {**hydra_env(nodes, tmp_path, "nodeA:2,nodeB:2"), "WHERE_TRIALS": "6", "WHERE_SLEEP": "1", **LOOPBACK_TCP}
    proc = nodes.run("nodeA", f"python -m hpwf run {WHERE} --backend mpirun --workers 4 --interface lo "
                              f"--run-dir {run_dir} --quiet", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 of 4 agents never connected: rank 2 on nodeB: ConnectionRefusedError" in proc.stderr
    assert "rank 3 on nodeB: ConnectionRefusedError" in proc.stderr
    assert "the run goes on with 2 of 4 agents" in proc.stderr
    reports = sorted(p.name for p in (run_dir / "agents").glob("unreachable-*"))
    assert reports == ["unreachable-nodeB-rank-2.txt", "unreachable-nodeB-rank-3.txt"]
    assert len(complete(run_dir)) == 6 and set(hosts_of_trials(run_dir).values()) == {"nodeA"}


def test_mpi_ranks_that_cannot_connect_are_reported(nodes: Nodes, tmp_path: Path) -> None:
    """--backend mpi forced onto loopback: nodeB's ranks report and leave without ending the MPI
    job; the run finishes on nodeA's two worker ranks."""
    run_dir = tmp_path / "run"
    proc = nodes.run("nodeA", nodes.mpirun("nodeA:3,nodeB:2", 5, f"python -m hpwf run {WHERE} --backend mpi "
                                                                  f"--interface lo --run-dir {run_dir} --quiet"),
                     env={"WHERE_TRIALS": "4", **LOOPBACK_TCP})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("2 of 4 agents never connected: rank 3 on nodeB: ConnectionRefusedError: [Errno 111] Connection refused"
            in proc.stderr), proc.stderr[-3000:]
    assert "rank 4 on nodeB: ConnectionRefusedError" in proc.stderr
    assert len(complete(run_dir)) == 4 and set(hosts_of_trials(run_dir).values()) == {"nodeA"}


def test_an_unknown_interface_is_refused(nodes: Nodes, tmp_path: Path) -> None:
    proc = nodes.run("nodeA", f"python -m hpwf run {WHERE} --backend mpirun --workers 2 --interface eth9 "
                              f"--run-dir {tmp_path / 'run'}", env=hydra_env(nodes, tmp_path, "nodeA,nodeB"))
    assert proc.returncode == 2
    assert "--interface eth9: no such interface with an IPv4 address on nodeA (it has: eth0, lo)" in proc.stderr
    assert not (tmp_path / "run").exists()


def start_dask(nodes: Nodes, tmp_path: Path, workers: dict[str, int]) -> str:
    """A scheduler on nodeA, ``workers[node]`` single-threaded workers on each node; its address."""
    scheduler_file = tmp_path / "scheduler.json"
    log = tmp_path / "scheduler.log"
    nodes.start("nodeA", f"dask scheduler --host {nodes.address['nodeA']} --port 0 --no-dashboard "
                         f"--scheduler-file {scheduler_file}", log)
    deadline = time.time() + 120
    while not scheduler_file.exists():
        assert time.time() < deadline, log.read_text()[-2000:]
        time.sleep(0.5)
    address = json.loads(scheduler_file.read_text())["address"]
    for node, count in workers.items():
        nodes.start(node, f"dask worker {address} --nworkers {count} --nthreads 1 --no-dashboard",
                    tmp_path / f"worker-{node}.log")
    want = sum(workers.values())
    while log.read_text().count("Register worker") < want:
        assert time.time() < deadline, log.read_text()[-2000:]
        time.sleep(0.5)
    return str(address)


def test_dask_scheduler_on_one_node_workers_on_another(nodes: Nodes, tmp_path: Path) -> None:
    address = start_dask(nodes, tmp_path, {"nodeB": 2})
    run_dir = tmp_path / "run"
    try:
        proc = nodes.run("nodeA", f"python -m hpwf run {WHERE} --backend dask --scheduler {address} "
                                  f"--run-dir {run_dir} --quiet", env={"WHERE_TRIALS": "6"})
    finally:
        nodes.stop_daemons()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert address.startswith("tcp://10.77.0.1:")
    assert len(complete(run_dir)) == 6
    assert set(hosts_of_trials(run_dir).values()) == {"nodeB"}
    assert json.loads((run_dir / "summary.json").read_text())["agents_seen"] == 2


def test_a_launched_group_under_dask_takes_all_its_agents_from_one_host(nodes: Nodes, tmp_path: Path) -> None:
    """Defect 12 on real Dask workers: one worker on nodeB, three on nodeC, trials of two ranks.
    While one group runs on nodeC, one agent is free on each node; a launched group's ``mpirun
    -np 2`` runs where its first agent is, so a group of those two would put both ranks on nodeB
    (one slot) and leave nodeC's agent reserved and idle. Every trial runs both ranks on nodeC."""
    address = start_dask(nodes, tmp_path, {"nodeB": 1, "nodeC": 3})
    run_dir = tmp_path / "run"
    try:
        proc = nodes.run("nodeA", f"python -m hpwf run {WHERE} --backend dask --scheduler {address} "
                                  f"--run-dir {run_dir} --quiet", env={"WHERE_TRIALS": "4", "WHERE_RANKS": "2", "WHERE_SLEEP": "3"})
    finally:
        nodes.stop_daemons()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(complete(run_dir)) == 4
    for folder in trial_folders(run_dir):
        hosts = sorted(p.read_text() for p in folder.glob("host*.txt"))
        assert hosts == ["nodeC", "nodeC"], f"{folder.name}: {hosts}"


def test_dask_workers_that_cannot_reach_the_coordinator_stop_the_run_with_a_reason(nodes: Nodes,
                                                                                  tmp_path: Path) -> None:
    address = start_dask(nodes, tmp_path, {"nodeB": 2})
    run_dir = tmp_path / "run"
    try:
        proc = nodes.run("nodeA", f"python -m hpwf run {WHERE} --backend dask --scheduler {address} "
                                  f"--interface lo --run-dir {run_dir} --quiet", env={"WHERE_TRIALS": "2", **LOOPBACK_TCP})
    finally:
        nodes.stop_daemons()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "2 of 2 agents never connected: dask-0 on nodeB: ConnectionRefusedError" in proc.stderr
    assert "hpwf: run stopped: backend failed: no agent could reach the coordinator" in proc.stderr


def test_dask_mpi_across_nodes(nodes: Nodes, tmp_path: Path) -> None:
    """mpirun -hosts nodeA:2,nodeB:3: the scheduler (rank 0) and coordinator (rank 1) on nodeA,
    three workers on nodeB."""
    run_dir = tmp_path / "run"
    proc = nodes.run("nodeA", nodes.mpirun("nodeA:2,nodeB:3", 5, f"python -m hpwf run {WHERE} --backend dask-mpi "
                                                                  f"--run-dir {run_dir} --quiet"),
                     env={"WHERE_TRIALS": "6"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(complete(run_dir)) == 6
    assert set(hosts_of_trials(run_dir).values()) == {"nodeB"}
    assert json.loads((run_dir / "summary.json").read_text())["agents_seen"] == 3


LOSS_ENV = {"WHERE_TRIALS": "6", "WHERE_SLEEP": "2", "WHERE_RETRIES": "1", "WHERE_HEARTBEAT": "2"}


def run_and_lose(nodes: Nodes, command: str, env: dict[str, str], run_dir: Path, victim: str) -> tuple[int, str]:
    """Run ``command`` on nodeA; kill every process of ``victim`` once a trial runs there."""
    coordinator = subprocess.Popen(nodes._argv("nodeA", command, env), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not ((run_dir / "trials").exists() and victim in hosts_of_trials(run_dir).values()):
            assert time.time() < deadline and coordinator.poll() is None, f"no trial ever ran on {victim}"
            time.sleep(0.2)
        nodes.lose(victim)
        _, stderr = coordinator.communicate(timeout=240)
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.communicate()
        nodes.revive(victim)
    return coordinator.returncode, stderr


def assert_failed_trials_ran_again(run_dir: Path, budget: int, survivors: set[str]) -> list:  # type: ignore[type-arg]
    """Exactly ``budget`` trials complete; every failed one ran again once on a survivor, with its
    parameters if it had drawn any (a trial lost before its first ``suggest_*`` has none to carry:
    its retry draws fresh ones)."""
    study = hpwf.load_study(run_dir)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(done) == budget, [(t.number, t.state) for t in study.trials]
    assert failed and all("died mid-trial" in t.user_attrs["fail_reason"] for t in failed)
    hosts = hosts_of_trials(run_dir)
    for t in failed:
        again = [d for d in done if d.user_attrs.get("hpwf:retry_of") == t.number]
        assert len(again) == 1 and hosts[again[0].number] in survivors, (t.number, t.params, again)
        assert again[0].params == t.params if t.params else again[0].params.keys() == {"x"}, (t.params, again[0].params)
    assert all(t.state != TrialState.RUNNING for t in study.trials)
    return failed


def test_a_node_lost_under_the_mpirun_backend_the_job_restarts_on_the_others(nodes: Nodes, tmp_path: Path) -> None:
    """nodeC dies: MPICH ends the whole job of agents, so every running trial fails; hpwf finds
    that nodeC no longer answers and starts the job again on nodeA's slots; the failed trials run
    again and the budget is met exactly."""
    run_dir = tmp_path / "run"
    env = {**hydra_env(nodes, tmp_path, "nodeA:2,nodeC:2"), **LOSS_ENV}
    code, stderr = run_and_lose(nodes, f"python -m hpwf run {WHERE} --backend mpirun --workers 4 "
                                       f"--run-dir {run_dir} --quiet", env, run_dir, "nodeC")
    assert code == 0, stderr[-3000:]
    assert "nodeC no longer answers: the job starts on the other hosts with 2 of 4 ranks" in stderr
    failed = assert_failed_trials_ran_again(run_dir, 6, {"nodeA"})
    assert any("host nodeC" in t.user_attrs["fail_reason"] for t in failed)


def test_a_node_lost_under_the_mpi_backend_ends_the_job_and_resume_finishes(nodes: Nodes, tmp_path: Path) -> None:
    """Under ``mpirun ... --backend mpi`` the coordinator is rank 0 of the job that loses nodeC:
    the job ends (no hang); `resume` on the nodes left finishes the budget exactly, re-running
    the trials that were interrupted."""
    run_dir = tmp_path / "run"
    code, _ = run_and_lose(nodes, nodes.mpirun("nodeA:3,nodeC:2", 5, f"python -m hpwf run {WHERE} --backend mpi "
                                                                     f"--run-dir {run_dir} --quiet"),
                           LOSS_ENV, run_dir, "nodeC")
    assert code != 0
    proc = nodes.run("nodeA", nodes.mpirun("nodeA:3", 3, f"python -m hpwf resume {run_dir} --quiet"), env=LOSS_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = hpwf.load_study(run_dir)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 6
    assert all(t.state != TrialState.RUNNING for t in study.trials)
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    finished = [d.params for d in study.trials if d.state == TrialState.COMPLETE]
    # a re-run may itself be re-run; a trial stopped before it drew a parameter has none to keep
    assert interrupted and all(t.params in finished or not t.params for t in interrupted)


def test_a_node_lost_mid_run_its_trials_fail_and_run_again(nodes: Nodes, tmp_path: Path) -> None:
    """Dask workers on nodeB and nodeC; every process of nodeC is killed while it runs trials:
    those trials fail (their agents died), run again on nodeB with the same parameters, and the
    budget is met exactly."""
    address = start_dask(nodes, tmp_path, {"nodeB": 2, "nodeC": 2})
    run_dir = tmp_path / "run"
    try:
        code, stderr = run_and_lose(nodes, f"python -m hpwf run {WHERE} --backend dask --scheduler {address} "
                                           f"--run-dir {run_dir} --quiet", LOSS_ENV, run_dir, "nodeC")
    finally:
        nodes.stop_daemons()
    assert code == 0, stderr[-3000:]
    failed = assert_failed_trials_ran_again(run_dir, 6, {"nodeB"})
    assert all("host nodeC" in t.user_attrs["fail_reason"] for t in failed)


def test_a_trial_timeout_under_mpirun_across_two_nodes_never_ends_the_job(nodes: Nodes, tmp_path: Path) -> None:
    """Issue 20, reproduction 1 across nodes (ranks on nodeA and nodeB): trial 0 sleeps past its
    trial_timeout; no rank is ended, so the job exits 0 with the budget met exactly."""
    run_dir = tmp_path / "run"
    proc = nodes.run("nodeA", nodes.mpirun("nodeA:2,nodeB:1", 3, "python -m hpwf run tests/workflows/slow_first.py "
                                                                 f"--backend mpi --run-dir {run_dir} --quiet"),
                     env={"SLOW_TRIALS": "20", "SLOW_S": "8"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = hpwf.load_study(run_dir)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 20 and TrialState.RUNNING not in states
    assert "trial_timeout" in study.trials[0].user_attrs["fail_reason"]
