"""Where the coordinator listens for agents: loopback on one host, else the interface that reaches the others.

Agents on other hosts need an address of this host that they can reach. The choice, first match:

1. an interface named by ``--interface NAME`` or ``HPWF_INTERFACE``;
2. loopback, when every agent runs on this host;
3. the interface the MPI library is told to use (``HYDRA_IFACE``, ``FI_TCP_IFACE``,
   ``OMPI_MCA_btl_tcp_if_include``), when it exists here;
4. this host's address on the route to the first other host of the job.

``HPWF_ADVERTISE`` overrides the name agents are given (e.g. a name behind NAT); the hub then
listens on every interface unless one was named.

Example:
    >>> choose([]).listen
    '127.0.0.1'
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from hpwf.errors import ConfigError

INTERFACE_ENV = "HPWF_INTERFACE"
ADVERTISE_ENV = "HPWF_ADVERTISE"
# Interfaces an MPI stack was told to use: the one the job's own traffic takes.
MPI_INTERFACE_VARS = ("HYDRA_IFACE", "FI_TCP_IFACE", "OMPI_MCA_btl_tcp_if_include")
LOOPBACK = "127.0.0.1"
_SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address


@dataclass(frozen=True)
class Endpoint:
    """Where the hub listens, the host agents are told to connect to, and why."""

    listen: str
    advertise: str
    why: str


def choose(hosts: Sequence[str], interface: str | None = None, env: Mapping[str, str] | None = None) -> Endpoint:
    """The endpoint for agents running on ``hosts`` (names or addresses; empty: this host only).

    Raises:
        ConfigError: the named interface does not exist here or has no IPv4 address.
    """
    env = os.environ if env is None else env
    named = interface or env.get(INTERFACE_ENV)
    advertise = env.get(ADVERTISE_ENV)
    if named:
        address = address_of(named)
        return Endpoint(address, advertise or address, f"interface {named} (named)")
    if advertise:
        return Endpoint("0.0.0.0", advertise, f"{ADVERTISE_ENV}={advertise}")
    remote = [h for h in dict.fromkeys(hosts) if not is_this_host(h)]
    if not remote:
        return Endpoint(LOOPBACK, LOOPBACK, "every agent runs on this host")
    here = interface_addresses()
    for var in MPI_INTERFACE_VARS:
        name = (env.get(var) or "").split(",")[0].strip()
        if name in here:
            return Endpoint(here[name], here[name], f"interface {name} ({var})")
    routed = route_to(remote[0])
    if routed and not routed.startswith("127."):
        return Endpoint(routed, routed, f"the route to {remote[0]}")
    name = socket.gethostname()
    return Endpoint("0.0.0.0", name, f"no route to {remote[0]} found; every interface, as {name}")


def interface_addresses() -> dict[str, str]:
    """This host's interfaces and their IPv4 addresses (Linux; empty elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not Linux
        return {}
    found: dict[str, str] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # down, or no IPv4 address
            found[name] = socket.inet_ntoa(raw[20:24])
    return found


def address_of(interface: str) -> str:
    """The IPv4 address of ``interface`` on this host.

    Raises:
        ConfigError: no such interface here, or it has no IPv4 address.
    """
    here = interface_addresses()
    if interface not in here:
        names = ", ".join(sorted(here)) or "none found"
        raise ConfigError(f"--interface {interface}: no such interface with an IPv4 address on "
                          f"{socket.gethostname()} (it has: {names})")
    return here[interface]


def route_to(host: str) -> str | None:
    """This host's address on the route to ``host`` (no packet is sent), or ``None``."""
    try:
        target = socket.gethostbyname(host)
    except OSError:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((target, 9))  # a UDP "connect" only picks the route
            return str(s.getsockname()[0])
        except OSError:
            return None


