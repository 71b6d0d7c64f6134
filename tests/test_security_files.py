"""Files and secrets (issue 11, items 3-5): what another user on the same machine can get at.

- Passwords: a storage URL with one is refused (exit 2, the URL shown masked); no file under
  the run directory, no job script and no message holds it; the ranks' command lines carry no
  secret; site-config env values stay out of ``job.sh`` (in ``job.env``, mode 0600).
- Files: a real run's directory is ``0700`` and its files ``0600``; a second Unix user (made
  with ``useradd``; the tests must run as root, as CI does, or they fail saying so) cannot list
  it or read ``run.json`` or ``study.journal``; with ``--shared-group`` the group may read and
  never write; ``resume`` (and the job script's resume after a requeue) refuses a run directory
  that others can write or that is someone else's; temporary files and the lock never follow
  a planted symbolic link; checkpoints load with ``weights_only=True``.
- Site configs: env names are matched whole (``"X\\n"`` is refused), values are kept as written.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from hpwf.rundir._perms import atomic_write, check_run_trusted, make_run_dir
from hpwf.secrets import has_password, redact, refuse_password, strip_password
from hpwf.errors import ConfigError
from hpwf.rundir import RunLock
from hpwf.rundir._run import RunRecord, open_storage, write_summary
from hpwf.slurm import SiteConfig, load_site
from hpwf.slurm import render_script, resolve_job, write_script
from hpwf.rundir._trialdir import trial_folder

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "workflows" / "toy.py"
PASSWORD = "Sup3r-S3cret-pw"
URL = f"postgresql://alice:{PASSWORD}@127.0.0.1:9/hpwf"


def hpwf(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpwf", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=timeout)


def files_holding(folder: Path, secret: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- a second Unix user ----------------------------------------------------------------------
class OtherUser:
    """A user made for the test; `run` runs a command as that user (optionally in ``group``)."""

    def __init__(self, name: str, group: str) -> None:
        self.name, self.uid, self.gid = name, pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid
        self.group = grp.getgrnam(group).gr_gid

    def run(self, *command: str, in_group: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(command), user=self.uid, group=self.gid,
                              extra_groups=[self.group] if in_group else [], capture_output=True, text=True,
                              cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=60)


@pytest.fixture(scope="module")
def other_user() -> Iterator[OtherUser]:
    if os.geteuid() != 0:
        pytest.fail("could not check what a second user can read: creating one (useradd) needs root; "
                    "run this test as root (CI does)")
    if shutil.which("useradd") is None:
        pytest.fail("could not check what a second user can read: useradd is missing (apt-get install passwd)")
    name, group = f"hpwfprobe{os.getpid() % 100000}", f"hpwfgrp{os.getpid() % 100000}"
    subprocess.run(["groupadd", group], check=True)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--no-user-group",
                    "--gid", "nogroup", name], check=True)
    try:
        yield OtherUser(name, group)
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", group], check=False)


@pytest.fixture(scope="module")
def open_parent() -> Iterator[Path]:
    """A folder any user may enter (pytest's own tmp folders are 0700: they would hide everything)."""
    folder = Path(tempfile.mkdtemp(prefix="hpwf-sec-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def private_run(open_parent: Path) -> Path:
    """A real run of the toy workflow (local backend), made with the default permissions."""
    run_dir = open_parent / "private-run"
    done = hpwf("run", str(TOY), "--run-dir", str(run_dir), "--workers", "1", "--n-trials", "3", "--quiet",
                env={"TOY_EPOCHS": "2", "TOY_SLEEP": "0"})
    assert done.returncode == 0, done.stderr
    return run_dir


# --- item 4: files ---------------------------------------------------------------------------
def test_a_run_directory_and_its_files_are_readable_by_the_user_only(private_run: Path) -> None:
    assert mode(private_run) == 0o700
    for path in private_run.rglob("*"):
        if path.is_symlink():
            continue
        assert mode(path) & 0o077 == 0, f"{path} is {mode(path):04o}: others may read it"
    for name in ("run.json", "study.journal", "summary.json"):
        assert mode(private_run / name) == 0o600, name
    assert mode(trial_folder(private_run, 0)) == 0o700


def test_a_second_user_cannot_read_a_run(private_run: Path, open_parent: Path, other_user: OtherUser) -> None:
    control = open_parent / "readable.txt"
    control.write_text("anyone may read this\n")
    control.chmod(0o644)
    assert other_user.run("cat", str(control)).returncode == 0, "the test's second user cannot read anything"
    for command in (["ls", str(private_run)], ["cat", str(private_run / "run.json")],
                    ["cat", str(private_run / "study.journal")], ["cat", str(private_run / "summary.json")],
                    ["ls", str(trial_folder(private_run, 0))]):
        done = other_user.run(*command)
        assert done.returncode != 0 and "Permission denied" in done.stderr, (command, done.stdout, done.stderr)
        assert done.stdout == ""


def test_a_shared_group_run_is_readable_by_the_group_and_writable_by_no_one_else(
        open_parent: Path, other_user: OtherUser) -> None:
    project = open_parent / "project"
    project.mkdir()
    os.chown(project, -1, other_user.group)
    project.chmod(0o2755)  # a group-shared project directory (setgid: its group is inherited)
    run_dir = project / "shared-run"
    done = hpwf("run", str(TOY), "--run-dir", str(run_dir), "--workers", "1", "--n-trials", "2", "--quiet",
                "--shared-group", env={"TOY_EPOCHS": "2", "TOY_SLEEP": "0"})
    assert done.returncode == 0, done.stderr
    assert mode(run_dir) == 0o2750 and run_dir.stat().st_gid == other_user.group
    for name in ("run.json", "study.journal", "summary.json"):
        assert mode(run_dir / name) == 0o640, name
    assert mode(trial_folder(run_dir, 0)) & 0o027 == 0o000 and mode(trial_folder(run_dir, 0)) & 0o050
    read = other_user.run("cat", str(run_dir / "run.json"), in_group=True)
    assert read.returncode == 0 and "toy" in read.stdout, read.stderr
    assert other_user.run("cat", str(trial_folder(run_dir, 0) / "params.json"), in_group=True).returncode == 0
    assert other_user.run("touch", str(run_dir / "planted"), in_group=True).returncode != 0
    assert other_user.run("sh", "-c", f"echo x >> {run_dir / 'run.json'}", in_group=True).returncode != 0
    assert other_user.run("cat", str(run_dir / "run.json")).returncode != 0  # not in the group: nothing
    assert hpwf("resume", str(run_dir), "--quiet").returncode == 0, "a shared run is still its owner's to resume"


@pytest.mark.parametrize("change", ["group-writable run.json", "world-writable run dir", "run.json of another user",
                                    "run dir of another user"])
def test_resume_refuses_a_run_directory_others_can_write(
        private_run: Path, other_user: OtherUser, change: str) -> None:
    target = private_run / "run.json" if "run.json" in change else private_run
    before = target.stat()
    try:
        if "another user" in change:
            os.chown(target, other_user.uid, -1)
        else:
            target.chmod(mode(target) | (0o020 if "group" in change else 0o002))
        done = hpwf("resume", str(private_run), "--quiet")
        assert done.returncode == 2, done.stderr
        line = done.stderr.strip()
        assert len(line.splitlines()) == 1 and line.startswith(f"hpwf: error: {target}: ")
        assert ("not by you" in line) if "another user" in change else ("can write it" in line)
        with pytest.raises(ConfigError):
            check_run_trusted(private_run)
    finally:
        os.chown(target, before.st_uid, before.st_gid)
        target.chmod(stat.S_IMODE(before.st_mode))
    check_run_trusted(private_run)


SRUN_STUB = "#!/bin/sh\n# srun as a stand-in: run the command it was given, once\nwhile [ \"${1#-}\" != \"$1\" ]; do shift; done\nexec \"$@\"\n"


def test_the_job_scripts_resume_after_a_requeue_refuses_a_run_dir_others_can_write(
        private_run: Path, tmp_path: Path) -> None:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "srun").write_text(SRUN_STUB)
    (stubs / "srun").chmod(0o755)
    job = resolve_job(SiteConfig(scheduler="slurm", launcher="srun"), TOY, name="toy", run_dir=private_run,
                      ntasks_per_node=2, workdir=ROOT)
    script = tmp_path / "job.sh"
    script.write_text(render_script(job))  # as the requeued job finds it: run.json exists, so it resumes
    (private_run / "run.json").chmod(0o666)
    try:
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
                                   "SLURM_JOB_ID": "77", "SLURM_RESTART_COUNT": "1"})
    finally:
        (private_run / "run.json").chmod(0o600)
    assert "hpwf resume exited with code 2" in done.stdout, done.stdout + done.stderr
    assert f"{private_run / 'run.json'}: anyone can write it (mode 0666)" in done.stderr


