"""Continuous reconciliation: the inputs seen so far, and what to publish as the event-time
watermark moves on.

The stream's core (the Bytewax flow is wiring around it): inputs arrive in any order and
are added as they come; `advance(watermark)` reconciles everything held at that watermark
and says which variances are new since the last publication and which published ones no
longer hold. With the inputs fixed, a later watermark only adds variances (pending items
come due, ids unchanged); a record arriving after its deadline is what withdraws one (a
line first called missing_at_processor arrives late: that variance is gone, a
late_settlement is new). At the end the published set is exactly what a batch over the
same inputs gives, because both are one `reconcile` call on the same frames.

Without `retire`, each advance reconciles everything ever held: fine for a day's or a
week's worth. With it (`Retirement`: a horizon in days and a folder), an advance also
cuts out what `retire.plan` finds settled for good, every date of it at least the
horizon behind the watermark: a payout batch's lines and expectations, a bank movement
and its bank line, a reference an adjusting entry settled with its entries
(`retire_entries`). Their rows go to Parquet in the folder, their keys to a small hashed
index, their own variances stay published as they were ("frozen", their age moving
on), and the cut-out movements' amounts stay in the books as one self-matching pair per
account and day (and what the ledger moved beyond the bank, as worked). Held state and
the work per advance are then the open items and the horizon's worth, not the history.
An input that touches a cut-out unit's keys (a line sent again, a bank line naming a
retired payout, an adjustment naming a frozen variance), or one dated near a settled
reference's line or movement, brings the unit back before it is added, so the next
reconciliation is again the one over every input, and the result is still exactly the
batch's.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from clearline.recon.lines import BANK_SCHEMA, SETTLEMENT_SCHEMA, STATEMENT_SCHEMA
from clearline.recon.matching import adjusted, continuity, expectations, retire, retire_entries, retire_statements
from clearline.recon.matching.reconcile import Inputs, Result, reconcile
from clearline.recon.matching.rules import Tolerances, as_of_day
from clearline.recon.matching.variance import SCHEMA

_EMPTY = Inputs(
    pl.DataFrame(schema=expectations.SETTLEMENT_SCHEMA),
    pl.DataFrame(schema=expectations.BANK_WITH_MERCHANT),
    pl.DataFrame(schema=SETTLEMENT_SCHEMA),
    pl.DataFrame(schema=BANK_SCHEMA),
    pl.DataFrame(schema=STATEMENT_SCHEMA),
    adjustments=pl.DataFrame(schema=adjusted.ADJUSTMENT_SCHEMA),
)
_HELD = ("expected_settlements", "expected_movements", "settlement_lines", "bank_lines", "statements", "adjustments")


@dataclass(frozen=True)
class Changes:
    new: pl.DataFrame  # variances not published before (variance.SCHEMA)
    changed: pl.DataFrame  # published before, with other facts now (a line joined a batch; not mere age)
    gone: list[str]  # ids published before that the inputs no longer support (closed ones too: result.closed)
    result: Result  # the whole reconciliation at this watermark
    # rows cut out after this reconciliation, by input name (expected_settlements,
    # settlement_lines, expected_movements, bank_lines, adjustments, statements; each there, empty when
    # none was cut out; no name at all without a `retire` horizon): what the stream no longer holds
    retired: dict[str, pl.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class Retirement:
    """configs/recon.yaml `flow: retire_after_days`, and the folder the cut-out rows go to."""

    after_days: int
    store: Path


_UNIT = "_unit"
_FACTS = "_facts"
_FROZEN_SCHEMA = SCHEMA | {_UNIT: pl.UInt64, _FACTS: pl.UInt64}
_STORED = ("expected_settlements", "settlement_lines", "expected_movements", "bank_lines", "adjustments")
_PACKED = ("_frozen", "_frozen_closed")  # held in a snapshot as zstd IPC (`__getstate__`)


@dataclass
class Continuous:
    tol: Tolerances
    books: pl.DataFrame | None = None  # continuity.BOOKS_SCHEMA: what the statements' balances are tied to
    retire: Retirement | None = None  # None: hold everything
    _parts: dict[str, list[pl.DataFrame]] = field(default_factory=lambda: {name: [] for name in _HELD})
    _published: dict[str, int] = field(default_factory=dict)  # id -> hash of its facts but age
    # what was cut out: hashed key -> unit, unit -> the file round it is in, the units'
    # own variances and closed variances, and the cut-out movements' sums per account and day
    _index: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=retire.INDEX_SCHEMA))
    _units: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"unit": pl.UInt64, "round": pl.String}))
    # (with each one's `facts_hash`, taken once: a frozen balance variance names every open item)
    _frozen: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_FROZEN_SCHEMA))
    _frozen_closed: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=adjusted.CLOSED_SCHEMA | {_UNIT: pl.UInt64})
    )
    _carry: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=retire.CARRY_SCHEMA))
    # per batch whose agreeing pairs were cut out while it stays: their net (`retire.summary_lines`)
    _summary: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=retire.SUMMARY_SCHEMA))
    # statements cut out (`retire_statements`): their rows (the last day of each account
    # is its anchor), the jumps of their continuity variances, their units
    _statements: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=retire_statements.HELD_SCHEMA))
    _jumps: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=retire_statements.HELD_SCHEMA))
    _statement_units: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=retire_statements.UNIT_SCHEMA))
    # units a late input may pair by amount, cut out: references an adjusting entry settled
    # (`retire_entries`) and batches whose payout the bank never booked; the last day of each
    _dated: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=retire_entries.DATED_SCHEMA))
    units_back: int = 0  # cut-out units a late arrival brought back, all told

    def add(self, **frames: pl.DataFrame) -> None:
        """Hold more inputs: any of expected_settlements, expected_movements,
        settlement_lines, bank_lines, statements, adjustments, with the schemas of
        `reconcile.Inputs`. What they touch of the cut-out units comes back first."""
        self.bring_back(**frames)
        for name, frame in frames.items():
            if frame.height:
                self._parts.setdefault(name, []).append(frame)  # setdefault: a snapshot from before statements

    def held(self) -> dict[str, int]:
        """Rows held per input (the cut-out units' rows not counted)."""
        return {name: sum(part.height for part in parts) for name, parts in self._parts.items()}

    def holding(self, name: str) -> pl.DataFrame:
        """The rows of one input held now (`reconcile.Inputs` field name)."""
        return pl.concat([getattr(_EMPTY, name), *self._parts.get(name, [])])

    def retired_units(self) -> int:
        """Units cut out now (a payout batch, a bank movement with its line)."""
        return self._units["unit"].n_unique()

    def __getstate__(self) -> dict:
        """The snapshot, with the frozen variances, open and closed, compressed: a frozen
        balance variance names every item open on its statement's day, the same ids
        statement after statement (35x smaller in zstd)."""
        state = self.__dict__.copy()
        for name in _PACKED:
            state[name] = _packed(getattr(self, name))
        return state

    def __setstate__(self, state: dict) -> None:
        """A snapshot; one from before a field was added resumes with its default."""
        self.__dict__.update(state)
        for name in _PACKED:
            if isinstance(getattr(self, name, None), bytes):
                setattr(self, name, pl.read_ipc(io.BytesIO(getattr(self, name))))
        for f in fields(self):
            if f.name not in state and f.default_factory is not MISSING:
                setattr(self, f.name, f.default_factory())
        if _FACTS not in self._frozen.columns:
            self._frozen = _with_facts(self._frozen)
        if "worked" not in self._carry.columns:  # a snapshot from before batches of worked breaks were let go
            self._carry = self._carry.with_columns(worked=pl.lit(0, pl.Int64)).select(list(retire.CARRY_SCHEMA))

    def retired_statements(self) -> int:
        """Statement rows cut out now (the anchors among them)."""
        return self._statements.height

    def frozen(self) -> int:
        """Variances kept as published with what was cut out (open and closed)."""
        return self._frozen.height + self._frozen_closed.height

    def bring_back(self, **frames: pl.DataFrame) -> dict[str, pl.DataFrame]:
        """Take back into the held state every cut-out unit these inputs touch; the rows
        brought back, by input name: every input that is ever cut out, empty when none of
        its rows came back."""
        if self._index.is_empty() and self._statement_units.is_empty():
            return _every({})
        keys = retire.touch_keys(frames)
        touched = self._index.filter(pl.col("key").is_in(keys.implode()))["unit"].unique()
        back = self._units_back(touched.filter(touched.is_in(self._units["unit"].implode())))
        # a line or movement nothing explained may be paired by amount with an input dated
        # near it, or with one that came back with a unit: until none is in reach
        while True:
            reach = retire_statements.reach({**frames, **back}, retire_statements.margin(self.tol))
            near = self._dated.filter(pl.col("last") >= reach)["unit"] if reach is not None else None
            if near is None or near.is_empty():
                break
            back = _joined(back, self._units_back(near))
        return _every({**back, "statements": self._statements_back({**frames, **back}, keys)})

    def _units_back(self, units: pl.Series) -> dict[str, pl.DataFrame]:
        """Take back the cut-out batches, pairs and settled references `units`; their rows by input name."""
        if units.is_empty():
            return {}
        self.units_back += units.len()
        mine = pl.col(_UNIT).is_in(units.implode())
        # a unit brought back and cut out again is read from its latest round only
        where = self._units.filter(pl.col("unit").is_in(units.implode()))
        back: dict[str, pl.DataFrame] = {}
        for name in _STORED:
            rows = self._stored(where, name).drop(_UNIT).cast(getattr(_EMPTY, name).schema)
            back[name] = rows
            if rows.height:
                self._parts.setdefault(name, []).append(rows)
        paired = (
            back["bank_lines"]
            .join(
                back["expected_movements"].select("reference", day="expected_on", ledger="amount_minor"), on="reference"
            )
            .select(
                "account",
                "day",
                currency="amount_currency",
                booked="booking_date",
                amount_minor=-pl.col("amount_minor"),
                worked=pl.col("amount_minor") - pl.col("ledger"),
            )
            .select(list(retire.CARRY_SCHEMA))
        )
        # a reference an entry settled carries what it stored beside its rows
        settled = self._stored(where, "carry").select(
            *[c for c in retire.CARRY_SCHEMA if c not in ("amount_minor", "worked")],
            amount_minor=-pl.col("amount_minor"),
            worked=-pl.col("worked"),
        )
        self._carry = _summed(pl.concat([self._carry, paired, settled.cast(retire.CARRY_SCHEMA)]))
        self._dated = self._dated.filter(~pl.col("unit").is_in(units.implode()))
        self._index = self._index.filter(~pl.col("unit").is_in(units.implode()))
        self._units = self._units.filter(~pl.col("unit").is_in(units.implode()))
        self._frozen = self._frozen.filter(~mine)
        self._frozen_closed = self._frozen_closed.filter(~mine)
        self._summary = self._summary.filter(~pl.col("unit").is_in(units.implode()))
        return back

    def _stored(self, where: pl.DataFrame, name: str) -> pl.DataFrame:
        """The rows of the units `where` (unit, round) in their rounds' `name` files, with
        `_UNIT`: empty from a round without one (a round from before entries were cut out,
        a round of batches carries nothing of its own)."""
        parts = [
            pl.scan_parquet(path).filter(pl.col(_UNIT).is_in(pl.Series(ids, dtype=pl.UInt64).implode()))
            for round_, ids in where.group_by("round").agg("unit").iter_rows()
            if (path := self.retire.store / f"{round_}.{name}.parquet").exists()
        ]
        schema = retire.CARRY_SCHEMA if name == "carry" else getattr(_EMPTY, name).schema
        return pl.concat(
            [pl.DataFrame(schema={**schema, _UNIT: pl.UInt64}), *pl.collect_all(parts)], how="diagonal_relaxed"
        )

    def _statements_back(self, frames: dict[str, pl.DataFrame], keys: pl.Series) -> pl.DataFrame:
        """Take back the cut-out statements that `frames` (arrivals and the units they
        brought back) may change, with every later one of their account; their rows."""
        if self._statement_units.is_empty():
            return pl.DataFrame(schema=STATEMENT_SCHEMA)
        held = lambda name: pl.concat([getattr(_EMPTY, name), *self._parts.get(name, [])])  # noqa: E731
        keys = pl.concat(
            [keys, retire_statements.touch_keys(frames, held("expected_settlements"), held("settlement_lines"))]
        )
        units = self._statement_units
        touched = units.join(self._index.filter(pl.col("key").is_in(keys.implode())), on="unit", how="semi")
        since = touched.group_by("account").agg(since=pl.col("day").min())
        reach = retire_statements.reach(frames, retire_statements.margin(self.tol))
        if reach is not None:
            since = (
                pl.concat([since, units.select("account", since=pl.lit(reach))])
                .group_by("account")
                .agg(pl.col("since").min())
            )
        gone = units.join(since, on="account").filter(pl.col("day") >= pl.col("since"))["unit"]
        if gone.is_empty():
            return pl.DataFrame(schema=STATEMENT_SCHEMA)
        self.units_back += gone.len()
        mine = pl.col("unit").is_in(gone.implode())
        rows = self._statements.filter(mine).drop("unit")
        self._parts.setdefault("statements", []).append(rows)
        self._statements = self._statements.filter(~mine)
        self._jumps = self._jumps.filter(~mine)
        self._statement_units = units.filter(~mine)
        self._index = self._index.filter(~mine)
        self._frozen = self._frozen.filter(~pl.col(_UNIT).is_in(gone.implode()))
        self._frozen_closed = self._frozen_closed.filter(~pl.col(_UNIT).is_in(gone.implode()))
        return rows

    def advance(self, watermark: datetime | date) -> Changes:
        """Reconcile what is held at `watermark`: what to publish, what to withdraw; then
        cut out what has settled for good, with a `retire` horizon."""
        frames = {name: pl.concat([getattr(_EMPTY, name), *self._parts.get(name, [])]) for name in _HELD}
        for name, parts in self._parts.items():  # one frame each from now on
            parts[:] = [frames[name]] if frames[name].height else []
        books = self.books if self.books is not None else pl.DataFrame(schema=continuity.BOOKS_SCHEMA)
        carried_moves, carried_bank = retire.carry_frames(self._carry)
        inputs = dict(frames)
        inputs["expected_movements"] = pl.concat([frames["expected_movements"], carried_moves])
        inputs["bank_lines"] = pl.concat([frames["bank_lines"], carried_bank])
        inputs["settlement_lines"] = pl.concat([frames["settlement_lines"], retire.summary_lines(self._summary)])
        anchor = retire_statements.anchors(self._statements)
        inputs["statements"] = pl.concat([frames["statements"], anchor, self._jumps.drop("unit")])
        live = reconcile(Inputs(**inputs, bank_books=books), self.tol, watermark)
        if anchor.height:  # an anchor's variances are the frozen ones, judged with its predecessor
            ghosts = pl.col("variance_id").is_in(retire_statements.ghost_ids(anchor))
            live = replace(live, variances=live.variances.filter(~ghosts), closed=live.closed.filter(~ghosts))
        result = self._with_frozen(live)
        facts = dict(zip(live.variances["variance_id"], facts_hash(live.variances)))
        facts.update(zip(self._frozen["variance_id"], self._frozen[_FACTS]))
        known = pl.col("variance_id").is_in(list(self._published))
        moved = [vid for vid, h in facts.items() if vid in self._published and self._published[vid] != h]
        gone = sorted(self._published.keys() - facts.keys())
        self._published = facts
        retired = {}
        if self.retire is not None:
            cut = _joined(self._retire(frames, inputs, live, books), self._retire_settled(live, books))
            retired = {name: rows.drop(_UNIT) for name, rows in cut.items()}
            retired = _every({**retired, "statements": self._retire_statements(frames, inputs, live, books)})
        return Changes(
            result.variances.filter(~known),
            result.variances.filter(pl.col("variance_id").is_in(moved)),
            gone,
            result,
            retired,
        )

    def _with_frozen(self, live: Result) -> Result:
        """The live result with the cut-out units' variances, aged to its day."""
        if self._frozen.is_empty() and self._frozen_closed.is_empty():
            return live
        age = (pl.lit(live.as_of) - pl.col("since")).dt.total_days().cast(pl.Int64)
        frozen = self._frozen.drop(_UNIT, _FACTS).with_columns(age_days=age)
        closed = self._frozen_closed.drop(_UNIT).with_columns(age_days=age)
        return Result(
            pl.concat([live.variances, frozen]).sort("category", "variance_id"),
            live.pending,
            live.as_of,
            pl.concat([live.closed, closed]).sort("category", "variance_id"),
        )

    def _retire(
        self, frames: dict[str, pl.DataFrame], inputs: dict[str, pl.DataFrame], live: Result, books: pl.DataFrame
    ) -> dict[str, pl.DataFrame]:
        """Cut out what `retire.plan` finds settled by the horizon; the rows cut out. A
        batch whose agreeing pairs were cut out before is judged with its summary line
        (`inputs`' settlement lines) as its report sums it, and cut out whole by the same
        rule as any other once it is final: else its payout's ledger movement and bank line,
        and the summary, were held for good."""
        cutoff = as_of_day(live.as_of) - timedelta(days=self.retire.after_days)
        with_summaries = {**frames, "settlement_lines": inputs["settlement_lines"]}
        plan = retire.plan(with_summaries, live.variances, live.closed, live.pending, books, cutoff)
        if plan.empty:
            return {}
        hashed = lambda frame: frame.with_columns(pl.col("unit").hash(seed=0).alias(_UNIT)).drop("unit")  # noqa: E731
        batches, pairs, clean = hashed(plan.batches), hashed(plan.pairs), hashed(plan.clean)
        unbooked = hashed(plan.unbooked)
        groups = hashed(plan.groups).rename({_UNIT: "unit"})
        by_batch = lambda frame: frame.join(batches, on=["processor", "payout_id"], how="left")  # noqa: E731
        # a batch's payout goes with it: its pair, or its movement the bank never booked
        payouts = pl.concat([pairs.select("reference", _UNIT), unbooked.select("reference", _UNIT)])
        by_pair = lambda frame: frame.join(payouts, on="reference", how="left")  # noqa: E731

        def by_batch_or_pair(frame: pl.DataFrame, id_: str) -> pl.DataFrame:
            whole = by_batch(frame)
            paired = whole.select("processor", "payout_id", id_).join(
                clean.rename({"id": id_}), on=["processor", "payout_id", id_], how="left"
            )
            return whole.with_columns(pl.coalesce(_UNIT, paired[_UNIT]).alias(_UNIT))

        # a batch's own variances, and the payout's when the bank never booked it
        own = pl.col("category").is_in([*retire.LINE_CATEGORIES, "payout_not_in_bank"])
        frozen = by_batch(live.variances).filter(pl.col(_UNIT).is_not_null() & own)
        frozen_closed = by_batch(live.closed).filter(pl.col(_UNIT).is_not_null() & own)
        # an entry naming a batch's variance goes with it; the bank cash one moved is carried as worked
        named = pl.concat([frozen, frozen_closed.select(frozen.columns)]).select("variance_id", _UNIT).unique()
        entries = frames["adjustments"].join(named, on="variance_id", how="left")
        legs = adjusted.bank_legs(entries.filter(pl.col(_UNIT).is_not_null()), books).join(named, on="variance_id")
        carry = pl.concat(
            [
                unbooked.select(_UNIT, *retire.CARRY_SCHEMA),
                legs.select(
                    _UNIT, "account", "currency", "day", booked="day", amount_minor=pl.lit(0, pl.Int64), worked="minor"
                ),
            ]
        ).cast({_UNIT: pl.UInt64} | retire.CARRY_SCHEMA)
        tagged = {
            "expected_settlements": by_batch_or_pair(frames["expected_settlements"], "settlement_id"),
            "settlement_lines": by_batch_or_pair(frames["settlement_lines"], "line_id"),
            "expected_movements": by_pair(frames["expected_movements"]),
            "bank_lines": by_pair(frames["bank_lines"]),
            "adjustments": entries,
        }
        round_, out = self._store(tagged, carry=carry)
        summed = (
            out["settlement_lines"]
            .join(clean.select(_UNIT).unique(), on=_UNIT, how="semi")
            .select(
                _UNIT, "processor", "payout_id", currency="net_currency", value_date="value_date", net_minor="net_minor"
            )
            .rename({_UNIT: "unit"})
        )
        whole = pl.col("unit").is_in(batches[_UNIT].implode())  # its summary goes with a batch cut out whole
        self._summary = _per_batch(pl.concat([self._summary.filter(~whole), summed.cast(retire.SUMMARY_SCHEMA)]))
        keys = retire.unit_keys(
            pl.concat([batches, clean.select("processor", "payout_id", _UNIT).unique()]).rename({_UNIT: "unit"}),
            out["expected_settlements"].rename({_UNIT: "unit"}),
            out["settlement_lines"].rename({_UNIT: "unit"}),
            pl.concat([frozen, frozen_closed.select(frozen.columns)]).rename({_UNIT: "unit"}),
            pairs.rename({_UNIT: "unit"}),
            out["bank_lines"].rename({_UNIT: "unit"}),
            groups,
        )
        self._index = pl.concat([self._index, keys])
        units = pl.concat([batches[_UNIT], pairs[_UNIT], clean[_UNIT]]).unique()
        self._units = pl.concat([self._units, units.to_frame("unit").with_columns(round=pl.lit(round_))])
        self._frozen = pl.concat([self._frozen, _with_facts(frozen)])
        self._frozen_closed = pl.concat([self._frozen_closed, frozen_closed.select(self._frozen_closed.columns)])
        # a payout the bank never booked may still be paired by amount with a line dated near it
        dated = unbooked.select(unit=_UNIT, last="day").cast(retire_entries.DATED_SCHEMA)
        self._dated = pl.concat([self._dated, dated])
        paired = pairs.rename({"residual": "worked"}).select(list(retire.CARRY_SCHEMA))
        self._carry = _summed(pl.concat([self._carry, paired, carry.select(list(retire.CARRY_SCHEMA))]))
        return out

    def _retire_settled(self, live: Result, books: pl.DataFrame) -> dict[str, pl.DataFrame]:
        """Cut out the references `retire_entries.plan` finds an adjusting entry settled by
        the horizon, with their entries and closed variances; the rows cut out."""
        cutoff = as_of_day(live.as_of) - timedelta(days=self.retire.after_days)
        held = {name: self.holding(name) for name in _STORED}
        plan = retire_entries.plan(
            held["expected_movements"],
            held["bank_lines"],
            held["adjustments"],
            live.variances,
            live.closed,
            live.pending,
            books,
            held["expected_settlements"],
            held["settlement_lines"],
            cutoff,
        )
        if plan is None:
            return {}
        refs = plan.refs.rename({"unit": _UNIT})
        ids = plan.variance_ids.rename({"unit": _UNIT})
        bank = held["bank_lines"].with_columns(_ref=retire_entries.reference())
        tagged = {
            "expected_movements": held["expected_movements"].join(refs, on="reference", how="left"),
            "bank_lines": bank.join(refs.rename({"reference": "_ref"}), on="_ref", how="left").drop("_ref"),
            "adjustments": held["adjustments"].join(ids, on="variance_id", how="left"),
        }
        round_, out = self._store(tagged, carry=plan.carry.rename({"unit": _UNIT}))
        frozen_closed = live.closed.join(ids, on="variance_id")
        self._frozen_closed = pl.concat([self._frozen_closed, frozen_closed.select(self._frozen_closed.columns)])
        keys = retire_entries.unit_keys(plan.refs, plan.variance_ids, out["bank_lines"].rename({_UNIT: "unit"}))
        self._index = pl.concat([self._index, keys])
        self._units = pl.concat([self._units, plan.refs.select("unit", round=pl.lit(round_))])
        self._dated = pl.concat([self._dated, plan.dated])
        self._carry = _summed(pl.concat([self._carry, plan.carry.select(list(retire.CARRY_SCHEMA))]))
        return out

    def _store(self, tagged: dict[str, pl.DataFrame], **more: pl.DataFrame) -> tuple[str, dict[str, pl.DataFrame]]:
        """Write the rows of `tagged` inputs that have a `_UNIT`, and `more` rows, to a new
        round's files; hold the rest. (the round, the rows cut out by input name, with `_UNIT`)"""
        out = {name: frame.filter(pl.col(_UNIT).is_not_null()) for name, frame in tagged.items()}
        round_ = uuid.uuid4().hex
        self.retire.store.mkdir(parents=True, exist_ok=True)
        for name, rows in {**out, **more}.items():
            rows.write_parquet(self.retire.store / f"{round_}.{name}.parquet")
        for name, frame in tagged.items():
            kept = frame.filter(pl.col(_UNIT).is_null()).drop(_UNIT)
            self._parts[name] = [kept] if kept.height else []
        return round_, out

    def _retire_statements(
        self, frames: dict[str, pl.DataFrame], inputs: dict[str, pl.DataFrame], live: Result, books: pl.DataFrame
    ) -> pl.DataFrame:
        """Cut out the statements `retire_statements.plan` finds that nothing to come can
        change, their own variances kept as published; the rows cut out."""
        cutoff = as_of_day(live.as_of) - timedelta(days=self.retire.after_days)
        first = frames["statements"].select(pl.coalesce("closing_date", "opening_date").min()).item()
        if first is None or first > cutoff - timedelta(days=retire_statements.EVERY_DAYS):
            return pl.DataFrame(schema=STATEMENT_SCHEMA)  # a week's statements are cut out at a time
        cut = retire_statements.plan(
            frames["statements"],
            retire_statements.anchors(self._statements),
            self._jumps.drop("unit"),
            books,
            inputs["expected_movements"],
            inputs["bank_lines"],
            live.pending,
            frames["expected_settlements"],
            frames["settlement_lines"],
            cutoff,
        )
        if cut is None:
            return pl.DataFrame(schema=STATEMENT_SCHEMA)
        own = lambda frame: frame.join(cut.variance_ids.rename({"unit": _UNIT}), on="variance_id")  # noqa: E731
        frozen, frozen_closed = own(live.variances), own(live.closed)
        self._frozen = pl.concat([self._frozen, _with_facts(frozen)])
        self._frozen_closed = pl.concat([self._frozen_closed, frozen_closed.select(self._frozen_closed.columns)])
        self._statements = pl.concat([self._statements, cut.statements])
        self._jumps = pl.concat([self._jumps, cut.jumps])
        both = [frame.select("category", "evidence", unit=_UNIT) for frame in (frozen, frozen_closed)]
        named = retire_statements.named_keys(pl.concat(both))
        # a key already touching an earlier cut-out day of statements brings back this one too
        earlier = self._index.join(self._statement_units.select("unit"), on="unit", how="semi")
        keys = pl.concat([cut.keys, named]).unique()
        self._index = pl.concat([self._index, keys.join(earlier, on="key", how="anti")])
        self._statement_units = pl.concat([self._statement_units, cut.units])
        kept = frames["statements"].join(
            cut.units.select("account", "day"),
            left_on=["account", pl.coalesce("closing_date", "opening_date")],
            right_on=["account", "day"],
            how="anti",
        )
        self._parts["statements"] = [kept] if kept.height else []
        return cut.statements.drop("unit")


def _per_batch(summary: pl.DataFrame) -> pl.DataFrame:
    """One summary row per batch: the net of its clean pairs cut out, their last day."""
    return (
        summary.group_by("unit", "processor", "payout_id")
        .agg(pl.col("currency").first(), pl.col("value_date").max(), pl.col("net_minor").sum())
        .sort("processor", "payout_id")
        .select(list(retire.SUMMARY_SCHEMA))
    )


def _joined(*parts: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Rows by input name, of every one of `parts` together."""
    names = dict.fromkeys(name for part in parts for name in part)
    return {name: pl.concat([part[name] for part in parts if name in part]) for name in names}


def _every(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """`frames` with every input that is ever cut out (`_STORED` and statements), empty where absent."""
    return {name: frames.get(name, getattr(_EMPTY, name)) for name in (*_STORED, "statements")}


def _packed(frame: pl.DataFrame) -> bytes:
    """`frame` as zstd-compressed Arrow IPC bytes (what a snapshot holds of it)."""
    out = io.BytesIO()
    frame.write_ipc(out, compression="zstd")
    return out.getvalue()


def _summed(carry: pl.DataFrame) -> pl.DataFrame:
    """One row per account, currency and day (a day whose rows all came back: none)."""
    return (
        carry.group_by("account", "currency", "day", "booked")
        .agg(pl.col("amount_minor", "worked").sum(), n=pl.len())
        .sort("account", "currency", "day", "booked")
        .select(list(retire.CARRY_SCHEMA))
        .cast(retire.CARRY_SCHEMA)
    )


def _with_facts(variances: pl.DataFrame) -> pl.DataFrame:
    """Variances (`SCHEMA` and their unit) as `_FROZEN_SCHEMA` rows, with their facts' hash."""
    own = variances.select(list(SCHEMA))
    return own.with_columns(variances[_UNIT], facts_hash(own).alias(_FACTS)).select(list(_FROZEN_SCHEMA))


def facts_hash(variances: pl.DataFrame) -> pl.Series:
    """A hash per variance of everything it says except its age, which grows with every
    watermark and is no news."""
    return variances.drop("age_days").hash_rows(seed=0)
