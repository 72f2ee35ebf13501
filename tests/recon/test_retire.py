"""Retirement: the continuous matcher lets go of what has settled for good, and still ends
with exactly the batch's variances, whatever arrives late and touches what it let go.

A 30-day world is fed in event-time order, reconciled day by day with a horizon of a
few days, so most of it is cut out before the end; then a late arrival touches a cut-out
unit (a processor line sent again with another net, the same line under a new id, a
second bank line naming a retired payout, an adjusting entry naming a variance that was
kept as published), and the end is compared with one `reconcile` over every input. The
flow's matcher (`streaming.Matcher`) is fed the same world in random orders, splits,
replays and watermark steps (Hypothesis)."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clearline import config
from clearline.pipelines.cli.recon import parse_all, report_files, tolerances
from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.recon.matching import adjusted, expectations, retire
from clearline.recon.matching.continuity import bank_books
from clearline.recon.matching.continuous import Changes, Continuous, Retirement
from clearline.recon.matching.reconcile import Inputs, input_watermark, reconcile, watermark
from clearline.recon.streaming import builder
from tests.recon.test_recon_flow_state import merged, world_inputs

BOOKS = bank_books(config.load("platform"))
_DAY_OF = {"settlement_lines": "value_date", "bank_lines": "booking_date", "statements": "closing_date"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("retire-world")
    generate(WorldOptions(days=30, merchants=4, seed=31), out)
    return out


@pytest.fixture(scope="module")
def frames(world) -> tuple[dict[str, pl.DataFrame], dict[str, datetime]]:
    """(every input by `Inputs` field name, each event's time)."""
    settle, bank, statements = parse_all(report_files(world / "settlements") + report_files(world / "bank"), quiet=True)
    ev = pl.read_parquet(world / "events" / "events.parquet")
    exp, moves = expectations.from_events(ev.lazy())
    inputs = {
        "expected_settlements": exp,
        "expected_movements": moves,
        "adjustments": adjusted.from_events(ev.lazy()),
        "settlement_lines": settle,
        "bank_lines": bank,
        "statements": statements,
    }
    return inputs, dict(zip(ev["event_id"], ev["occurred_at"], strict=True))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, timezone.utc)


def _batch(inputs: dict[str, pl.DataFrame], times: dict[str, datetime]) -> tuple:
    full = Inputs(**inputs, bank_books=BOOKS)
    as_of = input_watermark(full, max(times.values()))
    return reconcile(full, tolerances(), as_of), as_of


def _fed(flow: Continuous, inputs: dict[str, pl.DataFrame], times: dict[str, datetime]) -> dict[str, str]:
    """Feed every row in event-time order, a day at a time, advancing after each day; the
    ids published and not withdrawn (id -> category)."""
    rows = []
    for name, frame in inputs.items():
        for i in range(frame.height):
            row = frame.slice(i, 1)
            at = _midnight(row[_DAY_OF[name]][0]) if name in _DAY_OF else times[row["event_id"][0]]
            rows.append((at, name, row))
    rows.sort(key=lambda r: (r[0], r[1]))
    published: dict[str, str] = {}
    mark = None
    for day in sorted({at.date() for at, _, _ in rows}):
        todays = [r for r in rows if r[0].date() == day]
        by_name: dict[str, list[pl.DataFrame]] = {}
        for at, name, row in todays:
            by_name.setdefault(name, []).append(row)
            mark = watermark(mark, at)
        flow.add(**{name: pl.concat(parts) for name, parts in by_name.items()})
        _publish(published, flow.advance(mark))
    return published


def _publish(published: dict[str, str], changes: Changes) -> None:
    assert set(changes.new["variance_id"]).isdisjoint(published)
    published.update(zip(changes.new["variance_id"], changes.new["category"], strict=True))
    for vid in changes.gone:
        published.pop(vid)


def _retired_payout(flow: Continuous, inputs: dict[str, pl.DataFrame], whole: bool) -> tuple[str, str]:
    """(a processor payout, one of its lines the matcher no longer holds): a batch cut out
    whole, or one that stays (it has breaks) with its agreeing pairs cut out."""
    held = flow.holding("settlement_lines").filter(pl.col("record_type") != retire.SUMMARY_KIND)
    gone = inputs["settlement_lines"].join(held, on=["processor", "line_id"], how="anti")
    staying = gone["payout_id"].is_in(held["payout_id"].implode())
    gone = gone.filter(~staying if whole else staying).sort("payout_id", "line_id")
    assert gone.height, "the horizon cut nothing out"
    return gone["payout_id"][0], gone["line_id"][0]


