"""The ledger's invariants, checked from the stored rows (never from counters in memory).

`check(source)` runs every check over a LedgerStore or a published Snapshot (anything
with a DuckDB connection `con` exposing `events`, `postings`, `rejections`, `offsets`)
and returns one Violation per problem found, each with a message a person can act on:

* balance      — debits = credits per currency over the whole ledger, and per event;
                 every leg is a debit or a credit of a non-negative amount;
* floor        — no account below its floor: `floor_of(account) -> int | None` (minor
                 units; None = no floor) is compared with the balance on the account's
                 normal side, `normal_side(account) -> "debit" | "credit"` (default
                 "debit": balance = debits − credits). The chart plugs both in;
* offsets      — per partition consumed = posted + duplicate + dead_lettered, and the
                 counters agree with the rows: posted = posted events first seen there,
                 dead_lettered = rejection rows, chain_length = posting rows, no row at
                 or beyond next_offset;
* legs         — each posted event has exactly `legs` postings; rejected or unknown
                 events have none.

The hash chain is checked by `clearline.ledger.chain.verify`. At most `limit` violations are
listed per check; a final one says how many more there were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

FloorOf = Callable[[str], "int | None"]
NormalSide = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Violation:
    check: str  # "balance" | "floor" | "offsets" | "legs"
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"[{self.check}] {self.message}"


def _con(source: Any):
    """A read connection of its own: `source.cursor()` (store, snapshot) or `source.con`."""
    return source.cursor() if hasattr(source, "cursor") else source.con.cursor()


def _listed(check: str, rows: list[tuple], limit: int, make: Callable[[tuple], Violation]) -> list[Violation]:
    out = [make(r) for r in rows[:limit]]
    if len(rows) > limit:
        out.append(Violation(check, f"… and {len(rows) - limit} more {check} violations", {"more": len(rows) - limit}))
    return out


def check_balance(source: Any, limit: int = 20) -> list[Violation]:
    con = _con(source)
    out: list[Violation] = []
    for currency, debit, credit in con.execute("""
            SELECT currency,
                   CAST(SUM(CASE WHEN side = 'debit'  THEN amount_minor ELSE 0 END) AS HUGEINT),
                   CAST(SUM(CASE WHEN side = 'credit' THEN amount_minor ELSE 0 END) AS HUGEINT)
            FROM postings GROUP BY currency
            HAVING SUM(CASE WHEN side = 'debit' THEN amount_minor ELSE 0 END)
                <> SUM(CASE WHEN side = 'credit' THEN amount_minor ELSE 0 END)
            ORDER BY currency""").fetchall():
        out.append(
            Violation(
                "balance",
                f"{currency}: total debits {debit} ≠ total credits {credit} (off by {debit - credit} minor units)",
                {"currency": currency, "debit": debit, "credit": credit},
            )
        )
    rows = con.execute("""
            SELECT event_id, currency,
                   CAST(SUM(CASE WHEN side = 'debit'  THEN amount_minor ELSE 0 END) AS HUGEINT) AS d,
                   CAST(SUM(CASE WHEN side = 'credit' THEN amount_minor ELSE 0 END) AS HUGEINT) AS c,
                   MIN(topic), MIN(partition), MIN("offset")
            FROM postings GROUP BY event_id, currency HAVING d <> c
            ORDER BY MIN(topic), MIN(partition), MIN("offset"), event_id, currency""").fetchall()
    out += _listed(
        "balance",
        rows,
        limit,
        lambda r: Violation(
            "balance",
            f"event {r[0]} ({r[4]}[{r[5]}]@{r[6]}) is unbalanced in {r[1]}: debits {r[2]} ≠ credits {r[3]}",
            {
                "event_id": r[0],
                "currency": r[1],
                "debit": r[2],
                "credit": r[3],
                "topic": r[4],
                "partition": r[5],
                "offset": r[6],
            },
        ),
    )
    rows = con.execute("""
            SELECT topic, partition, "offset", seq, event_id, account, side, amount_minor FROM postings
            WHERE side NOT IN ('debit', 'credit') OR amount_minor < 0
            ORDER BY topic, partition, "offset", seq""").fetchall()
    out += _listed(
        "balance",
        rows,
        limit,
        lambda r: Violation(
            "balance",
            f"posting {r[0]}[{r[1]}]@{r[2]} seq {r[3]} (event {r[4]}, account {r[5]}) is malformed: "
            f"side {r[6]!r}, amount {r[7]}",
            {"topic": r[0], "partition": r[1], "offset": r[2], "seq": r[3], "event_id": r[4], "account": r[5]},
        ),
    )
    return out


def check_floors(
    source: Any, floor_of: FloorOf | None, normal_side: NormalSide | None = None, limit: int = 20
) -> list[Violation]:
    if floor_of is None:
        return []
    normal_side = normal_side or (lambda account: "debit")
    rows = (
        _con(source)
        .execute("""
            SELECT account, currency,
                   CAST(SUM(CASE WHEN side = 'debit' THEN amount_minor ELSE -amount_minor END) AS HUGEINT)
            FROM postings GROUP BY account, currency ORDER BY account, currency""")
        .fetchall()
    )
    floors: dict[str, tuple[int | None, str]] = {}
    bad = []
    for account, currency, net in rows:
        if account not in floors:
            floors[account] = (floor_of(account), normal_side(account))
        floor, side = floors[account]
        if floor is None:
            continue
        balance = net if side == "debit" else -net
        if balance < floor:
            bad.append((account, currency, balance, floor, side))
    return _listed(
        "floor",
        bad,
        limit,
        lambda r: Violation(
            "floor",
            f"{r[0]} is below its floor in {r[1]}: balance {r[2]} < floor {r[3]} ({r[4]}-normal, minor units)",
            {"account": r[0], "currency": r[1], "balance": r[2], "floor": r[3], "normal_side": r[4]},
        ),
    )


def check_offsets(source: Any, limit: int = 20) -> list[Violation]:
    con = _con(source)
    rows = con.execute("""
        WITH ev AS (SELECT topic, partition, COUNT(*) FILTER (WHERE status = 'posted') AS posted,
                           MAX("offset") AS last FROM events GROUP BY ALL),
             rj AS (SELECT topic, partition, COUNT(*) AS n, MAX("offset") AS last FROM rejections GROUP BY ALL),
             po AS (SELECT topic, partition, COUNT(*) AS n, MAX("offset") AS last FROM postings GROUP BY ALL),
             keys AS (SELECT topic, partition FROM offsets UNION SELECT topic, partition FROM ev
                      UNION SELECT topic, partition FROM rj UNION SELECT topic, partition FROM po)
        SELECT k.topic, k.partition, o.next_offset, o.consumed, o.posted, o.duplicate, o.dead_lettered,
               o.chain_length, COALESCE(ev.posted, 0), COALESCE(rj.n, 0), COALESCE(po.n, 0),
               GREATEST(ev.last, rj.last, po.last)
        FROM keys k LEFT JOIN offsets o USING (topic, partition) LEFT JOIN ev USING (topic, partition)
             LEFT JOIN rj USING (topic, partition) LEFT JOIN po USING (topic, partition)
        ORDER BY k.topic, k.partition""").fetchall()
    out: list[Violation] = []
    for topic, part, next_offset, consumed, posted, dup, dl, chain_len, ev_posted, rj_rows, po_rows, last in rows:
        where = f"{topic}[{part}]"
        info = {"topic": topic, "partition": part}
        if next_offset is None:
            out.append(Violation("offsets", f"{where} holds rows but has no offsets record", info))
            continue
        if consumed != posted + dup + dl:
            out.append(
                Violation(
                    "offsets",
                    f"{where}: consumed {consumed} ≠ posted {posted} + duplicate {dup} + "
                    f"dead-lettered {dl} (= {posted + dup + dl})",
                    info | {"consumed": consumed, "posted": posted, "duplicate": dup, "dead_lettered": dl},
                )
            )
        if posted != ev_posted:
            out.append(
                Violation(
                    "offsets",
                    f"{where}: posted counter {posted} but {ev_posted} events were first posted from this partition",
                    info,
                )
            )
        if dl != rj_rows:
            out.append(Violation("offsets", f"{where}: dead-lettered counter {dl} but {rj_rows} rejection rows", info))
        if chain_len != po_rows:
            out.append(Violation("offsets", f"{where}: chain length {chain_len} but {po_rows} posting rows", info))
        if last is not None and last >= next_offset:
            out.append(
                Violation(
                    "offsets",
                    f"{where}: a row at offset {last} is at or beyond the committed next_offset {next_offset}",
                    info,
                )
            )
    return out[:limit] + (
        [Violation("offsets", f"… and {len(out) - limit} more offsets violations")] if len(out) > limit else []
    )


def check_legs(source: Any, limit: int = 20) -> list[Violation]:
    rows = (
        _con(source)
        .execute("""
        WITH n AS (SELECT event_id, COUNT(*) AS n, MIN(topic) AS topic, MIN(partition) AS partition,
                          MIN("offset") AS "offset" FROM postings GROUP BY event_id)
        SELECT COALESCE(e.event_id, n.event_id), e.status, COALESCE(e.legs, 0), COALESCE(n.n, 0),
               COALESCE(n.topic, e.topic), COALESCE(n.partition, e.partition), COALESCE(n."offset", e."offset")
        FROM events e FULL OUTER JOIN n ON n.event_id = e.event_id
        WHERE e.event_id IS NULL
           OR (e.status = 'posted' AND e.legs <> COALESCE(n.n, 0))
           OR (e.status = 'rejected' AND n.n IS NOT NULL)
        ORDER BY 5, 6, 7, 1""")
        .fetchall()
    )

    def make(r: tuple) -> Violation:
        eid, status, legs, n = r[:4]
        if status is None:
            msg = f"{n} postings for event {eid}, which the events table does not hold"
        elif status == "rejected":
            msg = f"event {eid} is rejected but has {n} postings"
        else:
            msg = f"event {eid} was posted with {legs} legs but {n} postings are stored"
        return Violation(
            "legs", msg + f" ({r[4]}[{r[5]}]@{r[6]})", {"event_id": eid, "status": status, "legs": legs, "postings": n}
        )

    return _listed("legs", rows, limit, make)


def check(
    source: Any, floor_of: FloorOf | None = None, normal_side: NormalSide | None = None, limit: int = 20
) -> list[Violation]:
    """Every invariant over `source`; an empty list means the ledger holds."""
    return (
        check_balance(source, limit)
        + check_floors(source, floor_of, normal_side, limit)
        + check_offsets(source, limit)
        + check_legs(source, limit)
    )
