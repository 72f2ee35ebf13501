"""Loading of the YAML files in `configs/`.

One place resolves where `configs/` is (the repository's own, or CLEARLINE_CONFIG_DIR)
and reads a file by name, so every command sees the same configuration and a missing or
malformed file is reported by name instead of as a traceback.

Topic names get CLEARLINE_TOPIC_PREFIX in front of them here, once for every reader: a
value under a key named `topic` or `…_topic`, and every name under `topics:`. A demo or
a test run can then have topics of its own on a shared broker without any command
knowing about it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A configuration file is missing or does not say what it must."""


def config_dir() -> Path:
    return Path(os.environ.get("CLEARLINE_CONFIG_DIR", REPO_ROOT / "configs"))


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
    return data


def load(name: str) -> dict[str, Any]:
    """The parsed `configs/<name>.yaml`, topic names prefixed (see the module doc)."""
    data = _load(config_dir() / f"{name}.yaml")
    return _prefixed(data) if os.environ.get("CLEARLINE_TOPIC_PREFIX") else data


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
