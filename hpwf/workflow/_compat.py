"""Optuna's older ``suggest_*`` names on `Trial`, kept while the installed Optuna keeps them
(each warns, as Optuna does, that it goes)."""

from __future__ import annotations

import warnings


class OptunaOldNames:
    """``suggest_uniform``, ``suggest_loguniform``, ``suggest_discrete_uniform`` on top of ``suggest_float``."""

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        raise NotImplementedError

    def suggest_uniform(self, name: str, low: float, high: float) -> float:
        """``suggest_float(name, low, high)`` (deprecated in Optuna)."""
        _deprecated("suggest_uniform", "suggest_float(name, low, high)")
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name: str, low: float, high: float) -> float:
        """``suggest_float(name, low, high, log=True)`` (deprecated in Optuna)."""
        _deprecated("suggest_loguniform", "suggest_float(name, low, high, log=True)")
        return self.suggest_float(name, low, high, log=True)

    def suggest_discrete_uniform(self, name: str, low: float, high: float, q: float) -> float:
        """``suggest_float(name, low, high, step=q)`` (deprecated in Optuna)."""
        _deprecated("suggest_discrete_uniform", "suggest_float(name, low, high, step=q)")
        return self.suggest_float(name, low, high, step=q)


def _deprecated(name: str, instead: str) -> None:
    warnings.warn(f"{name} is deprecated in Optuna (v3.0.0); use {instead} instead", FutureWarning, stacklevel=3)