def test_run_and_submit_refuse_a_run_dir_of_another_user(tmp_path: Path, other_user: OtherUser) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, other_user.uid, -1)
    done = hpwf("run", str(TOY), "--run-dir", str(theirs), "--quiet")
    assert done.returncode == 2 and "not by you" in done.stderr, done.stderr
    done = hpwf("submit", str(TOY), "--site", "site_configs/slurm-generic.yaml", "--run-dir", str(theirs))
    assert done.returncode == 2 and "not by you" in done.stderr, done.stderr
    assert list(theirs.iterdir()) == []


def test_temporary_files_and_the_lock_never_follow_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run_dir = tmp_path / "run"
    make_run_dir(run_dir)
    for name in ("summary.json.tmp", "run.json.tmp", "checkpoint.tmp", "report.html.tmp"):
        (run_dir / name).symlink_to(victim)
    write_summary(run_dir, {"complete": 1})
    RunRecord(study_name="s", storage=None, workflow=None).save(run_dir)
    assert json.loads((run_dir / "summary.json").read_text()) == {"complete": 1}
    assert mode(run_dir / "summary.json") == 0o600 and mode(run_dir / "run.json") == 0o600

    from hpwf.workflow import parallel
    from hpwf.workflow._trial import Trial

    trial = Trial(0, {}, {}, seed=0, folder=run_dir, request=lambda message: None)
    parallel.checkpoint(trial, {"epoch": 3})
    assert parallel.restore(trial) == {"epoch": 3}
    assert victim.read_text() == "precious\n"
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")], "a temporary file was left behind"

    (run_dir / ".lock").symlink_to(victim)
    with pytest.raises(ConfigError, match=r"\.lock: is a symbolic link"):
        RunLock(run_dir).acquire()
    assert victim.read_text() == "precious\n"


