"""`python -m bench [--quick] [NAME ...]`: run the benchmarks (all, or those named), print one
line each, and append one JSON line each to bench/results.jsonl. Exits 0 when every benchmark
ran (whatever its figures); 1 if one of them crashed (the others still run)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bench import BENCHMARKS

RESULTS = Path(__file__).resolve().parent / "results.jsonl"


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=RESULTS.parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=RESULTS.parent, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:  # the simulator's soak: `python -m bench soak --minutes M`
        from bench import soak

        return soak.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"some of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not figures")
    parser.add_argument("--trials", type=int, default=None,
                        help="the study size, for benchmarks that take one (bigstudy; default 100,000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON-lines file to append to")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    commit, failed, started = _commit(), [], time.time()
    print(f"[bench] {len(names)} benchmark(s){' (quick)' if args.quick else ''} on {os.cpu_count()} cores, "
          f"commit {commit}; results -> {args.out}", flush=True)
    for name in names:
        load_before = _loadavg()
        t0 = time.time()
        try:
            module = importlib.import_module(f"bench.{name}")
            sized = args.trials is not None and "trials" in inspect.signature(module.run).parameters
            result = module.run(quick=args.quick, trials=args.trials) if sized else module.run(quick=args.quick)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            failed.append(name)
            result = {"benchmark": name, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            print(f"{name}: FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", flush=True)
        else:
            print(f"{result.pop('line')}  [{time.time() - t0:.0f} s]", flush=True)
        record = {
            "benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": args.quick, "commit": commit,
            "cores": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": _loadavg(),
            "runtime_s": round(time.time() - t0, 1), **{k: v for k, v in result.items() if k != "benchmark"},
        }
        with args.out.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
    total = time.time() - started
    print(f"[bench] done in {total:.0f} s ({total / 60:.1f} min)"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


if __name__ == "__main__":  # the guard matters: benchmarks spawn processes that re-import __main__
    sys.exit(main())
