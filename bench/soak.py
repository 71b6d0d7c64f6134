"""`python -m bench soak --minutes M [--start SEED] [--big-every K]`: run simulated schedules
(`hpwf.sim`) for M minutes; print ``N schedules, K violations`` and the line that replays each
violation. Every K-th schedule draws a large configuration (up to 4,096 agents, trials up to a
day long). Not part of ``make bench``: it measures the engine's correctness, not its speed."""

from __future__ import annotations

import argparse
import json
import time

from hpwf.sim import run_seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--start", type=int, default=1_000_000, help="the first seed (make test runs 0-399)")
    parser.add_argument("--big-every", type=int, default=20)
    args = parser.parse_args(argv)
    deadline = time.time() + 60 * args.minutes
    seed, count, bad, steps, virtual = args.start, 0, [], 0, 0.0
    started, cpu_started = time.time(), time.process_time()
    while time.time() < deadline:
        big = args.big_every > 0 and count % args.big_every == args.big_every - 1
        outcome = run_seed(seed, big)
        count, steps, virtual = count + 1, steps + outcome.steps, virtual + outcome.virtual_s
        if outcome.violations:
            bad.append(outcome)
            print(f"VIOLATION: {outcome.replay_line()}: {outcome.violations[0].splitlines()[0]}", flush=True)
        seed += 1
    elapsed, cpu = time.time() - started, time.process_time() - cpu_started
    print(f"{count} schedules, {len(bad)} violations ({elapsed / 60:.1f} min wall, {cpu / 60:.1f} min CPU: "
          f"{count / max(cpu / 60, 1e-9):.0f} schedules per CPU minute; {steps} coordinator steps, "
          f"{virtual / 3600:.1f} virtual hours; seeds {args.start}-{seed - 1})", flush=True)
    print(json.dumps({"benchmark": "soak", "schedules": count, "violations": len(bad), "minutes": round(elapsed / 60, 1),
                      "cpu_minutes": round(cpu / 60, 2),
                      "steps": steps, "virtual_hours": round(virtual / 3600, 1), "first_seed": args.start,
                      "last_seed": seed - 1, "failing_seeds": [o.seed for o in bad]}))
    return 1 if bad else 0