class _Planted:
    """What an attacker would pickle into a checkpoint: unpickling it runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_restore_loads_weights_only(tmp_path: Path) -> None:
    import torch

    from hpwf.workflow import parallel
    from hpwf.workflow._trial import Trial

    marker = tmp_path / "code-ran"
    torch.save({"model": _Planted(marker)}, tmp_path / "checkpoint.pt")
    trial = Trial(0, {}, {}, seed=0, folder=tmp_path, request=lambda message: None)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        parallel.restore(trial)
    assert not marker.exists(), "loading a checkpoint ran code"
    parallel.checkpoint(trial, {"model": {"w": torch.ones(2)}, "epoch": 1, "name": "x"})
    state = parallel.restore(trial)
    assert state is not None and state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(2))


# --- item 3: secrets -------------------------------------------------------------------------
def test_urls_are_redacted_and_passwords_found() -> None:
    assert redact(f"x {URL} y") == "x postgresql://alice:***@127.0.0.1:9/hpwf y"
    assert redact("postgresql://a:p@ss@h/db") == "postgresql://a:***@h/db"  # up to the host's "@"
    assert redact(f"'{URL}'") == "'postgresql://alice:***@127.0.0.1:9/hpwf'"
    assert redact("postgresql://h/db?sslmode=require&password=pw") == "postgresql://h/db?sslmode=require&password=***"
    assert redact("sqlite:///a:b@c.db and journal:/x") == "sqlite:///a:b@c.db and journal:/x"
    assert has_password(URL) and has_password("postgresql+psycopg2://u@h/db?password=x")
    assert not has_password("postgresql://alice@h/db") and not has_password("sqlite:///x.db")
    assert redact("postgresql://alice:@h/db?password=") == "postgresql://alice:@h/db?password="  # nothing to hide
    assert not has_password("postgresql://alice:@h/db")
    assert strip_password(URL) == "postgresql://alice@127.0.0.1:9/hpwf"
    with pytest.raises(ConfigError) as info:
        refuse_password(URL, "--storage")
    assert PASSWORD not in str(info.value) and "PGPASSWORD" in str(info.value) and ".pgpass" in str(info.value)
    assert "give postgresql://alice@127.0.0.1:9/hpwf" in str(info.value)


def test_run_refuses_a_storage_url_with_a_password_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = hpwf("run", str(TOY), "--run-dir", str(run_dir), "--storage", URL, "--quiet")
    assert done.returncode == 2, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert done.stderr.strip().startswith("hpwf: error: --storage postgresql://alice:***@127.0.0.1:9/hpwf: ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not run_dir.exists()
    assert files_holding(tmp_path, PASSWORD) == []


def test_a_password_in_the_workflow_files_search_is_refused(tmp_path: Path) -> None:
    wf = tmp_path / "wf.py"
    wf.write_text(f"import hpwf\nsearch = hpwf.Search(direction='minimize', n_trials=2, storage={URL!r})\n"
                  "def objective(t):\n    return t.suggest_float('x', 0, 1)\n")
    done = hpwf("run", str(wf), "--run-dir", str(tmp_path / "run"), "--quiet")
    assert done.returncode == 2 and PASSWORD not in done.stderr and "Search(storage=...)" in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()


def test_storage_errors_are_redacted(tmp_path: Path) -> None:
    """A run.json from before (or written by hand) with a password: messages still mask it."""
    with pytest.raises(ConfigError) as info:
        open_storage(URL, tmp_path)
    assert PASSWORD not in str(info.value) and "alice:***@" in str(info.value)
    run_dir = tmp_path / "old"
    make_run_dir(run_dir)
    (run_dir / "run.json").write_text(json.dumps({"study_name": "s", "storage": URL, "workflow": None}))
    done = hpwf("status", str(run_dir))
    assert done.returncode == 2 and PASSWORD not in done.stderr + done.stdout and "alice:***@" in done.stderr


def test_a_record_never_holds_a_password(tmp_path: Path) -> None:
    RunRecord(study_name="s", storage=URL, workflow=None, options={"note": URL}).save(tmp_path)
    assert files_holding(tmp_path, PASSWORD) == []


def site_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text("scheduler: slurm\nlauncher: srun\nntasks_per_node: 2\n" + extra)
    return path


def test_a_site_config_with_a_password_is_refused_and_no_script_written(tmp_path: Path) -> None:
    site = site_file(tmp_path, f"storage: {URL}\n")
    with pytest.raises(ConfigError) as info:
        load_site(site)
    assert str(info.value).startswith(f"{site}: storage: postgresql://alice:***@") and PASSWORD not in str(info.value)
    done = hpwf("submit", str(TOY), "--site", str(site), "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 2 and PASSWORD not in done.stderr + done.stdout, done.stderr
    assert not (tmp_path / "run").exists()


def fake_sbatch(folder: Path) -> dict[str, str]:
    """An sbatch that records its arguments, its umask and the job script it was given."""
    folder.mkdir()
    stub = folder / "sbatch"
    stub.write_text(f"#!/bin/sh\necho \"$@\" > {folder}/args\numask > {folder}/umask\necho 4242\n")
    stub.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def test_submit_keeps_tokens_and_passwords_out_of_the_job_script(tmp_path: Path) -> None:
    token = "tok-3f9a2b7c1d"
    site = site_file(tmp_path, f"storage: postgresql://alice@127.0.0.1:9/hpwf\nenv: {{API_TOKEN: {token}}}\n")
    run_dir = tmp_path / "run"
    env = {**fake_sbatch(tmp_path / "bin"), "PGPASSWORD": PASSWORD}
    done = hpwf("submit", str(TOY), "--site", str(site), "--run-dir", str(run_dir), env=env)
    assert done.returncode == 0, done.stderr
    script, env_file = run_dir / "job.sh", run_dir / "job.env"
    assert mode(run_dir) == 0o700 and mode(script) == 0o700 and mode(env_file) == 0o600
    assert token not in script.read_text() and f"export API_TOKEN={token}\n" in env_file.read_text()
    assert f". {env_file} || exit 1\n" in script.read_text()
    assert "umask 077" in script.read_text()
    assert files_holding(run_dir, token) == [env_file]
    assert files_holding(run_dir, PASSWORD) == [] and PASSWORD not in done.stdout + done.stderr
    assert (tmp_path / "bin" / "umask").read_text().strip() == "0077"  # sbatch passes it on (SLURM_UMASK)
    assert mode(run_dir / "slurm_job_id") == 0o600
    # --dry-run shows the script, which holds no token either
    shown = hpwf("submit", str(TOY), "--site", str(site), "--run-dir", str(tmp_path / "dry"), "--dry-run")
    assert shown.returncode == 0 and token not in shown.stdout and not (tmp_path / "dry").exists()


def test_shared_group_submit_makes_a_group_readable_run_dir(tmp_path: Path) -> None:
    site = site_file(tmp_path, "shared_group: true\n")
    job = resolve_job(load_site(site), TOY, name="toy", run_dir=tmp_path / "run", workdir=ROOT)
    script = write_script(job)
    text = script.read_text()
    assert "umask 027" in text and " --shared-group)" in text
    assert mode(tmp_path / "run") == 0o2750 and mode(script) == 0o700


def test_the_ranks_command_lines_hold_no_secret(tmp_path: Path) -> None:
    """What ``ps`` shows of every rank: the mpirun backend's job, a launched group, the job's srun."""
    from hpwf.worker._launched import group_command
    from hpwf.backends.mpi import MPIJobBackend

    backend = MPIJobBackend(ranks=3)
    backend._address, backend._authkey = ("127.0.0.1", 5000), bytes(range(32))
    command = backend.command()
    assert command[-3:] == ["-m", "hpwf.backends.mpi", "127.0.0.1:5000"]
    assert not [a for a in command if bytes(range(32)).hex() in a or "://" in a]
    assert group_command(4)[1:] == ["-np", "4", sys.executable, "-P", "-m", "hpwf.worker._group_rank"]
    # the job script's launch line: storage without a password; a password never gets that far
    site = SiteConfig(scheduler="slurm", launcher="srun", storage="postgresql://alice@db/hpwf")
    job = resolve_job(site, TOY, name="toy", run_dir=tmp_path / "run", ntasks_per_node=2, workdir=ROOT)
    assert "--storage postgresql://alice@db/hpwf" in render_script(job)
    with pytest.raises(ConfigError):
        SiteConfig(scheduler="slurm", launcher="srun", storage=URL)


def _processes_with(marker: bytes) -> dict[int, tuple[list[bytes], list[bytes]]]:
    """``pid: (argv, environ)`` of every process whose environment holds ``marker``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker in item for item in environ):
            found[int(entry.name)] = (argv, environ)
    return found


