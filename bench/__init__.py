"""Benchmarks (issue: reliability suite and performance benchmarks): run with `make bench`."""
