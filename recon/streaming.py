"""The reconciliation flow's one piece of state: everything arrived so far, and what has
been published, around `clearline.recon.matching.continuous.Continuous`.

One key holds it all, so the watermark is global. Keying by processor and currency
would split the work, but a bank line names no processor (its reference is a payout or
repayment id, or nothing at all), a merchant payout or a buyer repayment belongs to no
processor, and a currency mismatch puts the two sides of one break in two currencies: a
partition could call a line "unexplained" that another partition explains. With one key
the matcher sees what the batch sees, so the stream's variances are the batch's by
construction; admission, posting and line decoding (the per-message work) still run on
every worker, next to their Kafka partitions.

When to reconcile: the event-time watermark (the latest admitted event's time, or the
latest day a line carries, as the batch takes it) decides every deadline; processing
time only decides when the held state is reconciled: at a tick (every
`advance_interval_s`) after which nothing more arrived in the last interval (the inputs
are caught up), at the latest every `CATCH_UP_TICKS` ticks while a backlog streams in,
and once more at the end of input. A `--once` run reconciles only at the end: its input
is a fixed backlog, as a batch's is. Reconciling in the middle of a backlog
would judge one topic's records before the other topic's have been read (events far
ahead of the lines that answer them), publish breaks and withdraw them again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import polars as pl
from bytewax.operators import StatefulLogic

from clearline.recon.arrivals import Arrivals, line_frames
from clearline.recon.matching import adjusted, expectations
from clearline.recon.matching.continuous import Changes, Continuous, Retirement
from clearline.recon.matching.reconcile import watermark as latest_of
from clearline.recon.matching.rules import Tolerances

CATCH_UP_TICKS = 12


@dataclass(frozen=True)
class Publication:
    """What the sink acts on: `changes` after a reconciliation, None for a tick (the sink
    still applies queued resolutions then)."""

    changes: Changes | None
    watermark: datetime | None
    counts: dict[str, int]


@dataclass
class Held:
    """The snapshot: everything needed to go on after a restart."""

    matcher: Continuous
    events: set[str] = field(default_factory=set)  # ids of the events that set up an expectation
    lines: set[tuple[str, int]] = field(default_factory=set)
    watermark: datetime | None = None
    dirty: bool = False
    counts: dict[str, int] = field(
        default_factory=lambda: {
            "consumed": 0,
            "refused": 0,
            "bad_lines": 0,
            "expectations": 0,
            "lines": 0,
            "advances": 0,
        }
    )


class Matcher(StatefulLogic[Arrivals, Publication, Held]):
    def __init__(self, held: Held, interval: timedelta, once: bool):
        self.held, self.interval, self.once = held, interval, once
        self.next_at = datetime.now(timezone.utc) + interval
        self.arrived = False  # something came in since the last tick
        self.waited = 0  # ticks skipped because the inputs were still streaming in

    def on_item(self, value: Arrivals) -> tuple[list[Publication], bool]:
        held = self.held
        settle, movements = expectations.frames([r for eid, r in value.expected.items() if eid not in held.events])
        lines, bank, statements = line_frames([line for key, line in value.lines.items() if key not in held.lines])
        frames = {
            "expected_settlements": settle,
            "expected_movements": movements,
            "settlement_lines": lines,
            "bank_lines": bank,
            "statements": statements,
            "adjustments": adjusted.frame([row for eid, row in value.adjustments.items() if eid not in held.events]),
        }
        back = held.matcher.bring_back(**frames)  # the cut-out units these touch come back first,
        if any(frame.height for frame in back.values()):  # and a message read again of one of them is known again
            events, keys = _ids(back)
            held.events |= events
            held.lines |= keys
            frames = _unseen(frames, events, keys)
        held.events.update(value.expected)
        held.events.update(value.adjustments)
        held.lines.update(value.lines)
        held.matcher.add(**frames)
        new_expected = frames["expected_settlements"].height + frames["expected_movements"].height
        new_lines = sum(frames[name].height for name in ("settlement_lines", "bank_lines", "statements"))
        new_entries = frames["adjustments"].height
        moved = latest_of(held.watermark, value.latest)
        for name, n in (
            ("consumed", value.consumed),
            ("refused", value.refused),
            ("bad_lines", value.bad_lines),
            ("expectations", new_expected),
            ("lines", new_lines),
        ):
            held.counts[name] += n
        held.dirty |= bool(new_expected or new_lines or new_entries) or moved != held.watermark
        self.arrived = True
        held.watermark = moved
        return [], StatefulLogic.RETAIN

    def _advance(self) -> Publication:
        held = self.held
        held.dirty = False
        held.counts["advances"] += 1
        changes = held.matcher.advance(held.watermark)
        if any(frame.height for frame in changes.retired.values()):  # cut out: the index's to know now, not these sets'
            events, keys = _ids(changes.retired)
            held.events -= events
            held.lines -= keys
        return Publication(changes, held.watermark, dict(held.counts))

    def on_notify(self) -> tuple[list[Publication], bool]:
        self.next_at = datetime.now(timezone.utc) + self.interval
        streaming, self.arrived = self.arrived, False
        self.waited = self.waited + 1 if streaming else 0
        due = not streaming or self.waited >= CATCH_UP_TICKS
        if self.held.dirty and self.held.watermark is not None and due and not self.once:
            self.waited = 0
            return [self._advance()], StatefulLogic.RETAIN
        return [Publication(None, self.held.watermark, dict(self.held.counts))], StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[Publication], bool]:
        if self.held.dirty and self.held.watermark is not None:
            return [self._advance()], StatefulLogic.RETAIN
        return [Publication(None, self.held.watermark, dict(self.held.counts))], StatefulLogic.RETAIN

    def notify_at(self) -> datetime:
        return self.next_at

    def snapshot(self) -> Held:
        return copy.deepcopy(self.held)  # the held sets and lists go on growing after this


_EVENTS = ("expected_settlements", "expected_movements", "adjustments")  # the inputs that are ledger events


def _ids(frames: dict[str, pl.DataFrame]) -> tuple[set[str], set[tuple[str, int]]]:
    """(event ids, line keys as `Held` knows them) of expectation, entry and line rows."""
    events = {eid for name in _EVENTS for eid in frames[name]["event_id"]}
    keys = {
        key
        for name in ("settlement_lines", "bank_lines")
        for key in zip(frames[name]["source_file"], frames[name]["line_no"], strict=True)
    }
    return events, keys


def _unseen(frames: dict[str, pl.DataFrame], events: set[str], keys: set[tuple[str, int]]) -> dict[str, pl.DataFrame]:
    """`frames` without the rows already held (`events`, `keys`)."""
    known = pl.DataFrame(list(keys), schema={"source_file": pl.String, "line_no": pl.Int64}, orient="row")
    out = dict(frames)
    for name in _EVENTS:
        out[name] = frames[name].filter(~pl.col("event_id").is_in(list(events)))
    for name in ("settlement_lines", "bank_lines"):
        out[name] = frames[name].join(known, on=["source_file", "line_no"], how="anti")
    return out


def builder(
    tol: Tolerances,
    interval: timedelta,
    once: bool,
    books: pl.DataFrame | None = None,
    retire: Retirement | None = None,
):
    """The stateful step's builder: a fresh matcher, or the one a snapshot resumes.
    `books`: the ledger's bank accounts and opening capital (`continuity.bank_books`) the
    statements' balances are tied to; None ties none. `retire`: the horizon after which
    settled items leave the state, and where they go (None: everything is held)."""
    return lambda resume: Matcher(
        resume if resume is not None else Held(Continuous(tol, books, retire)), interval, once
    )
