"""After an approval, what the running pipeline does with it: the ledger flow and the
recon flow run once more on a deployment copy's state (resuming where the deployment's
stopped), and the ledger's net per account as its published snapshot says."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from clearline.ledger import access
from clearline.recon import PUBLISHED_VARIANCES
from tests.pipelines.test_recon_flow import clearline


def net_by_account(ledger: Path, name: str) -> dict[str, int]:
    """Debits minus credits of every account named `name` (any tenant and sub-ledger key)."""
    with access.snapshot(ledger) as snap:
        rows = snap.sql(
            "SELECT account, sum(CASE side WHEN 'debit' THEN amount_minor ELSE -amount_minor END)::BIGINT AS net"
            " FROM postings WHERE split_part(account, ':', 2) = ? GROUP BY account",
            [name],
        )
    return dict(rows.iter_rows())


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        a: after.get(a, 0) - before.get(a, 0) for a in after.keys() | before.keys() if after.get(a) != before.get(a)
    }


def run_flows(dep, settings, root: Path) -> None:
    ledger = ["--topic", dep.events, "--deadletter-topic", dep.dlq, "--state-dir", str(settings.ledger_state)]
    clearline("ledger", "run", "--once", *ledger, "--metrics-port", "0")
    topics = ["--events-topic", dep.events, "--settlements-topic", dep.lines, "--variances-topic", dep.variances]
    state = ["--state-dir", str(settings.recon_state)]
    clearline("recon", "run", "--once", "--inbox", str(root / "inbox"), *state, *topics)


def variance(settings, vid: str) -> dict:
    frame = pl.read_parquet(settings.recon_state / PUBLISHED_VARIANCES)
    return frame.filter(pl.col("variance_id") == vid).row(0, named=True)
