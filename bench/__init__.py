"""Benchmarks (issue: performance benchmarks): run with `make bench` or `python -m bench [NAME ...]`.

One module per benchmark; each has ``run(quick: bool) -> dict`` returning its figures, a
headline ``ratio`` and a ``comparison`` sentence saying exactly what was compared. Every
figure is a ratio of things measured side by side in the same run: the machine is small
(2 cores) and shared, so absolute times mean little.
"""

BENCHMARKS = ("efficiency", "agent_weight", "overhead", "horovod_overhead", "search_efficiency", "search_efficiency_nt3", "search_efficiency_sim", "ahead_quality", "store", "packing", "scale", "uq", "uq_methods", "uq_pipeline", "cpu_training", "bigstudy")
