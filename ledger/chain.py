"""The ledger's hash chain: tamper evidence for postings.

Postings are chained per (topic, partition) in (offset, seq) order — the order Kafka fixes
for a partition — so replaying the topic from offset 0 into a fresh store rebuilds the
same chains byte for byte whatever the interleaving across partitions or the batching:

    genesis(topic, partition) = SHA-256("clearline-ledger-v1\\x00<topic>\\x00<partition>")
    link                      = SHA-256(prev_hash || canonical(posting))
    canonical(posting)        = UTF-8 of the compact JSON array (ASCII escapes, as
                                `json.dumps(..., separators=(",", ":"))` writes it)
                                [event_id, seq, account, side, amount_minor, currency,
                                 occurred_at as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC)]

`seq` is the leg's index within its event (0, 1, …). Hashes are stored as lowercase hex.
The genesis binds a chain to its partition, so a chain cannot be passed off as another's.

The ledger head is one digest over the partition heads in (topic, partition) order:

    head = SHA-256(concat of "<topic>\\x00<partition>\\x00<chain length>\\x00<head hex>\\n")

over the partitions that hold at least one posting (an empty ledger's head is SHA-256 of
nothing). Publishing the head (the snapshot manifest carries it) anchors the whole ledger.

`verify(source)` recomputes every chain from the stored rows and names the first bad link
of each partition; it also checks each chain's end against the partition head the store
keeps in `offsets`, which catches a truncated tail (deleting the newest postings leaves
every remaining link valid). `source` is a LedgerStore or a published Snapshot — anything
with a DuckDB connection `con` exposing `postings` and `offsets`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from json.encoder import encode_basestring_ascii as _q
from typing import Any, Iterable, Sequence

import numpy as np
import polars as pl

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def genesis(topic: str, partition: int) -> str:
    """The prev_hash of a partition's first posting."""
    return hashlib.sha256(f"clearline-ledger-v1\x00{topic}\x00{partition}".encode()).hexdigest()


def iso_utc(ts: datetime) -> str:
    """The chain's spelling of an event time: UTC, always six fraction digits, 'Z'.
    A naive datetime is taken to be UTC already."""
    if ts.tzinfo is not None and ts.tzinfo is not timezone.utc:
        ts = ts.astimezone(timezone.utc)
    return (
        f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}.{ts.microsecond:06d}Z"
    )


def epoch_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch (naive = UTC), as the store keeps `occurred_at`."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return (ts - _EPOCH) // _US


def iso_from_epoch_us(us: int) -> str:
    return iso_utc(_EPOCH + timedelta(microseconds=us))


def iso_from_epoch_us_many(us: Sequence[int]) -> list[str]:
    """`iso_from_epoch_us` of each, by one Polars strftime over the batch (chrono's `%Y`
    is zero-padded to four digits like `iso_utc`'s; a test holds the two equal over the
    whole datetime range): a tenth of the cost of spelling each in Python."""
    return pl.Series(us, dtype=pl.Int64).cast(pl.Datetime("us")).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_list()


def canonical(
    event_id: str, seq: int, account: str, side: str, amount_minor: int, currency: str, occurred_at_iso: str
) -> bytes:
    """The bytes a posting contributes to its chain (see the module docstring)."""
    return (
        f"[{_q(event_id)},{int(seq)},{_q(account)},{_q(side)},{int(amount_minor)},{_q(currency)},{_q(occurred_at_iso)}]"
    ).encode()


# What JSON writes as itself between quotes: printable ASCII but '"' and '\\' (every id,
# account, side and currency the contract admits). Anything else is escaped by `_q`.
_PLAIN = r"^[ !#-\[\]-~]*$"


def quoted(texts: pl.Series) -> pl.Series:
    """`_q` of every text (its JSON spelling, quotes included): one Polars pass when all
    are plain, else `_q` one by one."""
    if texts.str.contains(_PLAIN).all():
        return '"' + texts + '"'
    return pl.Series(list(map(_q, texts.to_list())), dtype=pl.String)


def canonical_many(
    event_ids: pl.Series,
    occurred_at_iso: pl.Series,
    counts: np.ndarray,
    account: pl.Series,
    side: pl.Series,
    amount_minor: pl.Series,
    currency: pl.Series,
) -> list[bytes]:
    """`canonical` of every leg of a run of events, built as columns in one Polars pass
    (a test holds the bytes equal to `canonical`'s): event i (`event_ids[i]`,
    `occurred_at_iso[i]`) has `counts[i]` legs, seq 0, 1, …, whose fields are the i-th
    run of the leg columns."""
    n = int(counts.sum())
    owner = pl.Series(np.repeat(np.arange(len(counts)), counts))
    frame = pl.DataFrame(
        {
            "event_id": quoted(event_ids).gather(owner),
            "seq": np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts),
            "account": quoted(account),
            "side": quoted(side),
            "amount": amount_minor,
            "currency": quoted(currency),
            "at": quoted(occurred_at_iso).gather(owner),
        }
    )
    comma = pl.lit(",")
    text = pl.concat_str(
        pl.lit("["), "event_id", comma, "seq", comma, "account", comma, "side", comma, "amount", comma, "currency",
        comma, "at", pl.lit("]"),
    )  # fmt: skip
    return frame.select(text.cast(pl.Binary)).to_series().to_list()


def link_many(prev: bytes, data: Iterable[bytes]) -> list[bytes]:
    """The raw digests of consecutive postings of one chain (their `canonical` bytes),
    continuing from the raw digest `prev`: `link` of each, without the hex."""
    out: list[bytes] = []
    append = out.append
    sha = hashlib.sha256
    for d in data:
        prev = sha(prev + d).digest()
        append(prev)
    return out


