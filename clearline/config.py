"""Loading of the configuration files, and where relative state folders live.

One place resolves where the configuration is and reads a file by name, so every
command sees the same configuration and a missing or malformed file is reported by name
instead of as a traceback. The defaults ship inside the package (`clearline.configs`,
the repository's `configs/`); CLEARLINE_CONFIG_DIR (the CLI's `--config-dir`) points at a
folder of the user's own, which `clearline init DIR` starts as a copy of the defaults.

Relative paths in the configuration (`var/ledger`, `var/feast`, …) are taken from
CLEARLINE_HOME when it is set, else from the working directory: never from where the
code is installed.

Topic names get CLEARLINE_TOPIC_PREFIX in front of them here, once for every reader: a
value under a key named `topic` or `…_topic`, and every name under `topics:`. A demo or
a test run can then have topics of its own on a shared broker without any command
knowing about it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """A configuration file is missing or does not say what it must."""


def default_dir() -> Path:
    """The default configuration shipped in the package."""
    return Path(str(resources.files("clearline.configs")))


def config_dir() -> Path:
    """CLEARLINE_CONFIG_DIR when set, else the shipped defaults."""
    env = os.environ.get("CLEARLINE_CONFIG_DIR")
    return Path(env).expanduser() if env else default_dir()


def home() -> Path:
    """Where relative state folders are taken from: CLEARLINE_HOME, else the working directory."""
    env = os.environ.get("CLEARLINE_HOME")
    return Path(env).expanduser().absolute() if env else Path.cwd()


def state_path(value: str | Path) -> Path:
    """A path from the configuration or the command line, relative ones under `home()`."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else home() / path


class MissingKey(ConfigError, KeyError):
    """A key the code needs is not in the file (also a KeyError, for callers that fall back)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Section(dict):
    """A mapping read from a configuration file that names the file and the key path
    when a key the code asks for is missing, so a hand-edited config fails with one
    line a person can act on rather than a KeyError."""

    def __init__(self, data: dict, file: Path, path: str = "") -> None:
        super().__init__(data)
        self.file, self.path = file, path

    def __missing__(self, key: str) -> Any:
        raise MissingKey(f"{self.file}: missing key {self.path}{key}")


def _sections(node: Any, file: Path, path: str = "") -> Any:
    if isinstance(node, dict):
        return Section({k: _sections(v, file, f"{path}{k}.") for k, v in node.items()}, file, path)
    if isinstance(node, list):
        return [_sections(v, file, path) for v in node]
    return node


_KINDS = {int: "a whole number", float: "a number", str: "a single value", bool: "true or false"}


def typed(section: dict[str, Any], key: str, kind: type) -> Any:
    """`section[key]` as `kind` (int, float, str or bool). A missing key, or a value of
    another kind (a word where a number belongs, 2.5 where a count belongs), is one
    ConfigError naming the file and the key."""
    value = section[key]  # a Section names the file and the key when it is missing
    flag = isinstance(value, bool)  # YAML's true/false is an int to Python, never a count here
    if kind is str:
        ok = value is not None and not isinstance(value, (dict, list)) and not flag
    elif kind is float:
        ok = isinstance(value, (int, float)) and not flag
    else:
        ok = isinstance(value, kind) and (kind is bool or not flag)
    if not ok:
        where = f"{section.file}: {section.path}{key}" if isinstance(section, Section) else key
        raise ConfigError(f"{where}: {value!r} is not {_KINDS[kind]}")
    return kind(value)


@lru_cache(maxsize=None)
def _load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return _sections(data, path)


def load(name: str) -> dict[str, Any]:
    """The parsed `configs/<name>.yaml`, topic names prefixed (see the module doc)."""
    path = config_dir() / f"{name}.yaml"
    data = _load(path)
    return _sections(_prefixed(data), path) if os.environ.get("CLEARLINE_TOPIC_PREFIX") else data


def topic(name: str) -> str:
    """A topic's name in this deployment."""
    return os.environ.get("CLEARLINE_TOPIC_PREFIX", "") + name


def _prefixed(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        return {(topic(k) if key == "topics" else k): _prefixed(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_prefixed(v) for v in node]
    if isinstance(node, str) and (key == "topic" or key.endswith("_topic")):
        return topic(node)
    return node


def bootstrap_servers() -> str:
    """Kafka bootstrap servers: KAFKA_BOOTSTRAP_SERVERS, else configs/topics.yaml."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or str(load("topics")["bootstrap_servers"])
