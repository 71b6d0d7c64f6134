"""Errors that hpwf reports to users."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad user input (workflow file, option, site config): the CLI prints one line and exits 2.

    The message already names where the problem is, e.g. ``workflows/x.py:7: unknown sampler 'foo'``.
    """


class RunError(Exception):
    """A run could not go on (every worker lost, too many failed trials, ...): exit code 1."""
