"""The hub on its own: whatever a client does, the next agent with the key still gets in.

Every attack is followed by a real agent (`connect` with the right key) that must be accepted
within a generous limit; it runs in a thread so that a hub that hangs fails the test instead of
hanging it.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from multiprocessing import AuthenticationError
from pathlib import Path
from typing import Any, Iterator

import pytest

from hpwf.wire._channel import Hub
from hpwf.wire._handshake import connect

AGENT_LIMIT_S = 60.0  # far above the hub's handshake timeout: a busy machine must not fail these


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub("127.0.0.1")
    yield hub
    hub.close()


def raw(address: Any) -> socket.socket:
    """A plain socket connected to the hub, speaking no protocol at all."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(address)
    return sock


def agent_within(hub: Hub, seconds: float = AGENT_LIMIT_S, key: bytes | None = None) -> Any:
    """Connect as an agent in a thread; its Connection (once the hub handed it over), its error,
    or None if it is still waiting after ``seconds``."""
    box: dict[str, Any] = {}

    def go() -> None:
        try:
            box["conn"] = connect(hub.address, hub.authkey if key is None else key)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            box["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(seconds)
    if "conn" not in box:
        return box.get("error")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        taken = hub.take_new()
        if taken:
            taken[0].send("welcome")
            assert box["conn"].recv() == "welcome"
            taken[0].close()
            return box["conn"]
        time.sleep(0.05)
    return None


def assert_agent_gets_in(hub: Hub) -> None:
    result = agent_within(hub)
    assert result is not None and not isinstance(result, BaseException), \
        f"an agent with the right key was not accepted within {AGENT_LIMIT_S:g} s: {result!r}"
    result.close()


def test_a_wrong_key_is_refused_and_the_hub_goes_on(hub: Hub) -> None:
    with pytest.raises(AuthenticationError):
        connect(hub.address, b"not the key")
    assert_agent_gets_in(hub)


def test_a_silent_connection_does_not_block_the_hub(hub: Hub) -> None:
    silent = raw(hub.address)
    try:
        assert_agent_gets_in(hub)
    finally:
        silent.close()


def test_random_bytes_do_not_stop_the_hub(hub: Hub) -> None:
    for garbage in (os.urandom(4096), struct.pack("!i", 32) + os.urandom(32), os.urandom(64)):
        sock = raw(hub.address)
        try:
            sock.sendall(garbage)
            time.sleep(0.2)
        except OSError:
            pass  # the hub may hang up while we write: that is a refusal too
        finally:
            sock.close()
    assert_agent_gets_in(hub)
    assert hub.take_new() == []  # none of the garbage became an agent


def test_two_hundred_connections_in_a_row(hub: Hub) -> None:
    held = []
    for _ in range(200):
        try:
            held.append(raw(hub.address))
        except OSError:
            pass  # a full backlog refuses: fine, the point is what comes after
    try:
        assert_agent_gets_in(hub)
        assert hub.take_new() == []
    finally:
        for sock in held:
            sock.close()


STALLED_HUB = """import sys
from hpwf.wire import Hub
hub = Hub("127.0.0.1", unix=False)
print(hub.address[1], hub.authkey.hex(), flush=True)
sys.stdin.read()
"""


def test_a_stalled_hub_still_queues_an_agent_behind_three_hundred_connections() -> None:
    """While the hub's process does not run (stopped here, descheduled on a loaded machine),
    300 silent connections wait to be accepted, more than a listen queue of 256 holds. The
    kernel still completes the next agent's TCP handshake at its first SYN: a full queue drops
    SYNs, and the agent's ``connect`` then waits out the kernel's retries (1, 3, 7 s, then its
    10 s attempt again), which under a flood of reconnecting connections (test_security_user2)
    kept an agent out past the backend's 30 s arrival wait. Once the hub runs again, it gets in."""
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen([sys.executable, "-c", STALLED_HUB], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": root})
    assert proc.stdout is not None and proc.stdin is not None
    port, key = proc.stdout.readline().split()
    address = ("127.0.0.1", int(port))
    held: list[socket.socket] = []
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        for _ in range(300):
            held.append(socket.socket())
            held[-1].setblocking(False)
            held[-1].bind(("127.0.0.2", 0))
            held[-1].connect_ex(address)
        held.append(socket.socket())
        held[-1].setblocking(False)
        held[-1].connect_ex(address)
        _, connected, _ = select.select([], held[-1:], [], 5)  # at once, or never while the hub is stopped
        assert connected and held[-1].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0, \
            "the kernel dropped the SYN: the hub's listen queue is full (net.core.somaxconn " \
            f"{Path('/proc/sys/net/core/somaxconn').read_text().strip()})"
        os.kill(proc.pid, signal.SIGCONT)
        connect(address, bytes.fromhex(key), timeout=AGENT_LIMIT_S).close()
    finally:
        for sock in held:
            sock.close()
        os.kill(proc.pid, signal.SIGCONT)
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_close_refuses_a_late_agent() -> None:
    hub = Hub("127.0.0.1")
    hub.close()
    with pytest.raises(OSError):
        raw(hub.address).close()
    result = agent_within(hub, seconds=10)
    assert result is None or isinstance(result, BaseException), "an agent was accepted after close()"


def test_close_refuses_a_late_agent_on_tcp() -> None:
    hub = Hub("127.0.0.1", unix=False)
    assert isinstance(hub.address, tuple)
    assert_agent_gets_in(hub)
    hub.close()
    with pytest.raises(OSError):
        raw(hub.address).close()


def test_a_late_agent_gives_up_within_its_timeout() -> None:
    hub = Hub("127.0.0.1")
    hub.close()
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="cannot reach the hpwf coordinator"):
        connect(hub.address, hub.authkey, timeout=2)
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("unix", [True, False])
def test_an_agent_gives_up_soon_once_nobody_listens(unix: bool) -> None:
    hub = Hub("127.0.0.1", unix=unix)
    hub.close()
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        connect(hub.address, hub.authkey)  # the default timeout is far longer
    assert time.monotonic() - start < 60


def test_agents_on_this_host_use_a_unix_socket_only_the_user_can_enter(hub: Hub) -> None:
    assert isinstance(hub.address, str), f"the hub listens on TCP {hub.address}, open to every local user"
    folder = Path(hub.address).parent
    info = folder.stat()
    assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(hub.address).st_mode)
    hub.close()
    assert not folder.exists()


