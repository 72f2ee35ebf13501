"""Loading of the YAML files in `configs/`.

One place resolves where `configs/` is (the repository's own, or CLEARLINE_CONFIG_DIR)
and reads a file by name, so every command sees the same configuration and a missing or
malformed file is reported by name instead of as a traceback.
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
    """The parsed `configs/<name>.yaml`."""
    return _load(config_dir() / f"{name}.yaml")


def bootstrap_servers() -> str:
    """Kafka bootstrap servers: KAFKA_BOOTSTRAP_SERVERS, else configs/topics.yaml."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or str(load("topics")["bootstrap_servers"])
