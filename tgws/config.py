"""Configuration, loaded with a fixed precedence into the section dataclasses.

    built-in defaults  <  TOML file  <  environment (TGWS_*)  <  command-line flags

Every key of the file is checked against the dataclasses of tgws/config_sections.py
(re-exported here: `from tgws.config import ServerConfig` is the usual import): an unknown
key, a value of the wrong type or out of range, or an unreadable file raises ConfigError
whose text is one line naming the file, the key and what was expected. The CLI prints that
line and exits 2 (systemd's RestartPreventExitStatus=2 then avoids a restart loop).

Nothing here does I/O except reading the one file, so it is testable with plain dicts.
tgws.toml.example documents every key; tests check the two stay in step.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tgws.config_sections import (
    BACKENDS,
    CONNECTIONS,
    LOG_FORMATS,
    LOG_LEVELS,
    SANDBOX_FAULT_KINDS,
    Config,
    Invalid,
    LimitsConfig,
    LogConfig,
    MetricsConfig,
    SandboxConfig,
    ServerConfig,
    StoreConfig,
    StreamingConfig,
    TelegramConfig,
    TelegramServerConfig,
    WatchConfig,
    default_db_path,
)
from tgws.errors import ConfigError

__all__ = [
    "BACKENDS",
    "CONNECTIONS",
    "ENVIRONMENT",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "PATH_KEYS",
    "SANDBOX_FAULT_KINDS",
    "Config",
    "Invalid",
    "LimitsConfig",
    "LogConfig",
    "MetricsConfig",
    "SandboxConfig",
    "ServerConfig",
    "StoreConfig",
    "StreamingConfig",
    "TelegramConfig",
    "TelegramServerConfig",
    "WatchConfig",
    "default_db_path",
    "effective_settings",
    "load",
]

# Keys that hold file paths: a relative one written in a config file is resolved against
# that file's folder (not the working directory), so `--config some/dir/tgws.toml` finds
# the same database from anywhere. Flags and environment values stay relative to the
# working directory, like any command-line path.
PATH_KEYS = ("store.path", "store.secret_key_file", "telegram.server.public_key_file",
             "server.tls_cert", "server.tls_key")

# Environment variables and the config key each one sets (value parsed to the key's type).
ENVIRONMENT: dict[str, str] = {
    "TGWS_HOST": "server.host",
    "TGWS_PORT": "server.port",
    "TGWS_DB": "store.path",
    "TGWS_STORE_URL": "store.url",
    "TGWS_BACKEND": "telegram.backend",
    "TGWS_API_ID": "telegram.api_id",
    "TGWS_API_HASH": "telegram.api_hash",
    "TGWS_LOG_LEVEL": "log.level",
}


def load(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective Config. `overrides` maps dotted keys to values (command-line flags).

    The file is `path`, else $TGWS_CONFIG, else none (defaults only). `flags` maps dotted
    keys to the flag that sets them, so a refused flag value is blamed on the flag.
    """
    env = os.environ if environ is None else environ
    file = str(path) if path is not None else env.get("TGWS_CONFIG") or None
    data: dict[str, Any] = {}
    source = "<defaults>"
    if file is not None:
        source = file
        data = _read_toml(file)
        _resolve_paths(data, Path(file).parent)
    try:
        for var, key in ENVIRONMENT.items():
            if var in env:
                _set_dotted(data, key, _from_string(env[var], key, var))
        for key, value in (overrides or {}).items():
            if value is not None:
                _set_dotted(data, key, value)
        store = data.get("store")
        if not isinstance(store, dict) or "path" not in store:
            _set_dotted(data, "store.path", default_db_path(env))
        config = _build(Config, data, prefix="")
        config = dataclasses.replace(config, source=source)
        config.validate()
    except Invalid as err:
        blamed = _blame(err.key, source, env, overrides or {}, flags or {})
        raise ConfigError(f"{blamed}: {err.key}: {err.describe()}") from None
    return config


def _blame(key: str, source: str, env: Mapping[str, str], overrides: Mapping[str, Any],
           flags: Mapping[str, str]) -> str:
    """Where the refused value came from: a flag, the environment, else the file."""
    if overrides.get(key) is not None:
        return f"flag {flags[key]}" if key in flags else "command line"
    for var, target in ENVIRONMENT.items():
        if target == key and var in env:
            return f"environment {var}"
    return source


def _resolve_paths(data: dict[str, Any], folder: Path) -> None:
    for key in PATH_KEYS:
        *sections, last = key.split(".")
        node: Any = data
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        value = node.get(last)
        if isinstance(value, str) and value and not os.path.isabs(value):
            node[last] = str(folder / os.path.expanduser(value))


def _read_toml(file: str) -> dict[str, Any]:
    try:
        with open(file, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{file}: cannot read config file: no such file") from None
    except PermissionError:
        raise ConfigError(f"{file}: cannot read config file: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: cannot read config file: it is a directory") from None
    except OSError as err:
        raise ConfigError(f"{file}: cannot read config file: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{file}: not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not valid TOML: not UTF-8 text") from None


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *sections, last = key.split(".")
    node = data
    for section in sections:
        child = node.setdefault(section, {})
        if not isinstance(child, dict):
            raise Invalid(section, f"a table [{section}] (it holds {key})")
        node = child
    node[last] = value


def _key_type(key: str) -> Any:
    node: Any = Config
    for part in key.split("."):
        hints = typing.get_type_hints(node)
        node = hints[part]
    return node


def _from_string(raw: str, key: str, var: str) -> Any:
    """Environment values are strings; convert to the type the key wants."""
    kind = _key_type(key)
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise ConfigError(
            f"environment {var}: {key}: expected {_type_name(kind)}, got {raw!r}"
        ) from None
    return raw


def _type_name(kind: Any) -> str:
    if kind == tuple[str, ...]:
        return "a list of strings"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        kind, "a table"
    )


_T = typing.TypeVar("_T")


def _build(cls: type[_T], data: Mapping[str, Any], prefix: str) -> _T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
             if f.name != "source"}
    for key in data:
        if key not in names:
            where = f"{prefix}{key}"
            section = prefix.rstrip(".") or "top level"
            raise Invalid(where, "a known key", problem=f"unknown key (known in {section}: "
                                                          f"{', '.join(sorted(names))})")
    values: dict[str, Any] = {}
    for name in names:
        if name not in data:
            continue
        kind = hints[name]
        value = data[name]
        where = f"{prefix}{name}"
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise Invalid(where, f"a table [{where}]")
            values[name] = _build(typing.cast(type[Any], kind), value, prefix=f"{where}.")
        else:
            values[name] = _check_scalar(value, kind, where)
    return cls(**values)


def _check_scalar(value: Any, kind: Any, where: str) -> Any:
    if isinstance(kind, types.UnionType):  # not used today; keeps the checker honest
        raise Invalid(where, "a supported type")
    # bool is an int subclass in Python; TOML keeps them apart and so do we.
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    elif kind == tuple[str, ...]:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = False
    if not ok:
        raise Invalid(where, f"{_type_name(kind)}, got {type(value).__name__} {value!r}")
    return value


def effective_settings(config: Config) -> dict[str, Any]:
    """All settings as a nested dict with secrets masked, for `tgws check-config`."""
    out = dataclasses.asdict(config)
    if out["telegram"]["api_hash"]:
        out["telegram"]["api_hash"] = "********"
    if out["store"]["url"]:
        from tgws.store.base import redact_url  # here: config stays free of the store

        out["store"]["url"] = redact_url(out["store"]["url"])
    return out
