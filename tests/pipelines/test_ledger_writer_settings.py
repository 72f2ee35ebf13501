"""The ledger flow's sink opens its store with the DuckDB threads of configs/ledger.yaml."""

from __future__ import annotations

from dataclasses import replace

from clearline.ledger import LedgerSettings
from clearline.pipelines.connectors.ledger_sink import LedgerWriter


def test_the_store_runs_with_the_configured_duckdb_threads(tmp_path):
    """One flow process per core: DuckDB's default (a thread per core) only contends for it."""
    settings = replace(LedgerSettings.from_config(state_dir=tmp_path), publish_interval_s=3600)
    assert settings.duckdb_threads == 1  # the shipped default
    writer = LedgerWriter(settings, shard=0)
    try:
        con = writer._store.cursor()
        threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    finally:
        writer.close()
    assert threads == 1
