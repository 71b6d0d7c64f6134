"""Load a workflow file (or Python objects) into a validated `Workflow`; errors name file:line."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hpwf.errors import ConfigError
from hpwf.workflow._search import Search

Objective = Callable[[Any], Any]


@dataclass
class Workflow:
    """A search (and later an ensemble) with the objective that trains one trial.

    ``path`` is set when the workflow came from a file: workers then load the same file,
    otherwise they receive the objective pickled with cloudpickle.

    Example:
        >>> wf = Workflow(objective=lambda t: t.suggest_float("x", 0, 1),
        ...               search=Search(direction="minimize", n_trials=4))
        >>> wf.name
        'workflow'
    """

    objective: Objective | None = None
    search: Search | None = None
    path: Path | None = None
    ensemble: Any = None  # an hpwf.Ensemble, run after the search (or alone, with fixed params)

    def __post_init__(self) -> None:
        where = self._where()
        if self.ensemble is not None and not _is_ensemble(self.ensemble):
            raise ConfigError(f"{where}: ensemble must be an hpwf.Ensemble, not {type(self.ensemble).__name__}")
        if self.search is None and self.objective is None:
            if self.ensemble is None:
                raise ConfigError(f"{where}: no `search = hpwf.Search(...)` with `def objective(trial)`, and no ensemble")
            if self.ensemble.params is None:
                raise ConfigError(f"{where}: an ensemble without a search needs params=")
            return
        if self.objective is None:
            raise ConfigError(f"{where}: no `def objective(trial)` defined")
        if self.search is None:
            raise ConfigError(f"{where}: no `search = hpwf.Search(...)` defined")
        if not callable(self.objective):
            raise ConfigError(f"{where}: objective must be a function taking one trial")
        if not isinstance(self.search, Search):
            raise ConfigError(f"{where}: search must be an hpwf.Search, not {type(self.search).__name__}")
        _check_signature(self.objective, where)

    @property
    def name(self) -> str:
        """The study name: ``search.name``, else the file's stem."""
        return (self.search.name if self.search else None) or (self.path.stem if self.path else "workflow")

    def _where(self) -> str:
        return str(self.path) if self.path else "workflow"


def _is_ensemble(value: Any) -> bool:
    from hpwf.workflow._ensemble import Ensemble

    return isinstance(value, Ensemble)


def load(path: str | Path) -> Workflow:
    """Load and validate a workflow file.

    The file's folder goes first on ``sys.path``, as ``python script.py`` does, so modules next
    to the workflow import (the coordinator and every agent load the file through here).

    Raises:
        ConfigError: one line naming the file and the line or option at fault.
    """
    path = Path(path)
    add_to_import_path(path.resolve().parent)
    module = load_module(path)
    return Workflow(
        objective=getattr(module, "objective", None), search=getattr(module, "search", None),
        ensemble=getattr(module, "ensemble", None), path=path.resolve(),
    )


def add_to_import_path(folder: Path) -> None:
    """Put ``folder`` first on ``sys.path`` unless it is there already (``python script.py`` does so)."""
    entry = str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)


def load_module(path: Path) -> Any:
    """Execute a workflow file as a module, turning any error into a one-line ConfigError."""
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = source[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 ({exc.reason})") from None
    try:
        code = compile(text, str(path), "exec")
    except SyntaxError as exc:
        where = exc.lineno or (text[: text.find("\0")].count("\n") + 1 if "\0" in text else "?")
        raise ConfigError(f"{path}:{where}: {type(exc).__name__}: {exc.msg}") from None
    except ValueError as exc:  # e.g. source with NUL bytes
        raise ConfigError(f"{path}: {exc}") from None
    name = "hpwf_workflow_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path.resolve())
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except ConfigError as exc:
        del sys.modules[name]
        raise ConfigError(f"{path}:{_line_in(path, exc)}: {exc}") from None
    except Exception as exc:  # the user's module-level code failed
        del sys.modules[name]
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"{path}:{_line_in(path, exc)}: {type(exc).__name__}: {message}") from None
    return module


def _line_in(path: Path, exc: BaseException) -> int | str:
    """The innermost line of ``path`` in the exception's traceback."""
    target = str(path.resolve())
    line: int | str = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == target or frame.filename == str(path):
            line = frame.lineno or "?"
    return line


def _check_signature(objective: Objective, where: str) -> None:
    try:
        signature = inspect.signature(objective)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(object())
    except TypeError:
        raise ConfigError(f"{where}: objective must take exactly one argument (the trial)") from None
