"""The ledger's settings: where its state lives, what it consumes and where refusals go,
from configs/ledger.yaml unless a command overrides them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clearline import config


@dataclass(frozen=True)
class LedgerSettings:
    """Everything the flow needs, from configs/ledger.yaml unless overridden."""

    bootstrap: str
    topic: str
    deadletter_topic: str
    state_dir: Path
    batch_size: int
    metrics_port: int = 0
    duckdb_memory_limit: str = "512MB"
    duckdb_checkpoint_threshold: str = "256MB"
    duckdb_threads: int = 1
    publish_interval_s: float = 5.0
    once: bool = False

    @classmethod
    def from_config(
        cls,
        state_dir: Path | None = None,
        topic: str | None = None,
        deadletter_topic: str | None = None,
        once: bool = False,
    ) -> "LedgerSettings":
        cfg = config.load("ledger")
        return cls(
            bootstrap=config.bootstrap_servers(),
            topic=topic or cfg["topic"],
            deadletter_topic=deadletter_topic or cfg["deadletter_topic"],
            state_dir=Path(state_dir) if state_dir else config.state_path(cfg["state_dir"]),
            batch_size=config.typed(cfg, "batch_size", int),
            metrics_port=config.typed(cfg, "metrics_port", int),
            duckdb_memory_limit=config.typed(cfg, "duckdb_memory_limit", str),
            duckdb_checkpoint_threshold=config.typed(cfg, "duckdb_checkpoint_threshold", str),
            duckdb_threads=config.typed(cfg, "duckdb_threads", int),
            publish_interval_s=config.typed(cfg, "publish_interval_s", float),
            once=once,
        )
