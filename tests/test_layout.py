"""The house: hpwf's import graph, built from the source, has no cycle, keeps its layers pointing
one way, and no module imports another folder's private name.

Every import counts, function-local ones included (an import that only dodges a cycle still is
one); imports under ``if TYPE_CHECKING:`` do not (they never run). Importing ``a.b.c`` runs
``a/__init__`` and ``a/b/__init__`` first, so it counts as importing ``a`` and ``a.b`` too, except
a module's own packages (Python has them half-imported already: that is no dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hpwf"

# Each folder, and the folders (and top-level modules) it may import. Lower layers come first;
# cli/api -> engine -> backends -> worker -> workflow -> rundir -> wire.
BASE = {"hpwf.errors", "hpwf.progress", "hpwf.secrets"}
MAY_IMPORT: dict[str, set[str]] = {
    "hpwf.wire": BASE,
    "hpwf.rundir": BASE | {"hpwf.wire"},
    "hpwf.workflow": BASE | {"hpwf.wire", "hpwf.rundir"},
    "hpwf.ensembles": BASE | {"hpwf.wire", "hpwf.rundir", "hpwf.workflow"},
    "hpwf.worker": BASE | {"hpwf.wire", "hpwf.rundir", "hpwf.workflow"},
    "hpwf.backends": BASE | {"hpwf.wire", "hpwf.rundir", "hpwf.workflow", "hpwf.worker", "hpwf.slurm"},
    "hpwf.slurm": BASE | {"hpwf.wire", "hpwf.rundir", "hpwf.workflow", "hpwf.worker", "hpwf.ensembles",
                          "hpwf.engine"},
    "hpwf.engine": BASE | {"hpwf.wire", "hpwf.rundir", "hpwf.workflow", "hpwf.worker", "hpwf.ensembles",
                           "hpwf.backends"},
    "hpwf.report": BASE | {"hpwf.wire", "hpwf.rundir", "hpwf.workflow", "hpwf.ensembles", "hpwf.engine",
                           "hpwf.slurm"},  # status shows the run's Slurm job state
    "hpwf.sim": BASE | {"hpwf.wire", "hpwf.rundir", "hpwf.workflow", "hpwf.worker", "hpwf.ensembles", "hpwf.backends",
                        "hpwf.engine"},
}
TOP_LEVEL_MODULES = {"__init__", "__main__", "api", "cli", "errors", "progress", "secrets",
                     "parallel", "pbt_replay"}  # the last two: old paths kept as aliases
MAX_LINES = 300  # "no module over ~300 lines": one that grows past it is split by concept
# The private members of other objects that hpwf reaches, each a library's with no public way to
# it. A bare name is allowed anywhere (no hpwf class has a member of that name: checked below);
# "module:name" only in that module (an hpwf class has a member of that name too).
LIBRARY_PRIVATES = {
    "_getframe": "sys._getframe: the caller's frame (progress names the trial a warning comes from)",
    "_exit": "os._exit: end a process at once, without atexit handlers or flushing (agent, dask_slurm)",
    "_replace": "namedtuple._replace: public API that starts with an underscore (secrets)",
    "_showwarning_orig": "warnings._showwarning_orig: the original showwarning, which progress chains to",
    "_trial_id": "optuna: a trial's storage id (Trial, FrozenTrial); Optuna has no public accessor",
    "_storage": "optuna: a study's storage (Study._storage); no public accessor",
    "_study_id": "optuna: a study's storage id (Study._study_id); no public accessor",
    "_fixed_params": "optuna: a trial's fixed (enqueued) params; sample-ahead proposes into them",
    "_is_relative_param": "optuna: sample-ahead (engine.ahead) proposes as Trial._suggest would, unstored",
    "_get_latest_trial": "optuna: as _is_relative_param",
    "_contains": "optuna: as _is_relative_param (BaseDistribution._contains)",
    "_get_single_value": "optuna: as _is_relative_param (optuna.distributions._get_single_value)",
    "_filter_study": "optuna: as _is_relative_param (optuna.pruners._filter_study)",
    "hpwf.engine.ahead:_suggest": "optuna Trial._suggest: records a param with its distribution object",
    "hpwf.engine.outcomes:_suggest": "optuna Trial._suggest: as in hpwf.engine.ahead",
    "hpwf.rundir._journal_read:_params": "optuna FrozenTrial's fields, filled from the journal unvalidated "
                                         "(the fast read of a large study)",
    "hpwf.rundir._journal_read:_distributions": "as hpwf.rundir._journal_read:_params",
    "hpwf.rundir._journal_read:_values": "as hpwf.rundir._journal_read:_params",
    **{f"hpwf.engine.pruning:{name}": "optuna MedianPruner/PercentilePruner's settings (no public accessor): "
                                      "the incremental pruner answers exactly as the one it wraps"
       for name in ("_percentile", "_n_min_trials", "_n_startup_trials", "_n_warmup_steps", "_interval_steps")},
    "hpwf.rundir._journal_store:_study_id_to_trial_ids": "optuna JournalStorage's replay: a study's trial ids in "
                                                         "order, to look for waiting trials from a position",
    **{f"hpwf.rundir._snapshot:{name}": "optuna JournalStorage's replay state (Optuna's own snapshot-restore path, "
                                        "which only its Redis backend exposes)"
       for name in ("_backend", "_thread_lock", "_log_number_offset", "_sync_with_backend", "_replay_result")},
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {_name(p) for p in PACKAGE.rglob("__init__.py")}


def _folder(module: str) -> str:
    """The folder a module lives in (a package is its own folder)."""
    return module if module in PACKAGES else module.rpartition(".")[0]


def _top_folder(module: str) -> str:
    """``hpwf.engine`` for ``hpwf.engine.schedulers._pbt``; a top-level module is itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for child in ast.walk(node))
    return skip


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(module imported, name imported from it or None, line) for every import that runs."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if module in PACKAGES else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append((target, None, node.lineno) if target in MODULES else (base, alias.name, node.lineno))
    return [(m, n, line) for m, n, line in found if m == "hpwf" or m.startswith("hpwf.")]


