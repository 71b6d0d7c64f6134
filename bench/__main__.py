"""`python -m bench`: runs every benchmark in bench/ and prints side-by-side ratios."""

import sys

print("no benchmarks yet: they arrive with the benchmark issue", file=sys.stderr)
sys.exit(1)
