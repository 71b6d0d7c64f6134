"""A second user on the node, round two (issue 21): the attacks another local user (made with
``useradd``; the tests run as root, as CI does, or fail saying so) tried against a victim's runs.

1. Code planted in the working directory never runs: not in the agents of ``hpwf run`` (local,
   ``--backend mpirun``), not in ``mpirun -np 3 python -P -m hpwf``; ``python -m hpwf`` leaves
   the working directory off its import path, and refuses to run when hpwf itself came from a
   working directory others can write. (The submitted job: tests/test_slurm.py.)
2. ``hpwf dashboard`` answers only its owner (a token in the URL, kept in a 0600 file), and is
   read only unless ``--writable``.
3. A run directory in a folder another user can write is refused (exit 2, one line), so her
   inotify swap of the run directory (or of a ``pause.pt`` inside it) finds nothing to swap; a
   checkpoint that is not ours, or a link, is never loaded. A live run directory swapped anyway
   (its folder made writable after the check) gets none of the run's writes: every file is
   opened relative to the run directory's descriptor.
4. ``status``/``report``/``dashboard`` refuse a run directory (or ``run.json``) of someone else,
   and open a store named by ``run.json`` only inside the run directory; a deleted study or a
   bad store is one line.
5. Dask's scratch space is private: a ``dask-scratch-space`` made by another user is not used;
   on a ``dask worker`` hpwf did not start, in a folder of hers, the agents' trials get a
   private temporary folder, and the worker's log says its folder is not private.
6. A flood of silent handshakes against a TCP hub does not keep the agents out; known agents
   (expected hosts, addresses that proved the key) keep their handshake slots in a flood.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from hpwf.errors import ConfigError
from hpwf.rundir._perms import read_private
from tests.test_security_files import OtherUser, other_user  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "workflows" / "toy.py"
PYTHON = sys.executable
HPWF_COMMAND = str(Path(sys.executable).parent / "hpwf")  # the console script
MPIRUN = str(Path(sys.executable).parent / "mpirun")
FAST = {"TOY_EPOCHS": "2", "TOY_SLEEP": "0"}


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **FAST, **extra}


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpwf: error: "), done.stderr
    return lines[0]


def as_other(user: OtherUser, path: Path) -> None:
    """Give ``path`` (and what is under it) to the other user, as if she had made it."""
    for p in [path, *path.rglob("*")]:
        os.lchown(p, user.uid, user.gid)


# --- item 1: code from the working directory -----------------------------------------------------
PLANTED = '''import os, sys
open(os.path.join({folder!r}, "ran.%d" % os.getpid()), "w").write(" ".join(sys.argv))
'''


@pytest.fixture
def hostile_cwd(other_user: OtherUser) -> Iterator[Path]:
    """A folder of the other user's (everyone may write it), with an ``hpwf`` package and an
    ``optuna`` package of hers that leave a file ``ran.PID`` if they are ever imported."""
    folder = Path(tempfile.mkdtemp(prefix="hpwf-hostile-", dir="/tmp"))
    for package in ("hpwf", "optuna"):
        (folder / package).mkdir()
        (folder / package / "__init__.py").write_text(PLANTED.format(folder=str(folder)))
    as_other(other_user, folder)
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def planted_ran(folder: Path) -> list[str]:
    return [p.read_text() for p in folder.glob("ran.*")]


@pytest.fixture
def workflow_with_helper(tmp_path: Path) -> Path:
    """A workflow that imports a module beside it (the README promises that this works)."""
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "i21_helper.py").write_text("def shift(x):\n    return (x - 2) ** 2\n")
    (folder / "flow.py").write_text(textwrap.dedent("""\
        import hpwf
        from i21_helper import shift

        search = hpwf.Search(direction="minimize", n_trials=4, seed=3)

        def objective(trial):
            return shift(trial.suggest_float("x", -10, 10))
        """))
    return folder / "flow.py"


@pytest.mark.parametrize("backend", ["local", "mpirun"])
def test_the_hpwf_command_and_its_agents_ignore_code_planted_in_the_working_directory(
        hostile_cwd: Path, workflow_with_helper: Path, tmp_path: Path, backend: str) -> None:
    """Local agents (``python -P -m hpwf.worker._agent``) and the ``mpirun`` backend's ranks
    (``python -P -m hpwf.backends.mpi``), started from her folder."""
    run_dir = tmp_path / "run"
    done = subprocess.run([HPWF_COMMAND, "run", str(workflow_with_helper), "--run-dir", str(run_dir),
                           "--backend", backend, "--workers", "2", "--quiet"], cwd=hostile_cwd, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert planted_ran(hostile_cwd) == [], "code planted in the working directory ran as the user"
    assert json.loads((run_dir / "summary.json").read_text())["complete"] == 4  # the helper beside it imported


def test_mpirun_python_P_m_hpwf_ignores_code_planted_in_the_working_directory(
        hostile_cwd: Path, workflow_with_helper: Path, tmp_path: Path) -> None:
    """The README's command, ``mpirun -np 3 python -P -m hpwf run ... --backend mpi``."""
    run_dir = tmp_path / "run"
    done = subprocess.run([MPIRUN, "-np", "3", PYTHON, "-P", "-m", "hpwf", "run", str(workflow_with_helper),
                           "--run-dir", str(run_dir), "--backend", "mpi", "--quiet"], cwd=hostile_cwd, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert planted_ran(hostile_cwd) == []
    assert json.loads((run_dir / "summary.json").read_text())["complete"] == 4


def test_python_m_hpwf_leaves_the_working_directory_off_its_import_path(
        hostile_cwd: Path, workflow_with_helper: Path, tmp_path: Path) -> None:
    """Without ``-P``, only her ``hpwf`` package would still run first (Python imports it before
    hpwf can do anything); her ``optuna`` (imported later) does not, in any rank."""
    shutil.rmtree(hostile_cwd / "hpwf")
    run_dir = tmp_path / "run"
    done = subprocess.run([MPIRUN, "-np", "3", PYTHON, "-m", "hpwf", "run", str(workflow_with_helper),
                           "--run-dir", str(run_dir), "--backend", "mpi", "--quiet"], cwd=hostile_cwd, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert planted_ran(hostile_cwd) == []
    assert json.loads((run_dir / "summary.json").read_text())["complete"] == 4


def test_python_m_hpwf_refuses_to_run_from_a_source_tree_others_can_write(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "hpwf").symlink_to(ROOT / "hpwf")
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for mode, refused in ((0o755, False), (0o775, True), (0o777, True)):
        checkout.chmod(mode)
        done = subprocess.run([PYTHON, "-m", "hpwf", "--version"], cwd=checkout, env=clean, capture_output=True,
                              text=True, timeout=60)
        if refused:
            line = one_error_line(done)
            assert f"{checkout}: hpwf was imported from the working directory" in line and "python -P" in line
        else:
            assert done.returncode == 0, done.stderr


# --- item 2: the dashboard -------------------------------------------------------------------------
REQUEST = '''import sys, urllib.request, urllib.error
method, url, cookie = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""
request = urllib.request.Request(url, method=method, data=b"{}" if method != "GET" else None,
                                 headers={"Cookie": cookie, "Content-Type": "application/json"})
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
try:
    with urllib.request.build_opener(NoRedirect).open(request, timeout=20) as response:
        print(response.status, response.read()[:200])
except urllib.error.HTTPError as exc:
    print(exc.code, exc.headers.get("Set-Cookie", ""), exc.read()[:200])
'''


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("user2") / "run"
    done = subprocess.run([PYTHON, "-m", "hpwf", "run", str(TOY), "--run-dir", str(run_dir), "--workers", "1",
                           "--n-trials", "3", "--quiet"], env=env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return run_dir


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder of ours that anyone may read (pytest's are 0700): her scripts live here."""
    folder = Path(tempfile.mkdtemp(prefix="hpwf-public-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_dashboard_answers_its_owner_only_and_reads_only(finished_run: Path, other_user: OtherUser,
                                                            public_dir: Path) -> None:
    script = public_dir / "request.py"
    script.write_text(REQUEST)
    script.chmod(0o644)
    proc = subprocess.Popen([PYTHON, "-m", "hpwf", "dashboard", str(finished_run), "--port", "0"], env=env(),
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        base, token = line.split(" on ", 1)[1].split()[0].split("?token=")
        assert "read only" in line
        token_file = finished_run / "dashboard.token"
        assert token_file.read_text().strip() == token and stat.S_IMODE(token_file.stat().st_mode) == 0o600

        def her(method: str, path: str, cookie: str = "") -> str:
            done = other_user.run("/usr/bin/python3", "-I", str(script), method, base + path, cookie)
            assert done.returncode == 0, done.stderr
            return done.stdout

        def mine(method: str, path: str, cookie: str = f"hpwf_dashboard={token}") -> str:
            return subprocess.run(["/usr/bin/python3", "-I", str(script), method, base + path, cookie],
                                  capture_output=True, text=True, timeout=60).stdout

        # the other user: no page, no API, no CSV, no write, with no token or a guessed one
        for method, path in (("GET", ""), ("GET", "api/studies"), ("GET", "api/studies/0"), ("GET", "csv/0"),
                             ("POST", "api/trials/0/tell"), ("PUT", "api/trials/0/user-attrs"),
                             ("DELETE", "api/studies/0")):
            for cookie in ("", "hpwf_dashboard=guess"):
                assert her(method, path, cookie).startswith("403 "), (method, path, cookie)
        assert her("GET", "api/studies?token=guess").startswith("403 ")
        # the owner: the printed URL sets the cookie; then it reads, and never writes
        first = mine("GET", f"?token={token}", "")
        assert first.startswith("303 ") and f"hpwf_dashboard={token}" in first and "HttpOnly" in first
        studies = mine("GET", "api/studies")
        assert studies.startswith("200 ") and "toy" in studies
        assert mine("GET", "csv/0").startswith("200 ")
        for method, path in (("POST", "api/trials/0/tell"), ("DELETE", "api/studies/0"),
                             ("PATCH", "api/studies/0"), ("PUT", "api/trials/0/note")):
            assert mine(method, path).startswith("405 "), (method, path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    status = subprocess.run([PYTHON, "-m", "hpwf", "status", str(finished_run), "--json"], env=env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert json.loads(status.stdout)["complete"] + json.loads(status.stdout)["pruned"] == 3, status.stderr


# --- item 3: a run directory in a folder someone else can write -------------------------------------
SWAPPER = '''import ctypes, os, struct, sys, time
# Her inotify watch: as soon as NAME appears in PARENT, move it away and put a folder of hers there.
parent, name = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
IN_CREATE, IN_MOVED_TO = 0x100, 0x80
assert libc.inotify_add_watch(fd, parent.encode(), IN_CREATE | IN_MOVED_TO) >= 0
open(os.path.join(parent, ".watching"), "w").close()
deadline = time.time() + 60
while time.time() < deadline:
    data = os.read(fd, 4096)
    offset = 0
    while offset < len(data):
        wd, mask, cookie, size = struct.unpack_from("iIII", data, offset)
        entry = data[offset + 16: offset + 16 + size].rstrip(b"\\0").decode()
        offset += 16 + size
        if entry == name:
            target = os.path.join(parent, name)
            try:
                os.rename(target, target + ".theirs")
                os.mkdir(target, 0o777)
                os.chmod(target, 0o777)
                print("swapped", flush=True)
            except OSError as exc:
                print("could not swap:", exc, flush=True)
            sys.exit(0)
'''


def start_swapper(user: OtherUser, parent: Path, name: str) -> subprocess.Popen[str]:
    """Her inotify watch on ``parent`` for ``name``, running (as her) once this returns."""
    script = parent / "swap.py"
    script.write_text(SWAPPER)
    script.chmod(0o644)
    watcher = subprocess.Popen(["/usr/bin/python3", "-I", str(script), str(parent), name], user=user.uid,
                               group=user.gid, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={"PATH": "/usr/bin:/bin"})
    deadline = time.time() + 30
    while not (parent / ".watching").exists():
        assert watcher.poll() is None and time.time() < deadline, watcher.communicate()
        time.sleep(0.05)
    return watcher


@pytest.mark.parametrize("what", ["run directory", "pause.pt"])
def test_a_run_directory_in_a_folder_she_can_write_is_refused_before_she_can_swap_it(
        other_user: OtherUser, tmp_path: Path, what: str) -> None:
    parent = Path(tempfile.mkdtemp(prefix="hpwf-swap-", dir="/tmp"))
    try:
        parent.chmod(0o777)  # her folder, or one everyone may write (not sticky)
        as_other(other_user, parent)
        watcher = start_swapper(other_user, parent, "q" if what == "run directory" else "trials")
        if what == "run directory":
            command = ["run", str(TOY), "--run-dir", str(parent / "q"), "--workers", "1", "--n-trials", "3"]
        else:  # asha-resume pauses trials into RUN_DIR/trials/N/pause.pt; she waits for ``trials`` to swap
            command = ["run", str(ROOT / "tests" / "workflows" / "resume_check.py"), "--run-dir", str(parent),
                       "--workers", "1"]
        asha = {"RC_SCHED": "asha-resume", "RC_RANKS": "1", "RC_TRIALS": "6", "RC_INTERVAL": "2", "RC_EPOCHS": "6"}
        done = subprocess.run([PYTHON, "-m", "hpwf", *command, "--quiet"], env=env(**asha), cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        if what == "run directory":
            line = one_error_line(done)
            assert f"can write {parent}" in line and "swap the run directory" in line
            assert not (parent / "q").exists() and not (parent / "q.theirs").exists()
        else:  # an existing run directory she can write is refused as before (`resume` too)
            line = one_error_line(done)
            assert str(parent) in line
            assert not (parent / "trials").exists() and not (parent / "run.json").exists()
        assert watcher.poll() is None, "she found something to swap"
    finally:
        if "watcher" in locals() and watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        shutil.rmtree(parent, ignore_errors=True)


def test_a_run_directory_in_a_sticky_folder_like_tmp_is_fine_and_cannot_be_swapped(
        other_user: OtherUser) -> None:
    parent = Path(tempfile.mkdtemp(prefix="hpwf-sticky-", dir="/tmp"))
    try:
        parent.chmod(0o1777)  # root's, sticky: like /tmp
        watcher = start_swapper(other_user, parent, "q")
        done = subprocess.run([PYTHON, "-m", "hpwf", "run", str(TOY), "--run-dir", str(parent / "q"), "--workers",
                               "1", "--n-trials", "3", "--quiet"], env=env(), cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        out, _ = watcher.communicate(timeout=60)
        assert "could not swap" in out, out  # sticky: she may not move what is not hers
        assert done.returncode == 0, done.stderr
        assert (parent / "q").stat().st_uid == os.geteuid() and not (parent / "q.theirs").exists()
        assert stat.S_IMODE((parent / "q" / "study.journal").stat().st_mode) == 0o600
    finally:
        if "watcher" in locals() and watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        shutil.rmtree(parent, ignore_errors=True)


SWAP_NOW = '''import os, sys
# Move the victim's live run directory away and put her own in its place, with links at the
# files the run writes next (at a file of the victim's) and open folders for its trial files.
parent, name, victim = sys.argv[1], sys.argv[2], sys.argv[3]
run = os.path.join(parent, name)
os.rename(run, run + ".moved")
os.mkdir(run)
os.chmod(run, 0o777)
for f in ("summary.json", "study.journal", "run.json", "study.journal.lock"):
    os.symlink(victim, os.path.join(run, f))
for d in ("trials", "trials/000", "results"):
    os.mkdir(os.path.join(run, d))
    os.chmod(os.path.join(run, d), 0o777)
print("swapped", flush=True)
'''


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_run_directory_swapped_while_the_run_writes_gets_none_of_its_writes(
        other_user: OtherUser, tmp_path: Path) -> None:
    """The folder above a live run becomes writable by her (a chmod, an ACL: after hpwf checked
    it). She renames the run directory away and puts her own in its place, with links at a file
    of the victim's where the journal, ``summary.json`` and ``run.json`` go. Every write of the
    run (coordinator and agents: journal, trial files, results logs, summary) goes on into the
    directory the run began in, reached through its descriptor: her folder gets nothing, the
    victim's file is untouched."""
    parent = Path(tempfile.mkdtemp(prefix="hpwf-live-", dir="/tmp"))
    try:
        victim = tmp_path / "precious"
        victim.write_text("keep me\n")
        script = parent / "swap_now.py"
        script.write_text(SWAP_NOW)
        script.chmod(0o644)
        run_dir = parent / "q"
        run = subprocess.Popen([PYTHON, "-m", "hpwf", "run", str(TOY), "--run-dir", str(run_dir), "--workers", "2",
                                "--n-trials", "10", "--quiet"], env=env(TOY_EPOCHS="4", TOY_SLEEP="0.25"), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 120
            while len(list((run_dir / "results").glob("*/*.jsonl"))) < 2:  # both agents have started trials
                assert run.poll() is None and time.time() < deadline, run.communicate()
                time.sleep(0.02)
            parent.chmod(0o777)  # now she may rename what is in it
            swap = subprocess.run(["/usr/bin/python3", "-I", str(script), str(parent), "q", str(victim)],
                                  user=other_user.uid, group=other_user.gid, cwd="/", capture_output=True, text=True,
                                  env={"PATH": "/usr/bin:/bin"}, timeout=60)
            assert swap.stdout.strip() == "swapped", swap.stderr
            planted = _tree(run_dir)
            out, err = run.communicate(timeout=300)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        assert run.returncode == 0, err
        assert victim.read_text() == "keep me\n", "a write followed her link"
        assert _tree(run_dir) == planted, "the run wrote into her folder"
        moved = parent / "q.moved"
        summary = json.loads((moved / "summary.json").read_text())
        assert summary["complete"] + summary["pruned"] == 10, summary
        results = [json.loads((f / "result.json").read_text()) for f in (moved / "trials" / "000").iterdir()]
        assert len(results) == 10 and {r["state"] for r in results} <= {"COMPLETE", "PRUNED"}
        assert b'"op_code":6' in (moved / "study.journal").read_bytes()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_an_agents_reports_follow_the_held_run_directory_not_its_path(tmp_path: Path) -> None:
    """An agent's arrival mark and unreachable report (written by `hpwf.wire`, which sits below the
    layer that holds run directories) go through the run directory the agent held when it started:
    a run directory swapped after that gets none of them."""
    from hpwf.rundir import held_folder
    from hpwf.wire import mark_arrival, parse_address
    from hpwf.wire._reach import write_report

    run = tmp_path / "agentrun"
    run.mkdir(mode=0o700)
    reports = held_folder(run / "agents")  # what each agent does with RUN_DIR/agents before it connects
    assert str(reports).startswith("/proc/self/fd/")
    run.rename(tmp_path / "moved")
    run.mkdir(mode=0o777)  # (hers, in the story)
    mark_arrival(reports, "L1", "rank-1")
    write_report(reports, "rank-1", 1, ConnectionRefusedError("refused"), parse_address("127.0.0.1:9"))
    assert not list(run.iterdir())
    names = sorted(p.name for p in (tmp_path / "moved" / "agents").iterdir())
    assert len(names) == 2 and names[0].startswith("arrived-L1-") and names[1].startswith("unreachable-")
    assert held_folder(tmp_path / "nowhere" / "agents") == tmp_path / "nowhere" / "agents"  # not holdable: plain


def test_files_of_a_held_run_directory_follow_its_descriptor_not_its_path(tmp_path: Path) -> None:
    """The helper every run-directory file goes through: a link planted on the way (a folder or
    the file) is refused; a run directory moved away keeps its writes; one deleted and made anew
    at the same path (a new run) is held afresh; Optuna's journal path resolves through the
    descriptor."""
    from hpwf.rundir import atomic_write, check_run_trusted, hold_run_dir, make_folder, open_file, read_file
    from hpwf.rundir._safe_open import store_path

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    hold_run_dir(run)
    (tmp_path / "elsewhere").mkdir()
    (run / "trials").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError) as link:
        make_folder(run / "trials" / "000" / "00001")
    assert link.value.errno in (errno.ELOOP, errno.ENOTDIR) and not list((tmp_path / "elsewhere").iterdir())
    (run / "log.txt").symlink_to(tmp_path / "victim")
    with pytest.raises(OSError):
        open_file(run / "log.txt", "a")
    assert not (tmp_path / "victim").exists()
    journal = store_path(run / "study.journal")
    assert journal.startswith("/proc/self/fd/") and os.path.samefile(os.path.dirname(journal), run)
    run.rename(tmp_path / "moved")
    run.mkdir(mode=0o777)  # (hers, in the story)
    atomic_write(run / "summary.json", "{}")
    with open(journal, "ab") as f:  # what Optuna does with the path it was given
        f.write(b"record\n")
    assert not list(run.iterdir())
    assert read_file(tmp_path / "moved" / "summary.json") == b"{}"
    assert (tmp_path / "moved" / "study.journal").read_bytes() == b"record\n"
    run.rmdir()
    shutil.rmtree(tmp_path / "moved")
    run.mkdir(mode=0o700)  # a new run at the same path
    atomic_write(run / "summary.json", "{}")
    assert (run / "summary.json").read_text() == "{}"
    run.rename(tmp_path / "old")  # the user moves a run aside and makes another there: a reader
    run.mkdir(mode=0o700)  # (`hpwf status`) checks and reads the one the path names now
    (run / "summary.json").write_text('{"new": 1}')
    check_run_trusted(run)
    assert read_file(run / "summary.json") == b'{"new": 1}'


def test_a_checkpoint_that_is_not_ours_or_is_a_link_is_never_loaded(other_user: OtherUser, tmp_path: Path) -> None:
    mine = tmp_path / "pause.pt"
    mine.write_bytes(b"weights")
    mine.chmod(0o600)
    assert read_private(mine) == b"weights"
    theirs = tmp_path / "theirs.pt"
    theirs.write_bytes(b"her weights")
    os.chown(theirs, other_user.uid, -1)
    link = tmp_path / "link.pt"
    link.symlink_to(mine)
    writable = tmp_path / "writable.pt"
    writable.write_bytes(b"x")
    writable.chmod(0o666)
    for path, problem in ((theirs, "not by you"), (link, "symbolic link"), (writable, "others can write it")):
        with pytest.raises(ConfigError, match=problem):
            read_private(path)


# --- item 4: a forged run.json; a deleted study; a bad store -----------------------------------------
def hpwf_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "hpwf", *args], env=env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_status_report_and_dashboard_refuse_a_run_of_another_user(finished_run: Path, other_user: OtherUser,
                                                                 tmp_path: Path) -> None:
    """Her folder, with a copy of a run and a run.json of hers: nothing of it is trusted."""
    forged = tmp_path / "forged"
    shutil.copytree(finished_run, forged)
    as_other(other_user, forged)
    for command in (["status", str(forged)], ["report", str(forged)], ["dashboard", str(forged), "--port", "0"]):
        line = one_error_line(hpwf_cli(*command))
        assert "not by you" in line, command
    assert not (forged / "report.html").exists()


@pytest.mark.parametrize("store", ["journal:{victim}", "{victim}.journal", "journal:{deep}/x.journal",
                                   "sqlite:///{deep}/x.db"])
def test_a_run_json_naming_a_store_outside_the_run_is_not_opened(finished_run: Path, tmp_path: Path,
                                                                 store: str) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    victim = tmp_path / "precious"
    victim.write_bytes(b"line one\nline two without its newline")
    (tmp_path / "precious.journal").write_bytes(victim.read_bytes())
    deep = tmp_path / "deep" / "er"
    url = store.format(victim=victim, deep=deep)
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "storage": url}))
    for command in (["status", str(run_dir)], ["report", str(run_dir)], ["dashboard", str(run_dir), "--port", "0"]):
        line = one_error_line(hpwf_cli(*command))
        assert "names a store outside the run directory" in line and "--storage" in line, line
    assert victim.read_bytes() == b"line one\nline two without its newline"
    assert not (tmp_path / "deep").exists()
    # the owner may name it on the command line: then it is opened (and it is not a study store)
    if "deep" in store:
        line = one_error_line(hpwf_cli("status", str(run_dir), "--storage", url))
        assert "no study store" in line and not (tmp_path / "deep").exists()
    ok = hpwf_cli("status", str(run_dir), "--storage", f"journal:{finished_run / 'study.journal'}")
    assert ok.returncode == 0 and "toy" in ok.stdout, ok.stderr


def test_a_deleted_study_or_a_bad_store_is_one_line(finished_run: Path, tmp_path: Path) -> None:
    import optuna

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    from hpwf.rundir._run import journal_storage

    optuna.delete_study(study_name="toy", storage=journal_storage(run_dir / "study.journal"))
    for command in ("status", "report"):
        line = one_error_line(hpwf_cli(command, str(run_dir)))
        assert "study 'toy' is not in its store" in line
    (run_dir / "study.journal").unlink()
    for command in ("status", "report"):
        assert "no study store at" in one_error_line(hpwf_cli(command, str(run_dir)))
    for bad in ("sqlite:////nonexistent/dir/x.db", "nonsense", "postgresql://u@127.0.0.1:9/db"):
        for command in ("status", "report"):
            done = hpwf_cli(command, str(run_dir), "--storage", bad)
            one_error_line(done)
            assert "Traceback" not in done.stderr


# --- item 5: Dask's scratch space --------------------------------------------------------------------
def test_a_dask_scratch_space_made_by_another_user_is_not_used(other_user: OtherUser, tmp_path: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="hpwf-tmpdir-", dir="/tmp"))
    try:
        tmp.chmod(0o1777)  # a system temporary directory
        victim = tmp_path / "precious"
        victim.write_text("keep me\n")
        scratch = tmp / "dask-scratch-space"  # hers, made first, with her links at Dask's lock files
        scratch.mkdir(mode=0o777)
        scratch.chmod(0o777)
        (scratch / "global.lock").symlink_to(victim)
        (scratch / "purge.lock").symlink_to(victim)
        as_other(other_user, scratch)
        before = sorted(p.name for p in scratch.iterdir())
        done = subprocess.run([PYTHON, "-m", "hpwf", "run", str(TOY), "--run-dir", str(tmp_path / "run"),
                               "--workers", "2", "--n-trials", "3", "--quiet"], env=env(TMPDIR=str(tmp)), cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert victim.read_text() == "keep me\n"
        assert sorted(p.name for p in scratch.iterdir()) == before, "the run used her scratch folder"
        assert not [p for p in tmp.iterdir() if p.name.startswith("hpwf-dask-")], "the private scratch was left"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SCRATCH_FLOW = '''import json, os, tempfile
import hpwf

search = hpwf.Search(direction="minimize", n_trials=2, seed=1)


def objective(trial):
    folder = tempfile.gettempdir()
    st = os.stat(folder)
    with tempfile.NamedTemporaryFile(delete=False) as f:
        made = f.name
    record = {"dir": folder, "uid": st.st_uid, "mode": st.st_mode & 0o7777, "file": made}
    (trial.folder / "tmp.json").write_text(json.dumps(record))
    return 1.0
'''


def test_agents_on_a_dask_worker_hpwf_did_not_start_use_a_private_scratch_of_their_own(
        other_user: OtherUser, tmp_path: Path) -> None:
    """A ``dask worker`` started outside hpwf (``--backend dask``) whose temporary directory and
    ``--local-directory`` are a folder the other user made (anyone may write it): the agents and
    their trials put their temporary files in a fresh 0700 folder of the victim's elsewhere, leave
    nothing in her folder but Dask's own files, and the worker's log says that its folder is not
    private."""
    bin_dir = Path(sys.executable).parent
    hers = Path(tempfile.mkdtemp(prefix="hpwf-hers-", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        hers.chmod(0o777)
        as_other(other_user, hers)
        (tmp_path / "flow.py").write_text(SCRATCH_FLOW)
        scheduler_file = tmp_path / "scheduler.json"
        base = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                       "--no-dashboard", "--scheduler-file", str(scheduler_file)], cwd=ROOT, env=base,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 60
        while not scheduler_file.exists():
            assert time.time() < deadline
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        worker_log = tmp_path / "worker.log"
        with worker_log.open("wb") as log:
            procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nworkers", "1", "--nthreads",
                                           "1", "--no-dashboard", "--host", "127.0.0.1", "--local-directory",
                                           str(hers)], cwd=ROOT, env={**base, "TMPDIR": str(hers)}, stdout=log,
                                          stderr=subprocess.STDOUT))
        done = subprocess.run([PYTHON, "-m", "hpwf", "run", str(tmp_path / "flow.py"), "--backend", "dask",
                               "--scheduler", address, "--run-dir", str(tmp_path / "run"), "--quiet"], env=env(),
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        records = [json.loads(p.read_text()) for p in (tmp_path / "run" / "trials").glob("*/*/tmp.json")]
        assert len(records) == 2
        for record in records:
            assert not record["dir"].startswith(str(hers)), record
            assert record["uid"] == os.geteuid() and record["mode"] == 0o700, record
            assert record["file"].startswith(record["dir"] + "/")
        assert {p.name for p in hers.iterdir()} <= {"dask-scratch-space"}, sorted(p.name for p in hers.iterdir())
        for proc in procs[::-1]:
            proc.terminate()
            proc.wait(timeout=30)
        assert f"this Dask worker's local directory {hers}" in worker_log.read_text(), worker_log.read_text()[-3000:]
    finally:
        for proc in procs[::-1]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(hers, ignore_errors=True)


# --- item 6: a flood of silent handshakes ---------------------------------------------------------
FLOOD = '''import selectors, socket, sys, time
# Hold as many silent connections to the hub as she can, reconnecting at once when one is dropped.
host, port, source, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
selector = selectors.DefaultSelector()
opened = 0
def open_one():
    global opened
    s = socket.socket()
    s.setblocking(False)
    s.bind((source, 0))
    try:
        s.connect((host, port))
    except BlockingIOError:
        pass
    except OSError:
        s.close()
        return
    opened += 1
    selector.register(s, selectors.EVENT_READ)
end = time.time() + seconds
for _ in range(300):
    open_one()
print("holding", flush=True)
while time.time() < end:
    for key, _ in selector.select(0.01):
        s = key.fileobj
        try:
            gone = s.recv(4096) == b""
        except OSError:
            gone = True
        if gone:
            selector.unregister(s)
            s.close()
            open_one()
    while len(selector.get_map()) < 300 and time.time() < end:
        open_one()
        time.sleep(0.001)
print("opened", opened, flush=True)
'''

DRIVER = '''import sys, time
import hpwf
from hpwf.backends.mpi import MPIJobBackend
start = time.time()
hpwf.run(sys.argv[1], backend=MPIJobBackend(ranks=2, launcher=[sys.argv[2]]), run_dir=sys.argv[3],
         n_trials=int(sys.argv[4]), progress=False)
print("elapsed", time.time() - start, flush=True)
'''


def _hub_port(pid: int, deadline: float) -> int:
    import psutil

    while time.time() < deadline:
        try:
            for proc in (psutil.Process(pid), *psutil.Process(pid).children(recursive=True)):
                for c in proc.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN and c.laddr.ip == "127.0.0.1" and proc.pid == pid:
                        with socket.create_connection(("127.0.0.1", c.laddr.port), timeout=2) as s:
                            s.settimeout(2)
                            if s.recv(11) == b"hpwf-hub/1\n":
                                return int(c.laddr.port)
        except (psutil.Error, OSError):
            pass
        time.sleep(0.01)
    raise AssertionError("the hub did not come up")


@pytest.mark.parametrize("source", ["127.0.0.2", "127.0.0.1"], ids=["another address", "the agents' address"])
def test_a_flood_of_silent_handshakes_does_not_keep_the_agents_out(other_user: OtherUser, tmp_path: Path,
                                                                   public_dir: Path, source: str) -> None:
    """A TCP hub, agents started by a slow ``mpirun`` (3 s): her flood (as fast as one process
    reconnects, from another loopback address) holds the hub's handshakes before they arrive.
    The run still ends in a small multiple of the same run without the flood."""
    slow = tmp_path / "slow-mpirun"
    slow.write_text(f"#!/bin/sh\nsleep 3\nexec {MPIRUN} \"$@\"\n")
    slow.chmod(0o755)
    (public_dir / "flood.py").write_text(FLOOD)
    (public_dir / "flood.py").chmod(0o644)
    (tmp_path / "driver.py").write_text(DRIVER)
    run_env = env(HPWF_HUB_TCP="1", TOY_SLEEP="0.05", TOY_EPOCHS="4")
    n_trials = "12"

    def one_run(name: str, flood: bool) -> tuple[float, dict, str]:  # type: ignore[type-arg]
        run = subprocess.Popen([PYTHON, str(tmp_path / "driver.py"), str(TOY), str(slow), str(tmp_path / name),
                                n_trials], env=run_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        flooder = None
        try:
            if flood:
                port = _hub_port(run.pid, time.time() + 60)
                flooder = subprocess.Popen(["/usr/bin/python3", "-I", str(public_dir / "flood.py"), "127.0.0.1",
                                            str(port), source, "120"], user=other_user.uid,
                                           group=other_user.gid, cwd="/", stdout=subprocess.PIPE, text=True,
                                           env={"PATH": "/usr/bin:/bin"})
                assert flooder.stdout is not None and flooder.stdout.readline().strip() == "holding"
            out, err = run.communicate(timeout=400)
            assert run.returncode == 0, err
        finally:
            if run.poll() is None:
                run.kill()
            if flooder is not None:
                flooder.send_signal(signal.SIGKILL)
                flooder.wait()
        elapsed = float(out.split("elapsed")[-1])
        return elapsed, json.loads((tmp_path / name / "summary.json").read_text()), err

    quiet, quiet_summary, _ = one_run("quiet", flood=False)
    flooded, summary, _ = one_run("flooded", flood=True)
    print(f"without the flood {quiet:.1f} s, flooded {flooded:.1f} s, refused {summary.get('connections_refused')}")
    # Her flood holds 300 connections, 16 of them in handshakes (PER_PEER): the rest wait in the
    # hub's listen queue. A queue of 256 stayed full, the kernel dropped the agents' SYNs and an
    # agent could stay out past the backend's 30 s arrival wait (then the run took 65.6 s: the
    # arrival wait, then 30 s for the job whose rank was still connecting). With a deeper queue
    # (LISTEN_BACKLOG; tests/test_hub.py) flooded runs took 1-3 s more (10 runs, load average 13).
    assert flooded < 3 * quiet + 10, f"flooded run {flooded:.1f} s, the same run without the flood {quiet:.1f} s"
    assert summary["complete"] + summary["pruned"] == int(n_trials) and summary["agents_seen"] == 2
    assert summary["connections_refused"] > 100, summary  # her flood reached the hub, and was hung up on
    assert quiet_summary["connections_refused"] == 0


@pytest.mark.parametrize("agent", ["an expected host", "proved the key before", "unknown"])
def test_known_agents_go_first_when_a_flood_fills_the_hub(agent: str) -> None:
    """Her flood from 200 addresses (one silent connection each, more than the hub's 128 slots)
    arrives while an agent is in its handshake. A known agent (its host expected, or its address
    proved the key before) keeps its slot and gets in; an unknown one is hung up on."""
    from hpwf.wire import Hub, connect
    from hpwf.wire._channel import MAX_HANDSHAKES
    from hpwf.wire._handshake import _prove

    hub = Hub("127.0.0.1", unix=False)
    flood: list[socket.socket] = []
    try:
        if agent == "an expected host":
            hub.expect(["127.0.0.1", "no-such-host.invalid"])
        elif agent == "proved the key before":
            connect(hub.address, hub.authkey).close()
        source = "127.0.0.1" if agent != "unknown" else "127.0.0.250"
        sock = socket.socket()
        sock.bind((source, 0))
        sock.connect(hub.address)
        deadline = time.time() + 5
        while len(hub._pending) < 1:
            assert time.time() < deadline
            time.sleep(0.001)
        for i in range(200):
            s = socket.socket()
            s.bind((f"127.0.1.{i + 1}", 0))
            s.connect(hub.address)
            flood.append(s)
        while hub.refused < 200 - MAX_HANDSHAKES:  # the hub hung up on the oldest silent ones
            assert time.time() < deadline, hub.refused
            time.sleep(0.001)
        if agent == "unknown":
            with pytest.raises((OSError, EOFError)):
                _prove(sock, hub.authkey, time.monotonic() + 2)
        else:
            _prove(sock, hub.authkey, time.monotonic() + 2)
            deadline = time.time() + 5
            while not hub.take_new():
                assert time.time() < deadline, "the known agent did not get in"
                time.sleep(0.01)
        sock.close()
    finally:
        for s in flood:
            s.close()
        hub.close()


def test_the_hub_expects_the_hosts_the_mpirun_backend_places_agents_on() -> None:
    from hpwf.backends.mpi import MPIJobBackend
    from hpwf.engine.session import Session

    assert MPIJobBackend(ranks=2, launcher=["mpirun", "-hosts", "n1:1,n2"]).agent_hosts == ("n1", "n2")
    backend = MPIJobBackend(ranks=1, launcher=[MPIRUN])
    expected: list[str] = []

    class Hub:
        address, authkey, wake_fd = "x", b"k", os.pipe()[0]

        def expect(self, hosts: list[str]) -> None:
            expected.extend(hosts)

    session = Session(backend, hub_factory=Hub)
    backend.start = lambda address, key: None  # type: ignore[method-assign]
    session.__enter__()
    assert expected == ["127.0.0.1"]


def test_file_modes_are_not_judged_from_a_folder_she_owns(other_user: OtherUser, tmp_path: Path) -> None:
    """Her folder, group-readable and setgid, says nothing about who may read our files: 0600."""
    from hpwf.rundir._perms import atomic_write, is_shared

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, other_user.uid, -1)
    theirs.chmod(0o2770)
    atomic_write(theirs / "run.json", "{}")
    assert not is_shared(theirs) and stat.S_IMODE((theirs / "run.json").stat().st_mode) == 0o600
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o2750)
    assert is_shared(mine)
