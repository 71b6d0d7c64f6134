"""Choosing where the hub listens (hpwf/_netif.py) and the unreachable-agent reports (hpwf/_reach.py).

Fast unit tests on this host; the same code meets real other hosts in tests/test_multinode.py.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hpwf.wire import _netif
from hpwf.wire._netif import choose, expand_nodelist, job_hosts, job_slots, read_host_file
from hpwf.wire._reach import Unreachable, connect_or_report, fresh_report_dir, read_reports, write_report
from hpwf.errors import ConfigError


def test_agents_on_this_host_get_loopback() -> None:
    endpoint = choose(["localhost", socket.gethostname(), "127.0.0.1"], env={})
    assert (endpoint.listen, endpoint.advertise) == ("127.0.0.1", "127.0.0.1")
    assert choose([], env={}).listen == "127.0.0.1"


def test_a_named_interface_wins_and_an_unknown_one_is_refused() -> None:
    assert choose(["elsewhere.invalid"], interface="lo", env={}).listen == "127.0.0.1"
    assert choose([], env={"HPWF_INTERFACE": "lo"}).why == "interface lo (named)"
    with pytest.raises(ConfigError, match=r"--interface nope0: no such interface .* \(it has: .*lo"):
        choose([], interface="nope0", env={})


def test_the_mpi_stacks_interface_is_used_for_other_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_netif, "interface_addresses", lambda: {"lo": "127.0.0.1", "ib0": "10.9.0.4"})
    monkeypatch.setattr(_netif, "is_this_host", lambda host: False)
    endpoint = choose(["cn02"], env={"HYDRA_IFACE": "ib0"})
    assert (endpoint.listen, endpoint.advertise) == ("10.9.0.4", "10.9.0.4")
    assert endpoint.why == "interface ib0 (HYDRA_IFACE)"


def test_other_hosts_get_the_address_on_the_route_to_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_netif, "is_this_host", lambda host: host == "me")
    monkeypatch.setattr(_netif, "route_to", lambda host: {"cn02": "10.1.0.7"}.get(host))
    endpoint = choose(["me", "cn02", "cn03"], env={})
    assert (endpoint.listen, endpoint.advertise, endpoint.why) == ("10.1.0.7", "10.1.0.7", "the route to cn02")
    unresolvable = choose(["me", "cn09"], env={})  # no route known: every interface, by host name
    assert (unresolvable.listen, unresolvable.advertise) == ("0.0.0.0", socket.gethostname())


def test_advertise_overrides_the_name_agents_are_given() -> None:
    endpoint = choose(["cn02"], env={"HPWF_ADVERTISE": "gateway.example"})
    assert (endpoint.listen, endpoint.advertise) == ("0.0.0.0", "gateway.example")


def test_loopback_is_among_this_hosts_interfaces() -> None:
    assert _netif.interface_addresses()["lo"] == "127.0.0.1"
    assert _netif.is_this_host("127.0.0.1") and _netif.is_this_host(socket.gethostname())


def test_hosts_of_an_mpirun_command_line(tmp_path: Path) -> None:
    hydra = tmp_path / "hydra"
    hydra.write_text("# the job's nodes\nnodeA:2\nnodeB:2  # two each\n\nnodeA\n")
    ompi = tmp_path / "ompi"
    ompi.write_text("cn01 slots=4\ncn02 slots=4 max_slots=8\n")
    assert read_host_file(hydra) == [("nodeA", 3), ("nodeB", 2)]
    assert read_host_file(ompi) == [("cn01", 4), ("cn02", 4)]
    assert job_slots(["mpirun", "-hosts", "a:2,b,a"], env={}) == [("a", 3), ("b", 1)]
    assert job_hosts(["mpirun", "-f", str(hydra)], env={}) == ["nodeA", "nodeB"]
    assert job_hosts(["mpirun", "--hostfile", str(ompi)], env={}) == ["cn01", "cn02"]
    assert job_hosts(["mpirun", "-hosts", "a:2,b"], env={"HYDRA_HOST_FILE": str(ompi)}) == ["a", "b"]
    assert job_hosts(["mpirun"], env={"HYDRA_HOST_FILE": str(hydra)}) == ["nodeA", "nodeB"]
    assert job_hosts(["mpirun"], env={"SLURM_JOB_NODELIST": "cn[01-02]"}) == ["cn01", "cn02"]
    assert job_hosts(["mpirun"], env={}) == []
    with pytest.raises(ConfigError, match="host file .*missing"):
        read_host_file(tmp_path / "missing")


@pytest.mark.parametrize("nodelist, hosts", [
    ("cn01", ["cn01"]),
    ("cn[01-03,07]", ["cn01", "cn02", "cn03", "cn07"]),
    ("gpu[1-2],login1,cn[9-10]", ["gpu1", "gpu2", "login1", "cn9", "cn10"]),
    ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
])
def test_slurm_node_lists(nodelist: str, hosts: list[str]) -> None:
    assert expand_nodelist(nodelist) == hosts


def test_an_agent_that_cannot_connect_reports_once_and_the_capacity_lost_is_told(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reports = fresh_report_dir(tmp_path)
    watch = Unreachable(reports, slots=4)
    assert watch.check() is None and not watch.all_lost
    assert connect_or_report(("127.0.0.1", port), b"k" * 16, "rank-2", 2, reports) is None
    message = watch.check()
    host = socket.gethostname()
    assert message == (f"1 of 4 agents never connected: rank 2 on {host}: ConnectionRefusedError: "
                       f"[Errno 111] Connection refused (coordinator at 127.0.0.1:{port})")
    assert watch.check() is None  # told once
    write_report(reports, "dask-0", None, TimeoutError("timed out"), ("10.0.0.1", 7))
    assert watch.check() == (f"2 of 4 agents never connected: dask-0 on {host}: TimeoutError: timed out "
                             f"(coordinator at 10.0.0.1:7); rank 2 on {host}: ConnectionRefusedError: "
                             f"[Errno 111] Connection refused (coordinator at 127.0.0.1:{port})")
    assert [r.name for r in read_reports(reports)] == ["dask-0", "rank-2"]
    assert fresh_report_dir(tmp_path) == reports and read_reports(reports) == []  # a new session starts clean


def test_a_job_restarts_without_the_hosts_that_no_longer_answer(tmp_path: Path) -> None:
    """`hpwf.backends._relaunch`: probe every host with the job's own launcher, keep the others
    with the ranks Hydra had placed there (the live run is in tests/test_multinode.py)."""
    from hpwf.backends._relaunch import ranks_per_host, shrink, without_hosts

    fake = tmp_path / "mpirun"  # answers for every host but "dead"
    fake.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -hosts ] && [ "$2" = dead ] && exit 255; shift; done\n')
    fake.chmod(0o755)
    launcher = [str(fake), "-launcher", "ssh", "-hosts", "a:2,dead:2,b"]
    assert without_hosts(launcher) == [str(fake), "-launcher", "ssh"]
    assert ranks_per_host([("a", 2), ("dead", 2), ("b", 1)], 7) == {"a": 4, "dead": 2, "b": 1}
    shrunk = shrink(launcher, 5, env={})
    assert shrunk is not None and (shrunk.args, shrunk.ranks, shrunk.lost) == (["-hosts", "a:2,b:1"], 3, ["dead"])
    assert shrink([str(fake), "-hosts", "a,b"], 2, env={}) is None  # every host answers
    assert shrink([str(fake)], 2, env={}) is None  # no host list: nothing to leave out