def _late_copy(line: pl.DataFrame, **changes) -> pl.DataFrame:
    return line.with_columns(source_file=pl.lit("late_report.csv"), line_no=pl.lit(2, pl.Int64), **changes)


LATE = {
    # a retired line sent again in another report with another net: corrected_line
    "copy": lambda line, bank: {"settlement_lines": _late_copy(line, net_minor=pl.col("net_minor") + 700)},
    # the same line under a new id: a duplicate of the retired one
    "duplicate": lambda line, bank: {"settlement_lines": _late_copy(line, line_id=pl.lit("stl_late_copy"))},
    # a second bank line naming the retired payout: a duplicate bank line
    "bank_line": lambda line, bank: {
        "bank_lines": bank.with_columns(
            bank_ref=pl.lit("LATE1"), source_file=pl.lit("late_statement.xml"), line_no=pl.lit(1, pl.Int64)
        )
    },
}


@pytest.mark.parametrize("whole", [True, False], ids=["batch cut out", "its agreeing pairs cut out"])
@pytest.mark.parametrize("kind", sorted(LATE))
def test_a_late_arrival_touching_a_retired_unit_gives_the_batchs_variances(frames, kind, whole, tmp_path) -> None:
    inputs, times = frames
    flow = Continuous(tolerances(), BOOKS, Retirement(2, tmp_path / "retired"))
    published = _fed(flow, inputs, times)
    assert flow.held()["settlement_lines"] < inputs["settlement_lines"].height / 2, "most of the world was let go"
    payout, line_id = _retired_payout(flow, inputs, whole)
    line = inputs["settlement_lines"].filter(pl.col("line_id") == line_id)
    bank = inputs["bank_lines"].filter(pl.col("reference") == payout)
    late = LATE[kind](line, bank)
    everything = {name: pl.concat([frame, late[name]]) if name in late else frame for name, frame in inputs.items()}
    batch, as_of = _batch(everything, times)
    assert set(batch.variances["variance_id"]) - set(published), "the late arrival makes a new variance"

    flow.add(**late)
    assert line_id in set(flow.holding("settlement_lines")["line_id"]), "the touched unit came back"
    end = flow.advance(as_of)
    _publish(published, end)
    assert end.result.variances.equals(batch.variances)
    assert set(published) == set(batch.variances["variance_id"])


def test_a_retired_variance_stays_published_and_an_adjustment_closes_it_late(frames, tmp_path) -> None:
    """A line two days off its date (its payout still whole) is a late_settlement; its
    batch is cut out with the variance kept as published; an adjusting entry naming it
    arrives later and closes it, as the batch does."""
    inputs, times = frames
    payouts = inputs["settlement_lines"].group_by("payout_id").len().filter(pl.col("len") > 1).sort("payout_id")
    payout = payouts["payout_id"][0]
    line_id = inputs["settlement_lines"].filter(pl.col("payout_id") == payout).sort("line_id")["line_id"][0]
    shifted = pl.col("value_date") + pl.when(pl.col("line_id") == line_id).then(pl.duration(days=-3)).otherwise(
        pl.duration(days=0)
    )
    inputs = {**inputs, "settlement_lines": inputs["settlement_lines"].with_columns(value_date=shifted)}
    before, _ = _batch(inputs, times)
    late = before.variances.filter((pl.col("category") == "late_settlement") & (pl.col("reference") == line_id))
    assert late.height == 1

    flow = Continuous(tolerances(), BOOKS, Retirement(2, tmp_path / "retired"))
    published = _fed(flow, inputs, times)
    assert payout not in set(flow.holding("settlement_lines")["payout_id"]), "the batch with a variance was let go"
    assert late["variance_id"][0] in published, "and its variance stays published"

    entry = adjusted.frame(
        [
            {
                "event_id": "evt_late_adjustment",
                "variance_id": late["variance_id"][0],
                "merchant_id": late["merchant_id"][0],
                "kind": "write_off",
                "code": "timing",
                "approved_by": "checker@platform",
                "approved_at": datetime(2026, 3, 1, tzinfo=timezone.utc),
            }
        ]
    )
    batch, as_of = _batch({**inputs, "adjustments": pl.concat([inputs["adjustments"], entry])}, times)
    assert late["variance_id"][0] in set(batch.closed["variance_id"])
    flow.add(adjustments=entry)
    end = flow.advance(as_of)
    _publish(published, end)
    assert end.result.variances.equals(batch.variances)
    assert end.result.closed.equals(batch.closed)
    assert late["variance_id"][0] in end.gone


