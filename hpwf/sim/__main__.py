"""``python -m hpwf.sim --seed N [--big] [--store-errors] [--[no-]shared-study]``: replay one simulated schedule; exit 1 on a violation."""

from __future__ import annotations

import argparse
import sys

from hpwf.sim._schedule import run_seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpwf.sim", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--big", action="store_true", help="draw from the large configurations (up to 4,096 agents)")
    parser.add_argument("--store-errors", action="store_true", help="draw store errors among the faults")
    parser.add_argument("--shared-study", action=argparse.BooleanOptionalAction, default=None,
                        help="two runs sharing one study (default: as the seed draws it, one in ten)")
    args = parser.parse_args(argv)
    outcome = run_seed(args.seed, args.big, args.store_errors, args.shared_study)
    print(f"seed {args.seed}: {outcome.config}")
    print(f"actions: {outcome.actions}")
    print(f"{outcome.steps} steps, {outcome.virtual_s:.1f} virtual s, {len(outcome.violations)} violation(s)")
    for v in outcome.violations:
        print(v)
    return 1 if outcome.violations else 0


if __name__ == "__main__":
    sys.exit(main())