def test_ps_of_a_real_mpirun_job_shows_no_secret(tmp_path: Path) -> None:
    """During a real run on ``--backend mpirun``: the password (given the right way, in
    PGPASSWORD) and the hub's key reach the ranks' environment, never a command line."""
    marker = f"hpwf-ps-check-{os.getpid()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PGPASSWORD": PASSWORD, "HPWF_PS_MARKER": marker,
           "TOY_SLEEP": "0.3", "TOY_EPOCHS": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "hpwf", "run", str(TOY), "--backend", "mpirun", "--workers", "2",
                             "--n-trials", "6", "--run-dir", str(tmp_path / "run"), "--quiet"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: dict[int, tuple[list[bytes], list[bytes]]] = {}
    ranks: set[int] = set()
    try:
        while proc.poll() is None:
            found = _processes_with(marker.encode())
            seen.update(found)
            ranks |= {pid for pid, (argv, _) in found.items() if b"hpwf.backends.mpi" in argv}
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert len(ranks) >= 2, f"never saw the MPI job's ranks running: {sorted(seen)}"
    keys = {item.split(b"=", 1)[1] for pid in ranks for item in seen[pid][1] if item.startswith(b"HPWF_AUTHKEY=")}
    assert all(f"PGPASSWORD={PASSWORD}".encode() in seen[pid][1] for pid in ranks)
    for pid, (argv, _) in seen.items():  # (the hub's key may travel some other way than HPWF_AUTHKEY)
        line = b" ".join(argv)
        assert PASSWORD.encode() not in line and not any(key in line for key in keys), (pid, line)
    assert files_holding(tmp_path / "run", PASSWORD) == []