@pytest.fixture(scope="module")
def items(world):
    """(every input as one Arrivals item per record, the batch's result)."""
    arrivals, batch_inputs, as_of = world_inputs(world)
    return arrivals, reconcile(batch_inputs, tolerances(), as_of)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(seed=7, horizon=1, late=0.25, resent=0.05, step=1)
@given(
    seed=st.integers(0, 10_000),
    horizon=st.integers(0, 4),
    late=st.floats(0, 0.3),
    resent=st.floats(0, 0.1),
    step=st.sampled_from([1, 2, 3, 7]),
)
def test_any_arrival_order_and_watermark_steps_with_retirement_end_with_the_batchs_variances(
    items, tmp_path_factory, seed, horizon, late, resent, step
) -> None:
    """Records arrive about in event-time order, a share of them days to weeks late and
    some twice; the matcher reconciles every `step` days of arrivals and lets go of what
    is `horizon` days settled. The end is the batch's, and what was published on the way
    is the batch's set."""
    arrivals, batch = items
    rng = random.Random(seed)
    sent = arrivals + rng.sample(arrivals, int(len(arrivals) * resent))

    def arrives(item) -> datetime:
        delay = rng.randint(5, 40) if rng.random() < late else rng.choice([0, 0, 1, 2])
        return item.latest + timedelta(days=delay, seconds=rng.random())

    timed = sorted(((arrives(i), n, i) for n, i in enumerate(sent)), key=lambda t: (t[0], t[1]))
    store = tmp_path_factory.mktemp("retired")
    matcher = builder(tolerances(), timedelta(seconds=5), once=False, books=BOOKS, retire=Retirement(horizon, store))(
        None
    )
    published: dict[str, str] = {}
    cut, result = 0, None
    first = timed[0][0].date()
    for _, group in _by_step(timed, first, step):
        matcher.on_item(merged(group))
        matcher.on_notify()
        (tick,), _ = matcher.on_notify()  # the inputs are caught up: it reconciles
        if tick.changes is not None:
            _publish(published, tick.changes)
            cut += sum(frame.height for frame in tick.changes.retired.values())
            result = tick.changes.result
    (end,), _ = matcher.on_eof()
    if end.changes is not None:  # else the last tick reconciled everything
        _publish(published, end.changes)
        result = end.changes.result
    assert result.variances.equals(batch.variances)
    assert set(published) == set(batch.variances["variance_id"])
    held = sum(1 for i in arrivals if i.expected) + sum(1 for i in arrivals if i.lines)
    assert end.counts["expectations"] + end.counts["lines"] >= held
    assert cut > 0 or horizon > 2, "a short horizon over a month lets something go"
    if late >= 0.2 and horizon <= 1:  # hundreds of records weeks late: some touch what was let go
        assert matcher.held.matcher.units_back > 0


def _by_step(timed: list, first: date, step: int):
    """The timed items in groups of `step` days of arrival."""
    groups: dict[int, list] = {}
    for at, _, item in timed:
        groups.setdefault((at.date() - first).days // step, []).append(item)
    return sorted(groups.items())


def test_the_snapshot_holds_no_retired_rows(items, tmp_path) -> None:
    """After a month with a two-day horizon, the matcher's snapshot holds a fraction of the
    rows, and ids it let go of are out of its sets too (the index answers for them)."""
    arrivals, _ = items
    retiring = builder(tolerances(), timedelta(seconds=5), once=False, books=BOOKS, retire=Retirement(2, tmp_path))
    holding = builder(tolerances(), timedelta(seconds=5), once=False, books=BOOKS)
    sizes = []
    for build in (retiring, holding):
        matcher = build(None)
        for _day, group in _by_step(
            sorted(((i.latest, n, i) for n, i in enumerate(arrivals)), key=lambda t: t[:2]), date(2000, 1, 1), 1
        ):
            matcher.on_item(merged(group))
            matcher.on_notify()
            matcher.on_notify()
        snap = matcher.snapshot()
        sizes.append((sum(snap.matcher.held().values()), len(snap.events), len(snap.lines)))
    (rows, events_, lines), (all_rows, all_events, all_lines) = sizes
    assert rows < all_rows / 2 and events_ < all_events and lines < all_lines