def _edges(module: str) -> set[str]:
    """The hpwf modules that importing ``module`` runs (its own packages left out)."""
    out: set[str] = set()
    for target, _, _ in _imports(module):
        parts = target.split(".")
        for k in range(2, len(parts) + 1):
            name = ".".join(parts[:k])
            if name in MODULES and name != module and not module.startswith(name + "."):
                out.add(name)
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_sees_function_local_imports_and_skips_type_checking_ones() -> None:
    """A check of the checker: it must see the imports that cycles hide in."""
    edges = _edges("hpwf.cli")
    assert "hpwf.api" in edges  # imported inside a function only
    imported = {m for m, _, _ in _imports("hpwf.worker._launched")}
    assert "hpwf.worker._agent" not in imported  # under TYPE_CHECKING only
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    edges = {m: _edges(m) for m in MODULES}
    assert _cycles(edges) == []


def test_no_module_imports_another_folders_private_name() -> None:
    bad = []
    for module in MODULES:
        here = _folder(module)
        for target, name, line in _imports(module):
            target_folder = _folder(target)
            private_module = any(part.startswith("_") and part not in ("__init__", "__main__")
                                 for part in target.split(".")[1:])
            private_name = name is not None and name.startswith("_")
            if (private_module or private_name) and target_folder != here and not target_folder.startswith(here + "."):
                # a folder's own subfolders are its own business only through their door
                bad.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}{'.' + name if name else ''}")
    assert bad == []


def test_layers_point_one_way() -> None:
    bad = []
    for module in MODULES:
        folder = _top_folder(module)
        if folder not in MAY_IMPORT:
            continue  # the top-level modules (api, cli) may import any folder
        allowed = MAY_IMPORT[folder] | {folder}
        for target in _edges(module):
            if _top_folder(target) not in allowed and target != "hpwf":
                bad.append(f"{module} -> {target}")
    assert bad == []


def test_few_top_level_modules_and_every_folder_says_its_role() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= TOP_LEVEL_MODULES, sorted(top - TOP_LEVEL_MODULES)
    for package in PACKAGES - {"hpwf"}:
        doc = ast.get_docstring(ast.parse(MODULES[package].read_text()))
        assert doc and "import" in doc, f"{package}: its __init__ docstring must say its role and what it may import"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_short(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines (at most {MAX_LINES})"


def _private_reaches(source: str) -> list[tuple[str, int]]:
    """(expression, line) of each ``x._name`` in ``source`` where ``x`` is not ``self``, ``cls``
    or ``super()`` (dunders are no private member)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.endswith("__"):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            continue
        found.append((ast.unparse(node), node.lineno))
    return found


def _member_names() -> set[str]:
    """Every name an hpwf class defines on itself or its instances (methods, fields, self.x = ...)."""
    names: set[str] = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        names.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        names.add(item.target.id)
                    elif isinstance(item, ast.Assign):
                        names.update(t.id for t in item.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
    return names


def test_no_module_reaches_into_another_objects_private_members() -> None:
    """E.g. a step module that takes the coordinator as ``c`` uses ``c.fail``, never ``c._fail``."""
    bad = []
    for module in MODULES:
        for expression, line in _private_reaches(MODULES[module].read_text()):
            name = expression.rpartition(".")[2]
            if name not in LIBRARY_PRIVATES and f"{module}:{name}" not in LIBRARY_PRIVATES:
                bad.append(f"{MODULES[module].relative_to(ROOT)}:{line} {expression}")
    assert bad == []


def test_the_private_members_allowed_are_no_member_of_hpwf() -> None:
    """A bare name allowed anywhere must not also name an hpwf member (that would let ``c._x``
    through); and the check sees what it must: ``c._fail`` is caught."""
    assert not {name for name in LIBRARY_PRIVATES if ":" not in name} & _member_names()
    assert all(name.partition(":")[0] in MODULES for name in LIBRARY_PRIVATES if ":" in name)
    source = "def step(c):\n    c._fail(1)\n    self._ok = super()._fine() + cls._x + c.__class__\n"
    assert _private_reaches(source) == [("c._fail", 2)]