RECORD_ARGV = """#!/bin/sh
# srun as a stand-in: record what every rank's command line would be, then stop
echo "$@" >> {log}
exit 0
"""


def test_the_srun_line_of_a_real_job_script_holds_no_password(tmp_path: Path) -> None:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    log = tmp_path / "argv.txt"
    (stubs / "srun").write_text(RECORD_ARGV.format(log=log))
    (stubs / "srun").chmod(0o755)
    site = site_file(tmp_path, "storage: postgresql://alice@127.0.0.1:9/hpwf\nenv: {HPWF_TOKEN: tok-77}\n")
    job = resolve_job(load_site(site), TOY, name="toy", run_dir=tmp_path / "run", workdir=ROOT)
    script = write_script(job)
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "PGPASSWORD": PASSWORD})
    assert done.returncode == 0, done.stdout + done.stderr
    argv = log.read_text()
    assert "hpwf run" in argv and "--storage postgresql://alice@127.0.0.1:9/hpwf" in argv
    assert PASSWORD not in argv and "tok-77" not in argv


# --- item 5: site configs --------------------------------------------------------------------
@pytest.mark.parametrize("text,problem", [
    ('env: {"X\\n": a}\n', "env.'X\\n': is not a valid environment variable name"),
    ('env: {"X\\nrm -rf ~ #": a}\n', "env.'X\\nrm -rf ~ #': is not a valid environment variable name"),
    ("env: {X: {a: 1}}\n", "env.X: must be a string or a number, not a mapping"),
    ("env: {X: [1, 2]}\n", "env.X: must be a string or a number, not a list"),
    ("env: {X: }\n", "env.X: has no value (write '' for an empty one)"),
])
def test_bad_env_entries_are_refused_in_one_line(tmp_path: Path, text: str, problem: str) -> None:
    path = site_file(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert str(info.value) == f"{path}: {problem}"


def test_env_values_are_kept_as_written(tmp_path: Path) -> None:
    path = site_file(tmp_path, 'env:\n  A: 1.10\n  B: 010\n  C: 1e3\n  D: yes\n  E: "quoted 1.10"\n  F: 0x1F\n'
                               "  G: ''\n  H: 2.50   # a comment\n")
    assert dict(load_site(path).env) == {"A": "1.10", "B": "010", "C": "1e3", "D": "yes", "E": "quoted 1.10",
                                         "F": "0x1F", "G": "", "H": "2.50"}
    job = resolve_job(load_site(path), TOY, name="toy", run_dir=tmp_path / "run", workdir=ROOT)
    write_script(job)
    assert "export A=1.10\n" in (tmp_path / "run" / "job.env").read_text()


def test_a_site_config_can_ask_for_a_shared_group(tmp_path: Path) -> None:
    assert load_site(site_file(tmp_path, "shared_group: true\n")).shared_group is True
    with pytest.raises(ConfigError, match="shared_group: must be true or false, not a string"):
        load_site(site_file(tmp_path, "shared_group: group\n"))


def test_atomic_write_in_a_shared_folder_is_group_readable(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    make_run_dir(folder, shared=True)
    atomic_write(folder / "a.json", "{}")
    assert mode(folder) == 0o2750 and mode(folder / "a.json") == 0o640
