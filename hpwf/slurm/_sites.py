"""Site configs: what differs between clusters, in one YAML file read into one frozen `SiteConfig`.

A site config names the scheduler (``slurm`` or ``local``), where jobs go (partition, account,
qos, constraint), the node shape (cores, GPUs, memory, ranks per node), how ranks are launched
(``srun --mpi=TYPE`` or ``mpirun``), how the environment is prepared (modules, variables, setup
lines), the Python to use, the default study storage and extra ``#SBATCH`` lines.
``site_configs/`` ships ``local.yaml``, ``slurm-generic.yaml`` and examples of large GPU systems.

Every key is checked when the file is loaded. An unknown key, a wrong type or a missing
required value raises `ConfigError` with one line, ``"<file>: <key>: <problem>"``; the CLI
prints it and exits 2.

Example:
    >>> site = load_site("site_configs/slurm-generic.yaml")  # doctest: +SKIP
    >>> site.scheduler, site.launcher
    ('slurm', 'srun')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from hpwf.errors import ConfigError
from hpwf.secrets import redact, refuse_password

SCHEDULERS = ("slurm", "local")
LAUNCHERS = ("srun", "mpirun")
REQUIRED = ("scheduler", "launcher")
SLURM_ONLY = ("partition", "account", "qos", "constraint", "gpus_per_node", "memory", "sbatch",
              "warning_seconds", "max_requeues", "ensemble_array", "array_throttle", "dask_min_jobs", "dask_max_jobs",
              "dask_processes")

# Every form sbatch's --time accepts: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_TIME_FORMS = (
    (re.compile(r"(\d+)"), ("minutes",)),  # matched against whole strings (fullmatch)
    (re.compile(r"(\d+):(\d+)"), ("minutes", "seconds")),
    (re.compile(r"(\d+):(\d+):(\d+)"), ("hours", "minutes", "seconds")),
    (re.compile(r"(\d+)-(\d+)"), ("days", "hours")),
    (re.compile(r"(\d+)-(\d+):(\d+)"), ("days", "hours", "minutes")),
    (re.compile(r"(\d+)-(\d+):(\d+):(\d+)"), ("days", "hours", "minutes", "seconds")),
)
_UNIT_S = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
_MEMORY = re.compile(r"\d+[KMGT]?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SiteConfig:
    """One cluster's settings, validated. Build it with `load_site` (or directly, for tests).

    Keys (all optional but ``scheduler`` and ``launcher``):

    - ``scheduler``: ``slurm`` (``hpwf submit`` calls ``sbatch``) or ``local`` (it starts the
      job script on this machine, with no scheduler).
    - ``launcher``: ``srun`` or ``mpirun``; ``mpi`` is srun's ``--mpi`` type (e.g. ``pmi2``,
      ``pmix``; default: the cluster's ``MpiDefault``); ``mpirun`` is the mpirun to call (default:
      the one beside ``python`` if there is one, else ``mpirun`` on ``PATH``);
      ``launcher_args`` are extra arguments for the launcher.
    - ``partition``, ``account``, ``qos``, ``constraint``: ``#SBATCH`` values.
    - ``nodes``, ``ntasks_per_node``: defaults for ``--nodes`` and ``--ntasks-per-node``
      (``ntasks_per_node`` defaults to ``gpus_per_node``, else ``cpus_per_node``).
    - ``cpus_per_node``, ``gpus_per_node``, ``memory`` (``64G``, ``0`` = all of it): the node shape;
      cores are shared out as ``--cpus-per-task``, GPUs asked for with ``--gpus-per-node``.
    - ``time``: the default walltime, in any form sbatch takes (``30`` minutes, ``MM:SS``,
      ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``).
    - ``python``: the Python inside the allocation (default: the one running ``hpwf submit``).
    - ``modules``: ``module load`` each; ``env``: variables to export, each value kept exactly as
      written (``1.10`` stays ``1.10``) and written to ``RUN_DIR/job.env`` (mode 0600), never into
      ``job.sh``; ``setup``: shell lines run before the launch, as written (the one key whose
      text is code, for what the others cannot say, e.g. ``source /opt/conda/etc/profile.d/conda.sh``).
    - ``storage``: the default Optuna storage: ``null`` (a journal file in the run directory,
      on the shared filesystem), ``journal:PATH``, or ``postgresql://USER@HOST/DB`` /
      ``sqlite:///...``. A URL with a password is refused: the password goes in ``~/.pgpass``.
    - ``shared_group``: ``true`` makes run directories readable by their group (``2750``, files
      ``0640``) instead of by you only (``0700``); the group never gets to write.
    - ``sbatch``: extra ``#SBATCH`` options, one per item, e.g. ``--exclusive``.
    - ``warning_seconds``: Slurm sends USR1 this long before the walltime (the run stops
      and the job requeues); ``max_requeues``: how many times the job may requeue itself.
    - ``ensemble_array``: ``hpwf submit`` trains the ensemble's members as a Slurm job array
      (one member per task, after the search job) instead of inside the search job;
      ``array_throttle``: at most this many members run at once (sbatch's ``--array=0-K%N``).
    - ``dask_min_jobs``, ``dask_max_jobs``: ``--backend dask-slurm`` keeps between this many
      Slurm jobs of Dask workers; ``dask_processes``: worker processes (agents) per job
      (default ``ntasks_per_node``, else ``cpus_per_node``, else 1).
    - ``description``: free text.
    """

    scheduler: str
    launcher: str
    path: str = "<site config>"  # the file it came from, for messages
    description: str = ""
    mpi: str | None = None
    mpirun: str | None = None
    launcher_args: tuple[str, ...] = ()
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int = 1
    ntasks_per_node: int | None = None
    cpus_per_node: int | None = None
    gpus_per_node: int | None = None
    memory: str | None = None
    time: str = "01:00:00"
    python: str | None = None
    modules: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    setup: tuple[str, ...] = ()
    storage: str | None = None
    sbatch: tuple[str, ...] = ()
    warning_seconds: int = 300
    max_requeues: int = 3
    shared_group: bool = False
    ensemble_array: bool = False
    array_throttle: int | None = None
    dask_min_jobs: int = 1
    dask_max_jobs: int = 1
    dask_processes: int | None = None

    def __post_init__(self) -> None:
        _check(self)


# The type of each key as it is written in YAML: (python type(s), what to call it in messages).
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "scheduler": ((str,), "a string"), "launcher": ((str,), "a string"),
    "description": ((str,), "a string"), "mpi": ((str,), "a string"), "mpirun": ((str,), "a string"),
    "launcher_args": ((list,), "a list of strings"),
    "partition": ((str,), "a string"), "account": ((str,), "a string"), "qos": ((str,), "a string"),
    "constraint": ((str,), "a string"),
    "nodes": ((int,), "an integer"), "ntasks_per_node": ((int,), "an integer"),
    "cpus_per_node": ((int,), "an integer"), "gpus_per_node": ((int,), "an integer"),
    "memory": ((str, int), "a size like 64G"), "time": ((str, int), "a walltime like 01:00:00"),
    "python": ((str,), "a string"), "modules": ((list,), "a list of strings"),
    "env": ((dict,), "a mapping of NAME: value"), "setup": ((list,), "a list of strings"),
    "storage": ((str,), "a storage URL"), "sbatch": ((list,), "a list of strings"),
    "warning_seconds": ((int,), "an integer"), "max_requeues": ((int,), "an integer"),
    "shared_group": ((bool,), "true or false"),
    "ensemble_array": ((bool,), "true or false"), "array_throttle": ((int,), "an integer"),
    "dask_min_jobs": ((int,), "an integer"), "dask_max_jobs": ((int,), "an integer"),
    "dask_processes": ((int,), "an integer"),
}
KEYS = tuple(_KINDS)


def _check(site: SiteConfig) -> None:
    """Values that have the right type but are wrong, named by their key."""

    def bad(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{site.path}: {key}: {problem}")

    if site.scheduler not in SCHEDULERS:
        raise bad("scheduler", f"{site.scheduler!r} is not one of: {', '.join(SCHEDULERS)}")
    if site.launcher not in LAUNCHERS:
        raise bad("launcher", f"{site.launcher!r} is not one of: {', '.join(LAUNCHERS)}")
    if site.launcher == "srun" and site.scheduler != "slurm":
        raise bad("launcher", "srun needs scheduler: slurm (use mpirun with scheduler: local)")
    if site.mpi is not None and site.launcher != "srun":
        raise bad("mpi", "is srun's --mpi type; it goes with launcher: srun only")
    if site.mpirun is not None and site.launcher != "mpirun":
        raise bad("mpirun", "goes with launcher: mpirun only")
    if site.scheduler == "local":
        defaults = {f.name: f.default for f in fields(SiteConfig)}
        for key in SLURM_ONLY:
            if getattr(site, key) != defaults[key]:
                raise bad(key, "is a Slurm setting; it needs scheduler: slurm")
        if site.nodes != 1:
            raise bad("nodes", "scheduler: local runs on this machine only (nodes: 1)")
    # Values that end up on #SBATCH lines: a line break would end the comment and start shell
    # code, so they must be one line (they are quoted for sbatch as well).
    for key in ("partition", "account", "qos", "constraint", "memory", "time", "description"):
        value = getattr(site, key)
        if value is not None and _CONTROL.search(value):
            raise bad(key, "must be one line with no control characters")
        if value is not None and key != "description" and not value.strip():
            raise bad(key, "is empty")
    for i, line in enumerate(site.sbatch):
        if _CONTROL.search(line):
            raise bad(f"sbatch[{i}]", "must be one line with no control characters")
        if not line.startswith("-"):
            raise bad(f"sbatch[{i}]", f"{line!r} is not an sbatch option (like --exclusive)")
    for i, line in enumerate(site.setup):
        if "\n" in line or "\r" in line:
            raise bad(f"setup[{i}]", "must be one line (make each line its own item)")
    for name, _ in site.env:
        if not _ENV_NAME.fullmatch(name):
            raise bad(f"env.{_show_key(name)}", "is not a valid environment variable name")
    for key in ("mpi", "mpirun", "python", "storage"):
        value = getattr(site, key)
        if value is not None and not value.strip():
            raise bad(key, "is empty")
    if site.mpi is not None and not re.fullmatch(r"[A-Za-z0-9_]+", site.mpi):
        raise bad("mpi", f"{site.mpi!r} is not an MPI plugin type like pmi2, pmix or cray_shasta")
    for key in ("nodes", "ntasks_per_node", "cpus_per_node", "max_requeues", "warning_seconds", "array_throttle",
                "dask_min_jobs", "dask_max_jobs", "dask_processes"):
        value = getattr(site, key)
        minimum = 0 if key in ("max_requeues", "warning_seconds", "dask_min_jobs") else 1
        if value is not None and value < minimum:
            raise bad(key, f"must be >= {minimum}, not {value}")
    if site.dask_max_jobs < site.dask_min_jobs:
        raise bad("dask_max_jobs", f"must be >= dask_min_jobs ({site.dask_min_jobs}), not {site.dask_max_jobs}")
    if site.warning_seconds > 65535:
        raise bad("warning_seconds", f"must be at most 65535 (Slurm's limit for --signal), not {site.warning_seconds}")
    if site.gpus_per_node is not None and site.gpus_per_node < 0:
        raise bad("gpus_per_node", f"must be >= 0, not {site.gpus_per_node}")
    if site.memory is not None and not _MEMORY.fullmatch(site.memory):
        raise bad("memory", f"{site.memory!r} is not a size like 64G, 512M or 0 (all of it)")
    if walltime_seconds(site.time) is None:
        raise bad("time", f"{site.time!r} is not a walltime sbatch takes (30, 30:00, 01:00:00, 1-12, 1-12:00:00)")
    if site.storage is not None:
        check_storage(site.storage, f"{site.path}: storage")
        refuse_password(site.storage, f"{site.path}: storage:")


def walltime_seconds(text: str) -> int | None:
    """A walltime in seconds, in any form sbatch's ``--time`` takes; None if it reads like none.

    The forms: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``.
    Zero is no walltime (sbatch reads it as "no limit"), so it is refused too.

    Example:
        >>> [walltime_seconds(t) for t in ("30", "5:30", "01:00:00", "1-12", "1-0:30", "2-00:00:01", "1h", "30\\n")]
        [1800, 330, 3600, 129600, 88200, 172801, None, None]
    """
    for pattern, units in _TIME_FORMS:
        match = pattern.fullmatch(text)
        if match:
            seconds = sum(int(value) * _UNIT_S[unit] for value, unit in zip(match.groups(), units))
            return seconds or None
    return None


def check_storage(url: str, where: str) -> None:
    """Refuse what is clearly not an Optuna storage hpwf can open (nothing is connected to)."""
    if url == "memory":
        raise ConfigError(f"{where}: 'memory' does not survive the job; use a journal file or a database")
    ok = url.startswith(("journal:", "sqlite:///", "postgresql://", "postgresql+", "mysql://", "mysql+")) \
        or (url.endswith((".journal", ".log")) and "://" not in url)
    if not ok or _CONTROL.search(url):
        raise ConfigError(f"{where}: {redact(url)!r} is not a storage URL (journal:PATH on the shared filesystem, "
                          "postgresql://USER@HOST/DB, sqlite:///PATH)")


def _show_key(key: Any) -> str:
    return key if isinstance(key, str) and not _CONTROL.search(key) else repr(key)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)