def link(prev_hash: str, data: bytes) -> str:
    """SHA-256(prev_hash bytes || data) as hex."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + data).hexdigest()


def ledger_head(partition_heads: Iterable[tuple[str, int, int, str]]) -> str:
    """One digest over (topic, partition, chain length, head) rows; empty chains are skipped."""
    h = hashlib.sha256()
    for topic, partition, length, head_hex in sorted(partition_heads, key=lambda r: (r[0], r[1])):
        if length:
            h.update(f"{topic}\x00{partition}\x00{length}\x00{head_hex}\n".encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------ verify


@dataclass(frozen=True, slots=True)
class BadLink:
    """A posting whose stored chain fields do not match what its content implies."""

    topic: str
    partition: int
    offset: int | None
    seq: int | None
    event_id: str | None
    account: str | None
    problem: str  # "hash" | "prev_hash" | "head" | "length"
    expected: str
    stored: str

    def __str__(self) -> str:
        if self.problem in ("head", "length"):
            return (
                f"{self.topic}[{self.partition}]: chain {self.problem} is {self.expected} by the postings "
                f"but the store records {self.stored} (postings missing or added at the tail?)"
            )
        what = "hash" if self.problem == "hash" else "prev_hash (link to the posting before)"
        return (
            f"{self.topic}[{self.partition}] offset {self.offset} seq {self.seq} "
            f"(event {self.event_id}, account {self.account}): {what} expected {self.expected}, "
            f"stored {self.stored}"
        )


@dataclass
class VerifyResult:
    ok: bool
    postings: int  # postings checked
    partitions: int  # chains checked
    head: str  # ledger head recomputed from the postings
    stored_head: str  # ledger head from the store's partition heads
    bad_links: list[BadLink] = field(default_factory=list)  # the first bad link per partition

    @property
    def first_bad(self) -> BadLink | None:
        return self.bad_links[0] if self.bad_links else None

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.postings} postings in {self.partitions} chains, head {self.head}"
        return "FAILED: " + "; ".join(map(str, self.bad_links))


def _con(source: Any):
    return source.cursor() if hasattr(source, "cursor") else source.con.cursor()


_VERIFY_SQL = """
    SELECT topic, partition, "offset", seq, event_id, account, side, amount_minor, currency,
           epoch_us(occurred_at) AS us, prev_hash, hash
    FROM postings ORDER BY topic, partition, "offset", seq
"""


def verify(source: Any, batch_rows: int = 200_000) -> VerifyResult:
    """Recompute every chain of `source` (a LedgerStore or Snapshot) from its rows."""
    con = _con(source)
    stored = {
        (t, p): (n, h)
        for t, p, n, h in con.execute("SELECT topic, partition, chain_length, head FROM offsets").fetchall()
    }
    bad: list[BadLink] = []
    heads: dict[tuple[str, int], tuple[int, str]] = {}
    broken: set[tuple[str, int]] = set()
    checked = 0
    key = None
    prev = ""
    count = 0
    reader = con.sql(_VERIFY_SQL).to_arrow_reader(batch_rows)
    for rb in reader:
        cols = rb.to_pydict()
        for topic, partition, offset, seq, eid, account, side, amount, currency, us, prev_hash, hash_ in zip(
            cols["topic"],
            cols["partition"],
            cols["offset"],
            cols["seq"],
            cols["event_id"],
            cols["account"],
            cols["side"],
            cols["amount_minor"],
            cols["currency"],
            cols["us"],
            cols["prev_hash"],
            cols["hash"],
        ):
            checked += 1
            if (topic, partition) != key:
                if key is not None:
                    heads[key] = (count, prev)
                key, prev, count = (topic, partition), genesis(topic, partition), 0
            count += 1
            if key in broken:
                continue
            if prev_hash != prev:
                bad.append(BadLink(topic, partition, offset, seq, eid, account, "prev_hash", prev, prev_hash))
                broken.add(key)
                continue
            expected = link(prev, canonical(eid, seq, account, side, amount, currency, iso_from_epoch_us(us)))
            if expected != hash_:
                bad.append(BadLink(topic, partition, offset, seq, eid, account, "hash", expected, hash_))
                broken.add(key)
                continue
            prev = hash_
    if key is not None:
        heads[key] = (count, prev)
    for k in sorted(set(stored) | set(heads)):
        if k in broken:
            continue
        n_have, h_have = heads.get(k, (0, genesis(*k)))
        n_rec, h_rec = stored.get(k, (0, genesis(*k)))
        if n_have != n_rec:
            bad.append(BadLink(k[0], k[1], None, None, None, None, "length", str(n_have), str(n_rec)))
        elif h_have != h_rec:
            bad.append(BadLink(k[0], k[1], None, None, None, None, "head", h_have, h_rec))
    bad.sort(key=lambda b: (b.topic, b.partition))
    return VerifyResult(
        ok=not bad,
        postings=checked,
        partitions=len(heads),
        head=ledger_head((t, p, n, h) for (t, p), (n, h) in heads.items()),
        stored_head=ledger_head((t, p, n, h) for (t, p), (n, h) in stored.items()),
        bad_links=bad,
    )


def head(source: Any) -> str:
    """The ledger head from the partition heads the store keeps (cheap; `verify` recomputes)."""
    con = _con(source)
    return ledger_head(con.execute("SELECT topic, partition, chain_length, head FROM offsets").fetchall())
