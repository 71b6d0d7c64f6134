"""Site configs and job scripts, fast: golden scripts, quoting of hostile values, validation errors.

The real Slurm runs these scripts in tests/test_slurm.py. Here: the text of the job script for
every shipped site config against tests/slurm/golden/ (HPWF_UPDATE_GOLDEN=1 rewrites them), a
script full of hostile values run with stub launchers (nothing but the launch may run), every
kind of site config error (one line, exit 2), a fake sbatch, and the job script's helpers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpwf.errors import ConfigError
from hpwf.slurm import SiteConfig, load_site
from hpwf.slurm import (
    clean_stale_shm,
    mpich_shm_names,
    render_script,
    resolve_job,
    sbatch_quote,
    signal_rank0,
    write_script,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "slurm" / "golden"
HOSTILE = ROOT / "tests" / "slurm" / "hostile.yaml"
TOY = ROOT / "tests" / "workflows" / "toy.py"
SITES = sorted((ROOT / "site_configs").glob("*.yaml")) + [HOSTILE]


def hpwf(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpwf", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120)


def golden_job(path: Path):  # type: ignore[no-untyped-def]
    site = dataclasses.replace(load_site(path), path=str(path.relative_to(ROOT)))  # the same in any checkout
    return resolve_job(site, "workflows/toy.py", name="toy", run_dir="/scratch/user/runs/toy",
                       workdir="/home/user/project", python=site.python or "/home/user/project/.venv/bin/python")


# --- golden job scripts ---------------------------------------------------------------------
@pytest.mark.parametrize("path", SITES, ids=[p.stem for p in SITES])
def test_job_script_matches_golden(path: Path) -> None:
    text = render_script(golden_job(path))
    golden = GOLDEN / f"{path.stem}.sh"
    if os.environ.get("HPWF_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"{path.name}: the job script changed; HPWF_UPDATE_GOLDEN=1 rewrites {golden}"


def test_every_site_config_has_a_golden_file() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.sh")) == sorted(p.stem for p in SITES)


@pytest.mark.parametrize("path", SITES, ids=[p.stem for p in SITES])
def test_job_script_is_valid_bash(path: Path) -> None:
    done = subprocess.run(["bash", "-n"], input=render_script(golden_job(path)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_example_site_configs_are_marked_as_examples() -> None:
    for path in (ROOT / "site_configs").glob("example-*.yaml"):
        assert path.read_text().startswith("# EXAMPLE ONLY"), path
        assert load_site(path).description.startswith("EXAMPLE"), path


# --- hostile values never run as shell -----------------------------------------------------
RECORDER = """#!{python}
import json, os, sys
with open(os.environ["HPWF_TEST_LOG"], "a") as log:
    log.write(json.dumps({{"who": {who!r}, "argv": sys.argv[1:], "cwd": os.getcwd(),
                          "env": {{k: os.environ.get(k) for k in ("HPWF_EVIL", "OMP_NUM_THREADS", "SRUN_CPUS_PER_TASK")}}}}) + "\\n")
if {who!r} == "srun":  # run the command srun was given, as srun would
    argv = sys.argv[1:]
    start = argv.index(os.environ["HPWF_TEST_PYTHON"])
    os.execv(argv[start], argv[start:])
