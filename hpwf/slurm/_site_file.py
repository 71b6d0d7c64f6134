"""Reading a site config file: YAML into one validated `SiteConfig`, each problem one line naming
the file and the key (``env`` values kept exactly as written)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from hpwf.errors import ConfigError
from hpwf.slurm._sites import KEYS, LAUNCHERS, REQUIRED, SCHEDULERS, SiteConfig, _KINDS, _show_key, _type_name


def load_site(path: str | Path) -> SiteConfig:
    """Read and validate a site config file.

    Raises:
        ConfigError: ``"<file>: <key>: <problem>"`` for an unknown key, a wrong type, a missing
            required value or a bad value; ``"<file>: ..."`` for a file that is not YAML.
    """
    import yaml

    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such site config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: {line}not valid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the file must be a mapping of keys (scheduler: ..., launcher: ...)")
    if isinstance(data.get("env"), dict):
        data["env"] = _env_as_written(text, where)
    return site_from_mapping(data, where)


def _env_as_written(text: str, where: str) -> dict[str, str]:
    """The ``env`` mapping with every value exactly as the file writes it.

    YAML would read ``1.10`` as the number 1.1 and ``yes`` as true; an environment variable
    gets the text itself. A value that is not one scalar (a list, a mapping, nothing) is refused.
    """
    import yaml

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    env: dict[str, str] = {}
    assert isinstance(root, yaml.MappingNode)  # safe_load gave a mapping with an env mapping
    node = [v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "env"][-1]  # YAML: the last wins
    assert isinstance(node, yaml.MappingNode)
    for key, value in node.value:
        name = str(key.value) if isinstance(key, yaml.ScalarNode) else repr(key.value)
        if key.tag == "tag:yaml.org,2002:merge":
            raise ConfigError(f"{where}: env: merge keys (<<) are not supported; write each variable")
        if isinstance(value, yaml.SequenceNode) or isinstance(value, yaml.MappingNode):
            what = "a list" if isinstance(value, yaml.SequenceNode) else "a mapping"
            raise ConfigError(f"{where}: env.{_show_key(name)}: must be a string or a number, not {what}")
        if value.tag == "tag:yaml.org,2002:null":
            raise ConfigError(f"{where}: env.{_show_key(name)}: has no value (write '' for an empty one)")
        env[name] = str(value.value)
    return env


def site_from_mapping(data: dict[Any, Any], where: str = "<site config>") -> SiteConfig:
    """A `SiteConfig` from already parsed YAML; ``where`` names it in messages."""
    for key in data:
        if not isinstance(key, str) or key not in _KINDS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(KEYS)}"
            raise ConfigError(f"{where}: {_show_key(key)}: unknown key{hint}")
    for key in REQUIRED:
        if data.get(key) is None:
            choices = SCHEDULERS if key == "scheduler" else LAUNCHERS
            raise ConfigError(f"{where}: {key}: missing (required: {' or '.join(choices)})")
    values: dict[str, Any] = {"path": where}
    for key, value in data.items():
        if value is None:
            continue  # `key:` with no value means the default
        kinds, what = _KINDS[key]
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ConfigError(f"{where}: {key}: must be {what}, not {_type_name(value)}")
        values[key] = _convert(key, value, where)
    return SiteConfig(**values)


def _convert(key: str, value: Any, where: str) -> Any:
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{where}: {key}[{i}]: must be a string, not {_type_name(item)}")
        return tuple(value)
    if isinstance(value, dict):
        pairs = []
        for name, item in value.items():
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise ConfigError(f"{where}: env.{_show_key(name)}: must be a string or a number, "
                                  f"not {_type_name(item)}")
            pairs.append((str(name), str(item)))
        return tuple(pairs)
    if key in ("memory", "time"):
        return str(value)
    return value
