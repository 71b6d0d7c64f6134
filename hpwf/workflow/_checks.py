"""Checks of the numbers a workflow file declares: each error names its key."""

from __future__ import annotations

import math
from typing import Any

from hpwf.errors import ConfigError


def check_number(
    key: str, value: Any, *, integer: bool, low: float, high: float, strict: bool = False
) -> None:
    """``ConfigError`` naming ``key`` unless ``value`` is None or a number (an int if ``integer``)
    in ``low``..``high`` (above ``low`` if ``strict``)."""
    if value is None:
        return
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigError(f"{key} must be {kind}, not {value!r}")
    if not math.isfinite(value) or value < low or (strict and value == low):
        bound = f"> {low}" if strict else f">= {low}"
        raise ConfigError(f"{key} must be {bound}, not {value!r}")
    if value > high:
        raise ConfigError(f"{key} must be <= {high}, not {value!r}")