INTRUDER = "hpwfintruder"


def intruder() -> str:
    """A second Unix user (created with useradd; needs root, as in CI)."""
    if os.geteuid() != 0:
        pytest.fail("NOT CHECKED: a second Unix user needs root to create (useradd); run the suite as root as CI does")
    if subprocess.run(["id", INTRUDER], capture_output=True).returncode != 0:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER],
                              capture_output=True, text=True)
        assert made.returncode == 0 or "already exists" in made.stderr, f"useradd failed: {made.stderr}"
    return INTRUDER


def test_a_second_user_cannot_reach_the_hub(hub: Hub) -> None:
    user = intruder()
    probe = (
        "import socket, sys\n"
        "address = eval(sys.argv[1])\n"
        "family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET\n"
        "try:\n"
        "    socket.socket(family).connect(address)\n"
        "except OSError as exc:\n"
        "    print('refused', type(exc).__name__)\n"
        "else:\n"
        "    print('connected')\n"
    )
    python = shutil.which("python3", path="/usr/bin:/bin")  # the venv's may live under /root (0700)
    assert python, "no system python3 for the second user to run"
    out = subprocess.run([python, "-I", "-c", probe, repr(hub.address)], user=user,
                         capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused PermissionError"), f"{user} could open a connection to the hub: {out.stdout}"


def test_the_wake_fd_turns_readable_when_an_agent_is_accepted(hub: Hub) -> None:
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(hub.wake_fd, selectors.EVENT_READ)
        assert selector.select(0) == []
        conn = connect(hub.address, hub.authkey)
        assert selector.select(AGENT_LIMIT_S), "no wake-up for a new agent"
        hub.clear_wake()
        assert selector.select(0) == [] and len(hub.take_new()) == 1
        conn.close()
    hub.close()
    hub.clear_wake()  # harmless once closed
