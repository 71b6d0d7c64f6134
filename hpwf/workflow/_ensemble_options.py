"""The options an `Ensemble` takes for calibration and selection, checked when the workflow file is
loaded (one line naming the option); `hpwf.ensembles` applies them."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from hpwf.errors import ConfigError

REGRESSION = ("conformal", "mondrian", "cqr", "jackknife+")
CLASSIFICATION = ("temperature", "aps", "raps")
CALIBRATE_OPTIONS: dict[str, Any] = {"level": 0.9, "beta": 0.0, "bins": None, "raps_lambda": 0.01, "raps_k": 1,
                                     "jackknife": "normalised"}
SELECT_OPTIONS: dict[str, Any] = {"init": 1, "tolerance": 0.0, "min_distinct": 1, "bags": 0}


def methods(calibrate: str | Sequence[str] | None) -> tuple[str, ...]:
    """``calibrate`` as a tuple of known method names, or ConfigError naming the unknown one."""
    named = () if calibrate is None else (calibrate,) if isinstance(calibrate, str) else tuple(calibrate)
    for m in named:
        if m not in (*REGRESSION, *CLASSIFICATION):
            raise ConfigError(f"calibrate {m!r} must be one of {', '.join((*REGRESSION, *CLASSIFICATION))} (or a list)")
    return named


def options(given: Mapping[str, Any] | None, defaults: Mapping[str, Any] = CALIBRATE_OPTIONS,
            name: str = "calibrate_options") -> dict[str, Any]:
    """The options with their defaults; ConfigError naming an unknown key or a bad value."""
    out = dict(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            raise ConfigError(f"{name}: unknown key {key!r} (known: {', '.join(defaults)})")
        if key == "jackknife":
            if value not in ("normalised", "absolute"):
                raise ConfigError(f"{name}: jackknife must be 'normalised' or 'absolute', not {value!r}")
        elif key == "bins" and value is None:
            pass
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{name}: {key} must be a non-negative number, not {value!r}")
        elif key in ("level",) and not 0 < value < 1:
            raise ConfigError(f"{name}: level must be in (0, 1), not {value!r}")
        elif key in ("bins", "raps_k", "init", "min_distinct", "bags") and int(value) != value:
            raise ConfigError(f"{name}: {key} must be an integer, not {value!r}")
        out[key] = value
    return out
