"""The command line: ``hpwf run | resume | replay | status | report``. Bad input exits 2 with one line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from hpwf.errors import ConfigError, RunError
from hpwf.progress import say


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other input error
        raise ConfigError(f"{self.prog}: {message}")


class _Version(argparse.Action):
    """``--version``, looked up only when asked (`importlib.metadata` is slow to import)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        print(f"hpwf {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hpwf", description="Hyperparameter search and ensemble workflows on HPC clusters.")
    parser.add_argument("--version", action=_Version, help="show hpwf's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="run a workflow file's search to its budget")
    p.add_argument("workflow", type=Path)
    p.add_argument("--backend", help="local (default) | mpi | mpirun | dask | dask-mpi | dask-slurm")
    p.add_argument("--scheduler", help="the Dask scheduler address for --backend dask")
    p.add_argument("--interface", help="network interface agents on other hosts reach the coordinator by "
                   "(default: the one on the route to them; env HPWF_INTERFACE)")
    p.add_argument("--site", type=Path, help="the site config for --backend dask-slurm (worker jobs' shape)")
    p.add_argument("--workers", type=int, help="agents for the local backend (default: cores)")
    p.add_argument("--n-trials", type=int, help="trials that must finish (overrides the workflow)")
    p.add_argument("--threads-per-trial", type=int, help="threads per rank of a trial (default: cores / agents)")
    p.add_argument("--timeout", type=float, help="time budget in seconds (overrides the workflow)")
    p.add_argument("--run-dir", type=Path, help="default: runs/<workflow>-<time>")
    p.add_argument("--storage", help="Optuna storage URL (default: a journal file in the run dir)")
    p.add_argument("--seed", type=int)
    p.add_argument("--shared-group", action="store_true",
                   help="the run dir's group may read it (2750, files 0640); default: you only (0700)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-ensemble", action="store_true", help="run the search only (members run as a Slurm job array)")

    p = sub.add_parser("resume", help="continue an interrupted run to its budget")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--backend")
    p.add_argument("--scheduler")
    p.add_argument("--interface", help="network interface agents on other hosts reach the coordinator by "
                   "(default: the one on the route to them; env HPWF_INTERFACE)")
    p.add_argument("--site", type=Path, help="the site config for --backend dask-slurm")
    p.add_argument("--workers", type=int)
    p.add_argument("--n-trials", type=int, help="raise (or lower) the budget")
    p.add_argument("--threads-per-trial", type=int, help="threads per rank of a trial (default: cores / agents)")
    p.add_argument("--timeout", type=float)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--no-ensemble", action="store_true", help="resume the search only")

    p = sub.add_parser("ensemble", help="build (or rebuild) a workflow's ensemble from a search run's current results")
    p.add_argument("workflow", type=Path)
    p.add_argument("--from", dest="source", type=Path, required=True, help="the search's run dir")
    p.add_argument("--top-k", type=int, help="members cycle over the k best configurations")
    p.add_argument("--members", type=int, help="how many members")
    p.add_argument("--backend")
    p.add_argument("--scheduler")
    p.add_argument("--interface", help="network interface agents on other hosts reach the coordinator by "
                   "(default: the one on the route to them; env HPWF_INTERFACE)")
    p.add_argument("--workers", type=int)
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("replay", help="train one member from scratch along the schedule PBT found for its best "
                       "final segment (or --trial N's), in a new run dir")
    p.add_argument("source", type=Path, metavar="run_dir", help="the PBT run")
    p.add_argument("--trial", type=int, help="the PBT segment whose schedule to replay (default: the best final one)")
    p.add_argument("--run-dir", type=Path, required=True, help="the replay's own run dir")
    p.add_argument("--backend", help="as for run (default: local)")
    p.add_argument("--scheduler", help="the Dask scheduler address for --backend dask")
    p.add_argument("--interface", help="as for run")
    p.add_argument("--workers", type=int)
    p.add_argument("--quiet", action="store_true")

    from hpwf.slurm import add_member_parser, add_submit_parser

    add_submit_parser(sub)
    add_member_parser(sub)

    store_help = "the study's store, when run.json names one outside the run directory"
    p = sub.add_parser("status", help="counts by state, best trial and params")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--json", action="store_true")
    p.add_argument("--storage", help=store_help)

    p = sub.add_parser("report", help="write trials.csv and report.html into the run dir")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--storage", help=store_help)

    p = sub.add_parser("dashboard", help="serve optuna-dashboard on the run's study (live while it runs)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--storage", help=store_help)
    p.add_argument("--writable", action="store_true",
                   help="let the dashboard change the study (tell trials, notes, delete); default: read only")
    p.add_argument("--port", type=int, default=8080, help="default: 8080")
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    return parser


def _version() -> str:
    """The installed distribution's version, else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hpwf")
    except PackageNotFoundError:
        from hpwf import __version__

        return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hpwf`` command."""
    try:
        args = build_parser().parse_args(argv)
        code = _dispatch(args)
        sys.stdout.flush()  # here, so that a reader gone early is seen below, not at exit
        return code
    except BrokenPipeError:
        return _reader_gone()
    except ConfigError as exc:
        say(f"hpwf: error: {exc}")
        return 2
    except RunError as exc:
        say(f"hpwf: run stopped: {exc}")
        return 1


def _reader_gone() -> int:
    """stdout's reader left (``hpwf status RUN | head -1``): end quietly, as Unix tools do (128 + SIGPIPE)."""
    import os
    import signal

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
    except (OSError, ValueError):
        pass
    return 128 + signal.SIGPIPE


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("run", "resume", "ensemble", "replay"):
        return _run_or_resume(args)
    if args.command == "submit":
        from hpwf.slurm import submit_command

        return submit_command(args)
    if args.command == "ensemble-member":
        from hpwf.slurm import member_command

        return member_command(args)
    if args.command == "status":
        from hpwf.report import format_status, status  # (not through hpwf.api: status needs no engine, no Optuna)

        info = status(args.run_dir, args.storage)

        print(json.dumps(info, indent=1, default=str) if args.json else format_status(info))
        return 0
    if args.command == "report":
        from hpwf.report import write_report

        paths = write_report(args.run_dir, args.storage)
        for path in paths:
            print(path)
        return 0
    if args.command == "dashboard":
        from hpwf.report import serve_dashboard

        return serve_dashboard(args.run_dir, host=args.host, port=args.port, storage=args.storage,
                               writable=args.writable)
    raise AssertionError(args.command)


def _run_or_resume(args: argparse.Namespace) -> int:
    """Every rank of an MPI job gets here; rank 0 coordinates, the others serve as agents.

    Every rank runs under the run directory's umask (`hpwf.rundir._perms`), and a run directory that
    others can write is refused on every rank before MPI starts.
    """
    from hpwf.rundir import RunRecord, check_run_trusted, is_shared, run_umask
    from hpwf.secrets import refuse_password

    workers = _positive("--workers", args.workers)
    name, recorded = args.backend or "local", None
    if args.command == "run":
        refuse_password(args.storage, "--storage")
        shared = args.shared_group
    elif args.command == "replay":
        check_run_trusted(args.source)
        shared = False
    else:
        folder = args.run_dir if args.command == "resume" else args.source
        check_run_trusted(folder)
        shared = is_shared(folder)
    if args.command == "resume":
        recorded = RunRecord.load(args.run_dir)
        name, workers = args.backend or recorded.backend, workers or recorded.options.get("workers")
    with run_umask(shared):
        return _start(args, name, workers)


def _start(args: argparse.Namespace, name: str, workers: int | None) -> int:
    from hpwf.backends import make_backend

    backend = make_backend(name, workers=workers, scheduler=args.scheduler, interface=args.interface,
                           site=getattr(args, "site", None), run_dir=getattr(args, "run_dir", None))
    if getattr(backend, "rank", 0) != 0:
        return backend.serve_rank()  # type: ignore[attr-defined]  # an agent: no Optuna imported
    from hpwf import api
    code = 2
    try:
        if args.command == "run":
            result = api.run(
                args.workflow, backend=backend,
                n_trials=args.n_trials, timeout=args.timeout, run_dir=args.run_dir, storage=args.storage,
                seed=args.seed, progress=not args.quiet, shared_group=args.shared_group, ensemble=not args.no_ensemble,
                threads_per_trial=_positive("--threads-per-trial", args.threads_per_trial),
            )
        elif args.command == "replay":
            from hpwf.api import replay

            result = replay(args.source, args.run_dir, trial=args.trial, backend=backend, progress=not args.quiet)
        elif args.command == "ensemble":
            result = api.ensemble(
                args.workflow, args.source, top_k=_positive("--top-k", args.top_k),
                members=_positive("--members", args.members), backend=backend, progress=not args.quiet,
            )
        else:
            result = api.resume(
                args.run_dir, backend=backend, n_trials=args.n_trials, timeout=args.timeout,
                progress=not args.quiet, ensemble=not args.no_ensemble,
                threads_per_trial=_positive("--threads-per-trial", args.threads_per_trial),
            )
        code = 0
        from hpwf.report import print_end

        print_end(result.run_dir, result.summary, result.study)
        if result.uq_metrics:
            from hpwf.ensembles import summarize

            say(summarize(result.uq_metrics))
        return 130 if result.summary.get("stop_kind") in ("interrupted", "store failed") else 0  # resumable stops
    except RunError:
        code = 1
        raise
    finally:
        backend.close(code)


def _positive(flag: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise ConfigError(f"{flag} must be >= 1, not {value}")
    return value