def is_this_host(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine."""
    if host in ("localhost", "", socket.gethostname(), socket.gethostname().split(".")[0]):
        return True
    try:
        address = socket.gethostbyname(host)
    except OSError:
        return False
    return ipaddress.ip_address(address).is_loopback or address in interface_addresses().values()


def job_hosts(launcher: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The hosts an ``mpirun`` command line will start ranks on, as far as it says.

    Read from the command's ``-hosts/-host/--host`` and ``-f/-hostfile/--hostfile/-machinefile``,
    then MPICH's ``HYDRA_HOST_FILE``, then the batch system's node list (``SLURM_JOB_NODELIST``,
    ``PBS_NODEFILE``). Empty when nothing names hosts (the ranks then run here).

    Example:
        >>> job_hosts(["mpirun", "-hosts", "n1:2,n2"], env={})
        ['n1', 'n2']
    """
    env = os.environ if env is None else env
    slots = job_slots(launcher, env)
    if slots:
        return [host for host, _ in slots]
    if env.get("SLURM_JOB_NODELIST"):
        return expand_nodelist(env["SLURM_JOB_NODELIST"])
    if env.get("PBS_NODEFILE"):
        return [host for host, _ in read_host_file(Path(env["PBS_NODEFILE"]))]
    return []


HOSTS_FLAGS = ("-hosts", "-host", "--host", "-H")
HOSTFILE_FLAGS = ("-f", "-hostfile", "--hostfile", "-machinefile", "--machinefile")


def job_slots(launcher: Sequence[str], env: Mapping[str, str] | None = None) -> list[tuple[str, int]]:
    """Hosts and their slots named by an ``mpirun`` command line or ``HYDRA_HOST_FILE`` (a host
    without a count has 1 slot); empty when neither names hosts.

    Example:
        >>> job_slots(["mpirun", "-hosts", "n1:2,n2"], env={})
        [('n1', 2), ('n2', 1)]
    """
    env = os.environ if env is None else env
    args = list(launcher)
    for i, arg in enumerate(args[:-1]):
        if arg in HOSTS_FLAGS:
            return _merge(_host_slots(h) for h in args[i + 1].split(",") if h)
        if arg in HOSTFILE_FLAGS:
            return read_host_file(Path(args[i + 1]))
    if env.get("HYDRA_HOST_FILE"):
        return read_host_file(Path(env["HYDRA_HOST_FILE"]))
    return []


def read_host_file(path: Path) -> list[tuple[str, int]]:
    """Hosts and slots of an MPICH (``host[:n]``), Open MPI (``host slots=n``) or PBS host file
    (a host on several lines has their slots added up).

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"host file {path}: {exc.strerror or exc}") from None
    entries = []
    for line in lines:
        words = shlex.split(line.split("#")[0])
        if not words:
            continue
        host, slots = _host_slots(words[0])
        for word in words[1:]:
            if word.startswith("slots=") and word[6:].isdigit():
                slots = int(word[6:])
        entries.append((host, slots))
    return _merge(entries)


def _host_slots(item: str) -> tuple[str, int]:
    host, _, count = item.partition(":")
    return host, int(count) if count.isdigit() else 1


def _merge(entries: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    merged: dict[str, int] = {}
    for host, slots in entries:
        merged[host] = merged.get(host, 0) + slots
    return list(merged.items())


def expand_nodelist(nodelist: str) -> list[str]:
    """Slurm's compressed node list: ``node[01-03,7],gpu1`` -> node01, node02, node03, node7, gpu1.

    Example:
        >>> expand_nodelist("n[1-2],x")
        ['n1', 'n2', 'x']
    """
    hosts: list[str] = []
    depth, start = 0, 0
    for i, c in enumerate(nodelist + ","):
        depth += (c == "[") - (c == "]")
        if c == "," and depth == 0:
            hosts.extend(_expand_one(nodelist[start:i]))
            start = i + 1
    return [h for h in hosts if h]


def _expand_one(item: str) -> list[str]:
    if "[" not in item:
        return [item]
    prefix, rest = item.split("[", 1)
    ranges, suffix = rest.split("]", 1)
    names: list[str] = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        width = len(low)
        for n in range(int(low), int(high or low) + 1):
            names.extend(prefix + str(n).zfill(width) + tail for tail in _expand_one(suffix))
    return names
