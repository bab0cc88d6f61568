"""Configuration: defaults, then the global file, the repository's file,
``CHOO_*`` environment variables and flags; later wins.

Every key is declared once in ``KEYS`` (``protocol.settings``, where the
daemon takes its defaults from too) with its type, default and check.
Files are YAML mappings, nested (``daemon: {port: 8080}``) or dotted.
An unknown key is a warning naming the file and key (and the closest known
key); a value of the wrong type is a ``ConfigError`` naming the file, key,
the expected type and the value found.

A key of user scope (``Key.scope``: the daemon's and history retention)
is not taken from a repository's file: that is a warning naming the file
and key, and the value is ignored, so that a cloned repository cannot
move or expose the user's daemon. A non-loopback ``daemon.host`` is taken
only from the user's file or a flag (not from ``CHOO_DAEMON_HOST``, which
a repository's tooling may set as well).
"""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import yaml

from choo.errors import ChooError
from protocol.settings import KEYS, KINDS, USER, Key, is_loopback


class ConfigError(ChooError):
    """A configuration value that cannot be used; nothing should start."""


@dataclass
class Config:
    values: dict[str, Any] = field(default_factory=lambda: {k: v.default for k, v in KEYS.items()})
    sources: dict[str, str] = field(default_factory=lambda: dict.fromkeys(KEYS, "default"))
    warnings: list[str] = field(default_factory=list)
    # The files consulted, in order, and whether each was there.
    files: list[tuple[Path, bool]] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def set(self, key: str, raw: Any, source: str) -> None:
        """Set ``key`` from ``source`` after checking its type and value."""
        self.values[key] = _coerce(KEYS[key], raw, source)
        self.sources[key] = source

    def apply_flags(self, flags: Mapping[str, Any]) -> Config:
        for key, value in flags.items():
            if value is not None:
                self.set(key, value, "flag")
        return self

    def explain(self) -> list[dict[str, Any]]:
        """Each key's value, source, scope and help; a secret key's values hidden."""
        return [
            {
                "key": k,
                "value": _hidden(self.values[k]) if KEYS[k].secret else self.values[k],
                "source": self.sources[k],
                "scope": KEYS[k].scope,
                "help": KEYS[k].help,
            }
            for k in KEYS
        ]


HIDDEN = "(hidden)"


def _hidden(value: Any) -> Any:
    """A secret value as ``config show`` prints it: a table keeps its names."""
    if isinstance(value, dict):
        return dict.fromkeys(value, HIDDEN)
    return None if value is None else HIDDEN


def global_config_path() -> Path:
    return Path(platformdirs.user_config_dir("choo")) / "config.yaml"


def load(repo_root: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """The effective configuration for a repository (flags applied later)."""
    config = Config()
    files = [(global_config_path(), True)]
    if repo_root is not None:
        files.append((repo_root / ".choo.yaml", False))
    for path, user_file in files:
        found = path.is_file()
        config.files.append((path, found))
        if found:
            _load_file(config, path, user_file=user_file)
    _load_env(config, os.environ if env is None else env)
    return config


def _load_file(config: Config, path: Path, *, user_file: bool) -> None:
    """Load one file: the user's own (``user_file``) or a repository's."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values, found {_name(data)}")
    for key, value in _flatten(data):
        if key == "provider":
            key = "provider.name"  # `provider: codex` is short for provider.name
        if key not in KEYS:
            config.warnings.append(f"{path}: unknown key {key!r}{_closest(key)}; it is ignored")
            continue
        if not user_file and KEYS[key].scope == USER:
            config.warnings.append(_not_for_repos(path, key))
            continue
        config.set(key, value, str(path))


def _not_for_repos(path: Path, key: str) -> str:
    return (
        f"{path}: {key} is a user setting, which a repository may not set; it is ignored. "
        f"Set it in the user config {global_config_path()} instead, or with "
        f"{env_var(key)} or a flag"
    )


def _flatten(data: Mapping[Any, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in KEYS:
            out += _flatten(value, name + ".")
        else:
            out.append((name, value))
    return out


def _load_env(config: Config, env: Mapping[str, str]) -> None:
    for key in KEYS:
        var = env_var(key)
        if var not in env:
            continue
        if key == "daemon.host" and not is_loopback(env[var]):
            config.warnings.append(
                f"env {var}: {env[var]!r} is not a loopback address, and one is taken "
                f"only from the user config {global_config_path()} or a flag "
                "(`choo daemon start --host`); it is ignored"
            )
            continue
        config.set(key, env[var], f"env {var}")


def env_var(key: str) -> str:
    return "CHOO_" + key.upper().replace(".", "_")


def _coerce(key: Key, raw: Any, source: str) -> Any:
    value = _convert(key.kind, raw, from_text=source.startswith("env "))
    if value is _BAD:
        raise ConfigError(f"{source}: {key.name} must be {KINDS[key.kind]}, found {_name(raw)}")
    problem = key.check(value) if value is not None else None
    if problem:
        found = (
            "" if key.kind == "table" else f", found {raw!r}"
        )  # a table's problem names its entry
        raise ConfigError(f"{source}: {key.name} {problem}{found}")
    if key.kind == "table" and value is not None:
        value = {**key.default, **value}  # the user's entries over the defaults
    return value


_BAD = object()


def _convert(kind: str, raw: Any, *, from_text: bool) -> Any:
    if kind == "argv":
        if raw is None:
            return None
        if isinstance(raw, str):
            return shlex.split(raw) or _BAD
        if isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
            return list(raw)
        return _BAD
    if kind == "checks":
        if from_text and isinstance(raw, str):
            try:
                raw = yaml.safe_load(raw)
            except yaml.YAMLError:
                return _BAD
        return _checks(raw)
    if kind == "table":
        if from_text and isinstance(raw, str):
            try:
                raw = yaml.safe_load(raw)
            except yaml.YAMLError:
                return _BAD
        return dict(raw) if isinstance(raw, dict) else _BAD
    if from_text and isinstance(raw, str):
        return _from_text(kind, raw)
    if kind == "bool":
        return raw if isinstance(raw, bool) else _BAD
    if kind == "int":
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else _BAD
    if kind == "number":
        ok = isinstance(raw, int | float) and not isinstance(raw, bool)
        return float(raw) if ok else _BAD
    return raw if isinstance(raw, str) else _BAD


def _checks(raw: Any) -> Any:
    """[{name, command}] from either accepted shape, or _BAD."""
    if isinstance(raw, dict):
        raw = [{"name": k, "command": v} for k, v in raw.items()]
    if not isinstance(raw, list):
        return _BAD
    checks = []
    for item in raw:
        if not (
            isinstance(item, dict)
            and set(item) == {"name", "command"}
            and all(isinstance(item[k], str) and item[k].strip() for k in ("name", "command"))
        ):
            return _BAD
        checks.append({"name": item["name"], "command": item["command"]})
    return checks


def _from_text(kind: str, text: str) -> Any:
    text = text.strip()
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return _BAD
    try:
        if kind == "int":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        return _BAD
    return text


def _closest(key: str) -> str:
    match = difflib.get_close_matches(key, list(KEYS), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _name(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if value is None:
        return "nothing (null)"
    return f"a {type(value).__name__} ({value!r:.40})"