"""


def test_hostile_values_reach_the_launch_verbatim_and_never_run(tmp_path: Path) -> None:
    evil = "a b; touch PWNED_DIR $(touch PWNED_DIR2) `touch PWNED_DIR3` 'q' \"dq\" & | > <"
    home = tmp_path / "home"
    stubs, pydir, workdir = tmp_path / "stubs", tmp_path / evil / "bin", tmp_path / f"work {evil}"
    for folder in (home, stubs, pydir, workdir):
        folder.mkdir(parents=True)
    python = pydir / "python"
    for path, who in ((stubs / "srun", "srun"), (stubs / "module", "module"), (python, "python")):
        path.write_text(RECORDER.format(python=sys.executable, who=who))
        path.chmod(0o755)
    site = load_site(HOSTILE)
    job = resolve_job(site, f"wf {evil}.py", name=f"toy {evil}", run_dir=tmp_path / f"runs {evil}",
                      workdir=workdir, python=str(python))
    script = write_script(job)  # job.sh, and job.env with the env values
    assert "$(touch PWNED_ENV)" not in script.read_text()
    log = tmp_path / "calls.jsonl"
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(home), "HPWF_TEST_LOG": str(log),
           "HPWF_TEST_PYTHON": str(python)}
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [p for p in tmp_path.rglob("PWNED*")], "a hostile value ran as shell"
    assert home.is_dir()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["who"] for c in calls] == ["module", "module", "srun", "python"]
    assert calls[0]["argv"] == ["load", "gcc; touch PWNED_MODULE"]
    assert calls[1]["argv"] == ["load", "$(touch PWNED_MODULE2)\nnext"]
    assert calls[2]["argv"] == [
        "--kill-on-bad-exit=1", "--mpi=pmi2", "--label; touch PWNED_ARG", "$(touch PWNED_ARG2)",
        "multi\nline `touch PWNED_ARG3`", str(python), "-P", "-m", "hpwf", "run", str(workdir / f"wf {evil}.py"),
        "--backend", "mpi", "--run-dir", str(tmp_path / f"runs {evil}"),
        "--storage", "postgresql://us;er$(x)@db.example/hpwf",
    ]
    assert calls[3]["argv"] == calls[2]["argv"][6:]
    assert calls[3]["cwd"] == str(workdir)
    assert calls[3]["env"] == {"HPWF_EVIL": "$(touch PWNED_ENV); rm -rf ~\nsecond line 'q' \"dq\" `x`",
                               "OMP_NUM_THREADS": "4", "SRUN_CPUS_PER_TASK": "4"}


def test_sbatch_lines_use_sbatch_quoting() -> None:
    text = render_script(golden_job(HOSTILE))
    header = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert '#SBATCH --partition="gpu; rm -rf ~"' in header
    assert '#SBATCH --qos="`touch PWNED_QOS` \\"quoted\\" \'single\' #hash"' in header
    assert "#SBATCH --constraint=\"a&b|c\"" in header
    assert sbatch_quote("gpu-a100_x") == "gpu-a100_x"
    assert sbatch_quote('back\\slash "q"') == '"back\\\\slash \\"q\\""'
    with pytest.raises(ConfigError, match="one line"):
        sbatch_quote("two\nlines")


@pytest.mark.parametrize("run_dir", ["/scratch/a\nb", "/scratch/a\rb"])
def test_a_line_break_in_an_sbatch_value_is_refused(run_dir: str) -> None:
    job = resolve_job(SiteConfig(scheduler="slurm", launcher="srun"), "wf.py", name="wf", run_dir=run_dir,
                      ntasks_per_node=2, workdir="/w")
    with pytest.raises(ConfigError, match="one line"):
        render_script(job)


# --- validation: one line naming the file and the key -------------------------------------
CASES = [
    ("scheduler: slurm\nlauncher: srun\npartiton: gpu\n", "partiton: unknown key; did you mean 'partition'?"),
    ("scheduler: slurm\nlauncher: srun\nfrobnicate: 1\n", "frobnicate: unknown key; known keys: scheduler, launcher,"),
    ("launcher: srun\n", "scheduler: missing (required: slurm or local)"),
    ("scheduler: slurm\n", "launcher: missing (required: srun or mpirun)"),
    ("scheduler: slurm\nlauncher:\n", "launcher: missing (required: srun or mpirun)"),
    ("scheduler: pbs\nlauncher: mpirun\n", "scheduler: 'pbs' is not one of: slurm, local"),
    ("scheduler: slurm\nlauncher: aprun\n", "launcher: 'aprun' is not one of: srun, mpirun"),
    ("scheduler: slurm\nlauncher: srun\nnodes: two\n", "nodes: must be an integer, not a string"),
    ("scheduler: slurm\nlauncher: srun\nnodes: true\n", "nodes: must be an integer, not a boolean"),
    ("scheduler: slurm\nlauncher: srun\nnodes: 1.5\n", "nodes: must be an integer, not a number"),
    ("scheduler: slurm\nlauncher: srun\nntasks_per_node: 0\n", "ntasks_per_node: must be >= 1, not 0"),
    ("scheduler: slurm\nlauncher: srun\npartition: [a, b]\n", "partition: must be a string, not a list"),
    ("scheduler: slurm\nlauncher: srun\nmodules: gcc\n", "modules: must be a list of strings, not a string"),
    ("scheduler: slurm\nlauncher: srun\nmodules: [gcc, 12]\n", "modules[1]: must be a string, not an integer"),
    ("scheduler: slurm\nlauncher: srun\nenv: [A]\n", "env: must be a mapping of NAME: value, not a list"),
    ("scheduler: slurm\nlauncher: srun\nenv: {1X: a}\n", "env.1X: is not a valid environment variable name"),
    ("scheduler: slurm\nlauncher: srun\nenv: {X: [1]}\n", "env.X: must be a string or a number, not a list"),
    ("scheduler: slurm\nlauncher: srun\npartition: \"gpu\\nhalf\"\n", "partition: must be one line with no control characters"),
    ("scheduler: slurm\nlauncher: srun\naccount: \"  \"\n", "account: is empty"),
    ("scheduler: slurm\nlauncher: srun\nsetup: [\"a\\nb\"]\n", "setup[0]: must be one line (make each line its own item)"),
    ("scheduler: slurm\nlauncher: srun\nsbatch: [exclusive]\n", "sbatch[0]: 'exclusive' is not an sbatch option (like --exclusive)"),
    ("scheduler: slurm\nlauncher: srun\nsbatch: [\"--x\\n--y\"]\n", "sbatch[0]: must be one line with no control characters"),
    ("scheduler: slurm\nlauncher: srun\ntime: 1h\n", "time: '1h' is not a walltime sbatch takes (30, 30:00, 01:00:00, 1-12, 1-12:00:00)"),
    ("scheduler: slurm\nlauncher: srun\nmemory: lots\n", "memory: 'lots' is not a size like 64G, 512M or 0 (all of it)"),
    ("scheduler: slurm\nlauncher: srun\nmpi: \"pmi2; x\"\n", "mpi: 'pmi2; x' is not an MPI plugin type like pmi2, pmix or cray_shasta"),
    ("scheduler: slurm\nlauncher: mpirun\nmpi: pmi2\n", "mpi: is srun's --mpi type; it goes with launcher: srun only"),
    ("scheduler: slurm\nlauncher: srun\nmpirun: /x/mpirun\n", "mpirun: goes with launcher: mpirun only"),
    ("scheduler: local\nlauncher: srun\n", "launcher: srun needs scheduler: slurm (use mpirun with scheduler: local)"),
    ("scheduler: local\nlauncher: mpirun\npartition: gpu\n", "partition: is a Slurm setting; it needs scheduler: slurm"),
    ("scheduler: local\nlauncher: mpirun\nnodes: 2\n", "nodes: scheduler: local runs on this machine only (nodes: 1)"),
    ("scheduler: slurm\nlauncher: srun\nstorage: redis://x\n", "storage: 'redis://x' is not a storage URL"),
    ("scheduler: slurm\nlauncher: srun\nstorage: memory\n", "storage: 'memory' does not survive the job"),
    ("scheduler: slurm\nlauncher: srun\nmax_requeues: -1\n", "max_requeues: must be >= 0, not -1"),
    ("scheduler: slurm\nlauncher: srun\nwarning_seconds: 99999\n", "warning_seconds: must be at most 65535"),
    ("- scheduler\n", "the file must be a mapping of keys"),
    ("scheduler: slurm\n  launcher: [srun\n", "line 2: not valid YAML:"),
]


@pytest.mark.parametrize("text,problem", CASES, ids=[c[1].split(":")[0] + f"-{i}" for i, c in enumerate(CASES)])
def test_bad_site_config_names_file_and_key(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_site(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {problem}"), message
    assert "\n" not in message


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such site config"):
        load_site(tmp_path / "nope.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"bin\.yaml: cannot read"):
        load_site(tmp_path / "bin.yaml")


def test_site_config_is_frozen_and_typed() -> None:
    site = load_site(ROOT / "site_configs" / "slurm-generic.yaml")
    assert (site.scheduler, site.launcher, site.mpi, site.ntasks_per_node) == ("slurm", "srun", "pmi2", 4)
    assert site.modules == () and site.env == () and site.max_requeues == 3
    with pytest.raises(AttributeError):
        site.partition = "x"  # type: ignore[misc]


@pytest.mark.parametrize("kwargs,problem", [
    ({"ntasks_per_node": 1}, "needs at least 2 ranks"),
    ({"nodes": 0}, "--nodes must be >= 1, not 0"),
    ({"time": "1h30"}, "--time '1h30': not a walltime"),
    ({"time": "00:04:00"}, "--time 00:04:00: must be longer than the 300 s warning"),
])
def test_resolve_job_refuses(kwargs: dict, problem: str) -> None:  # type: ignore[type-arg]
    site = load_site(ROOT / "site_configs" / "slurm-generic.yaml")
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(")):
        resolve_job(site, "wf.py", name="wf", **kwargs)


def test_resolution_order_command_line_then_site_then_default() -> None:
    site = SiteConfig(scheduler="slurm", launcher="srun", gpus_per_node=4, cpus_per_node=64, time="02:00:00")
    job = resolve_job(site, "wf.py", name="wf", workdir="/w")
    assert (job.nodes, job.ntasks_per_node, job.cpus_per_task, job.time) == (1, 4, 16, "02:00:00")
    assert job.python == sys.executable and job.run_dir.parent == Path("/w/runs")
    job = resolve_job(site, "wf.py", name="wf", nodes=3, ntasks_per_node=8, time="00:30:00", workdir="/w")
    assert (job.nodes, job.ntasks_per_node, job.cpus_per_task, job.ranks, job.time) == (3, 8, 8, 24, "00:30:00")
    with pytest.raises(ConfigError, match="ntasks_per_node: not set"):
        resolve_job(SiteConfig(scheduler="slurm", launcher="srun"), "wf.py", name="wf")


# --- the command line ------------------------------------------------------------------------
def test_cli_bad_site_config_exits_2_with_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("scheduler: slurm\nlauncher: srun\nqos: [a]\n")
    done = hpwf("submit", str(TOY), "--site", str(site), "--dry-run")
    assert done.returncode == 2
    assert done.stderr.strip() == f"hpwf: error: {site}: qos: must be a string, not a list"
    assert done.stdout == ""


@pytest.mark.parametrize("args,problem", [
    (["--ntasks-per-node", "1"], "needs at least 2 ranks"),
    (["--time", "soon"], "--time 'soon': not a walltime"),
    (["--nodes", "x"], "argument --nodes: invalid int value"),
])
def test_cli_bad_options_exit_2(args: list[str], problem: str) -> None:
    done = hpwf("submit", str(TOY), "--site", "site_configs/slurm-generic.yaml", "--dry-run", *args)
    assert done.returncode == 2 and problem in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cli_bad_workflow_fails_at_submit_time(tmp_path: Path) -> None:
    wf = tmp_path / "wf.py"
    wf.write_text("import hpwf\nsearch = hpwf.Search(direction='up', n_trials=3)\ndef objective(t):\n    return 0\n")
    done = hpwf("submit", str(wf), "--site", "site_configs/slurm-generic.yaml", "--dry-run")
    assert done.returncode == 2 and done.stderr.startswith(f"hpwf: error: {wf}:2:")


def test_dry_run_prints_the_script_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = hpwf("submit", str(TOY), "--site", "site_configs/slurm-generic.yaml", "--run-dir", str(run_dir),
                "--nodes", "2", "--ntasks-per-node", "3", "--time", "00:20:00", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("#!/bin/bash\n#SBATCH --job-name=hpwf-toy\n#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=3\n")
    assert "#SBATCH --time=00:20:00\n" in done.stdout and f"#SBATCH --output={run_dir}/slurm-%j.out\n" in done.stdout
    assert f"hpwf_python={sys.executable}\n" in done.stdout
    assert not run_dir.exists()


def fake_sbatch(folder: Path, answer: str, code: int = 0) -> dict[str, str]:
    folder.mkdir()
    stub = folder / "sbatch"
    stub.write_text(f"#!/bin/sh\necho \"$PWD\" \"$@\" > {folder}/args\n"
                    + (f"echo '{answer}'\n" if code == 0 else f"echo '{answer}' >&2\n") + f"exit {code}\n")
    stub.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def test_submit_writes_the_script_and_prints_the_job_id(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = fake_sbatch(tmp_path / "bin", "4242;cluster")
    args = ("submit", str(TOY), "--site", "site_configs/slurm-generic.yaml", "--run-dir", str(run_dir))
    done = hpwf(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "4242\n"
    assert "submitted job 4242" in done.stderr
    script = run_dir / "job.sh"
    assert (tmp_path / "bin" / "args").read_text() == f"{ROOT} --parsable {script}\n"
    assert script.read_text() == hpwf(*args, "--dry-run").stdout
    assert os.access(script, os.X_OK)


def test_submit_reports_a_refused_job_in_one_line(tmp_path: Path) -> None:
    env = fake_sbatch(tmp_path / "bin", "sbatch: error: Batch job submission failed: Invalid partition name specified", 1)
    done = hpwf("submit", str(TOY), "--site", "site_configs/slurm-generic.yaml", "--run-dir", str(tmp_path / "r"), env=env)
    assert done.returncode == 1 and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if not line.startswith("[hpwf] warning:")]  # /tmp run dir
    assert errors == ["hpwf: error: sbatch refused the job: "
                      "sbatch: error: Batch job submission failed: Invalid partition name specified"]


def test_local_site_runs_the_script_here(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = hpwf("submit", str(TOY), "--site", "site_configs/local.yaml", "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout)
    deadline = time.time() + 120
    while Path(f"/proc/{pid}").exists() and _state(pid) != "Z" and time.time() < deadline:
        time.sleep(0.5)
    log = (run_dir / "job.out").read_text()
    assert "hpwf run exited with code 0" in log, log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] + summary["pruned"] == 12 and summary["slots"] == 2


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


# --- the job script's helpers ----------------------------------------------------------------
FAKE_MAIN = """import os, signal, sys, time
signal.signal(signal.SIGUSR1, lambda *_: open(os.environ["MARK"], "w").write("USR1"))
open(os.environ["MARK"] + ".ready", "w").close()
time.sleep(30)
"""


def test_signal_goes_to_rank_0_of_the_tagged_step_only(tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "hpwf"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(FAKE_MAIN)
    procs = {}
    for name, extra in [("rank0", {"PMI_RANK": "0", "HPWF_STEP_TOKEN": "tok"}),
                        ("rank1", {"PMI_RANK": "1", "HPWF_STEP_TOKEN": "tok", "SLURM_PROCID": "0"}),
                        ("srun0", {"SLURM_PROCID": "0", "HPWF_STEP_TOKEN": "tok"}),  # rank 0 by SLURM_PROCID
                        ("other", {"PMI_RANK": "0", "HPWF_STEP_TOKEN": "another"})]:
        env = {**os.environ, **extra, "PYTHONPATH": str(tmp_path / "fake"), "MARK": str(tmp_path / name)}
        procs[name] = subprocess.Popen([sys.executable, "-m", "hpwf", "run", "x"], env=env, cwd=tmp_path)
    try:
        for name in procs:
            _wait_for(tmp_path / f"{name}.ready")
        pids = signal_rank0("USR1", "tok", wait_s=0)
        assert sorted(pids) == sorted([procs["rank0"].pid, procs["srun0"].pid])
        _wait_for(tmp_path / "rank0")
        _wait_for(tmp_path / "srun0")
        time.sleep(0.3)
        assert not (tmp_path / "rank1").exists() and not (tmp_path / "other").exists()
        assert signal_rank0("USR1", "nobody", wait_s=0.3) == []
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_clean_stale_shm_removes_this_jobs_mpich_segments_only(tmp_path: Path) -> None:
    mine = mpich_shm_names("77", steps=4)
    files = [f"{mine[0]}0", f"{mine[7]}1", f"{mpich_shm_names('78', steps=1)[0]}0", "unrelated", "mpich_shm_zz_0"]
    for name in files:
        (tmp_path / name).write_text("x")
    removed = clean_stale_shm("77", tmp_path)
    assert sorted(p.name for p in removed) == sorted(files[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files[2:])


def test_helper_usage() -> None:
    done = subprocess.run([sys.executable, "-m", "hpwf.slurm", "frobnicate"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage:" in done.stderr


def test_template_placeholders_are_all_filled() -> None:
    text = render_script(golden_job(ROOT / "site_configs" / "slurm-generic.yaml"))
    assert "{{" not in text and "}}" not in text
