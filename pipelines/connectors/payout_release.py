"""Releasing what a freeze held, when a person lifts it: one `payout.released` event per
payout the ledger holds for that freeze, published to payments.events and signed like
every other event, so the ledger sends each from `payouts_held` through the bank and
reconciliation starts expecting its bank debit.

What is held is read from the ledger's event archive (the `payout.held` events naming the
freeze's kind and target, less the payouts a `payout.released` already sent), never from
a flow's store. The release ids are derived from the held events' (`freezes.release_of`),
so lifting twice, or retrying after Kafka timed out, releases nothing twice.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from clearline import events
from clearline.freezes import release_of
from clearline.ledger import archive
from clearline.pipelines.connectors.signed_publish import publish_signed


def held_payouts(archive_root: Path, kind: str, target: str) -> list[events.Event]:
    """The `payout.held` events of the freeze on (kind, target) that no release has sent."""
    rows = (
        archive.scan(Path(archive_root))
        .filter(pl.col("event_type").is_in(["payout.held", "payout.released"]))
        .select("body")
        .collect()
    )
    decoded = [events.decode(body) for body in rows["body"]]
    sent = {e.payload.payout_id for e in decoded if isinstance(e.payload, events.PayoutReleased)}
    return sorted(
        (
            e
            for e in decoded
            if isinstance(e.payload, events.PayoutHeld)
            and (e.payload.frozen_kind, e.payload.frozen_target) == (kind, target)
            and e.payload.payout_id not in sent
        ),
        key=lambda e: (e.occurred_at, e.event_id),
    )


def release_held(
    archive_root: Path,
    kind: str,
    target: str,
    released_by: str,
    *,
    at: datetime | None = None,
    config_dir: Path | str | None = None,
    bootstrap: str | None = None,
) -> list[events.Event]:
    """Publish the release of every payout the freeze on (kind, target) holds; the
    releases, once Kafka acknowledged them all (PublishError if it did not: nothing is
    lost, the same call releases the same payouts again)."""
    at = at or datetime.now(timezone.utc)
    releases = [release_of(e, released_by, at) for e in held_payouts(archive_root, kind, target)]
    if releases:
        publish_signed(releases, config_dir=config_dir, bootstrap=bootstrap)
    return releases
