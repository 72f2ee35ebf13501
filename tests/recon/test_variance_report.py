"""The variance report: SLA tiers and ageing by the configured rules, exports that hold
exactly the open variances, an HTML page whose totals, read back from headless
Chromium after its script ran, equal the variance store's, and a trend counted per day,
or per week over a long period."""

from __future__ import annotations

import html
import html.parser
import re
import shutil
import subprocess
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline import config
from clearline.currency import minor_to_decimal
from clearline.pipelines.cli import main
from clearline.recon.report.chart import stacked_bars
from clearline.recon.report.render import write
from clearline.recon.report.summary import (
    WEEKLY_TREND_AFTER_DAYS,
    ReportConfigError,
    ReportRules,
    build,
    classify,
    trend_bucket,
)
from clearline.recon.variances.store import VarianceStore

RULES = ReportRules.from_config(config.load("reports"))
FIRST_SEEN = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _variances(rows: list[tuple[int, str, int]]) -> pl.DataFrame:
    """Store-shaped rows from (amount_minor, currency, age_days)."""
    n = len(rows)
    return pl.DataFrame(
        {
            "variance_id": [f"var_{i:020d}" for i in range(n)],
            "category": ["amount_mismatch"] * n,
            "processor": ["adyen"] * n,
            "currency": [c for _, c, _ in rows],
            "amount_minor": [a for a, _, _ in rows],
            "age_days": [g for _, _, g in rows],
            "since": [date(2026, 2, 1)] * n,
            "status": ["open"] * n,
            "first_seen": [FIRST_SEEN] * n,
        }
    )


def _tier(amount_minor: int, currency: str, age_days: int) -> str:
    return classify(_variances([(amount_minor, currency, age_days)]), RULES)["sla_tier"][0]


def test_sla_tiers_follow_the_configured_amount_and_age():
    assert _tier(100_000_00, "EUR", 5) == "critical"
    assert _tier(100_000_00, "EUR", 4) == "high"  # big but not yet old enough for critical
    assert _tier(99_999_99, "EUR", 30) == "high"
    assert _tier(1_000_00, "USD", 1) == "medium"
    assert _tier(999_99, "USD", 30) == "low"
    assert _tier(-100_000_00, "GBP", 9) == "critical"  # a shortfall counts by its size
    assert _tier(15_000_000, "JPY", 5) == "critical"  # JPY has no minor unit and its own threshold
    assert _tier(14_999_999, "JPY", 5) == "high"


TIER_RANK = {t.tier: len(RULES.sla) - i for i, t in enumerate(RULES.sla)}  # critical ranks highest


@settings(max_examples=200, deadline=None)
@given(
    amount=st.integers(-(10**12), 10**12),
    extra=st.integers(0, 10**10),
    age=st.integers(0, 400),
    older=st.integers(0, 30),
    currency=st.sampled_from(["EUR", "USD", "GBP", "JPY"]),
)
def test_a_bigger_or_older_variance_is_never_less_urgent(amount, extra, age, older, currency):
    bigger = (abs(amount) + extra) * (1 if amount >= 0 else -1)
    base = TIER_RANK[_tier(amount, currency, age)]
    assert TIER_RANK[_tier(bigger, currency, age)] >= base
    assert TIER_RANK[_tier(amount, currency, age + older)] >= base


def test_ageing_buckets_split_at_one_and_three_days():
    frame = classify(_variances([(100, "EUR", a) for a in (0, 1, 3, 4, 90)]), RULES)
    assert frame["ageing_bucket"].to_list() == ["< 24 h", "1–3 d", "1–3 d", "> 3 d", "> 3 d"]
    assert frame["due_at"][0] == datetime(2026, 3, 8, tzinfo=timezone.utc)  # low: 168 h after first seen


def test_rules_without_a_catch_all_tier_are_refused():
    cfg = config.load("reports")
    with pytest.raises(ReportConfigError, match="last must catch all"):
        ReportRules.from_config({**cfg, "sla": cfg["sla"][:-1]})
    with pytest.raises(ReportConfigError, match="open-ended"):
        ReportRules.from_config({**cfg, "ageing": cfg["ageing"][:-1]})


def test_the_period_keeps_only_variances_counted_from_a_day_in_it():
    frame = _variances([(100, "EUR", 1)] * 3).with_columns(
        since=pl.Series([date(2026, 1, 31), date(2026, 2, 1), date(2026, 2, 2)])
    )
    report = build(frame, RULES, date(2026, 2, 1), date(2026, 2, 1), FIRST_SEEN)
    assert report.variances["since"].to_list() == [date(2026, 2, 1)]


class _Totals(html.parser.HTMLParser):
    """The totals tables' rows (their data attributes) and the drill-down's status line."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[dict]] = {}
        self.group: str | None = None
        self.drill_rows = 0
        self.in_drill = False
        self.in_shown = False
        self.shown = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.group = a.get("data-group")
            self.in_drill = a.get("id") == "drill"
        elif tag == "tr" and self.group and "data-key" in a:
            self.rows.setdefault(self.group, []).append(a)
        elif tag == "tr" and self.in_drill and "data-category" in a and "display: none" not in (a.get("style") or ""):
            self.drill_rows += 1
        elif tag == "span" and a.get("id") == "shown":
            self.in_shown = True

    def handle_endtag(self, tag):
        if tag == "table":
            self.group, self.in_drill = None, False
        elif tag == "span":
            self.in_shown = False

    def handle_data(self, data):
        if self.in_shown:
            self.shown += data


@pytest.fixture(scope="module")
def reported(small_world, tmp_path_factory):
    """A real batch reconciliation of the small world into a variance store, one variance
    resolved and one assigned, then the report written by the command line."""
    world, _ = small_world
    state, out = tmp_path_factory.mktemp("recon-state"), tmp_path_factory.mktemp("report")
    runner = CliRunner()
    done = runner.invoke(main, ["recon", "--world", str(world), "--state-dir", str(state), "--json"])
    assert done.exit_code == 0, done.output
    with VarianceStore(state / "variances.duckdb") as store:
        ids = store.frame()["variance_id"].to_list()
        store.move(ids[0], "processor confirmed the fee; booked a correction")
        store.move(ids[1], "asked the processor for the batch file", assignee="dana")
    done = runner.invoke(main, ["report", "variances", "--state-dir", str(state), "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    return state, out


def _store_totals(state: Path, group: str) -> dict[tuple[str, str], tuple[int, int]]:
    with VarianceStore(state / "variances.duckdb") as store:
        frame = store.frame()
    if group not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias(group))
    key = pl.when(pl.col(group).is_null() | (pl.col(group) == "")).then(pl.lit("—")).otherwise(pl.col(group))
    sums = frame.group_by(key.alias("key"), "currency").agg(n=pl.len(), amount=pl.col("amount_minor").abs().sum())
    return {(r["key"], r["currency"]): (r["n"], r["amount"]) for r in sums.iter_rows(named=True)}


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium package is not installed (.ci/run installs it)"
)
def test_the_html_totals_read_in_chromium_equal_the_store(reported, tmp_path):
    state, out = reported
    page = (out / "variances.html").as_uri()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    shot = out / "variances.png"
    subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", "--window-size=1400,2000", page],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

    parsed = _Totals()
    parsed.feed(dom)
    with VarianceStore(state / "variances.duckdb") as store:
        total = store.frame().height
    assert total > 0
    for group in ("category", "processor", "merchant_id", "currency"):
        shown = {
            (r["data-key"], r["data-currency"]): (int(r["data-count"]), int(r["data-amount-minor"]))
            for r in parsed.rows[group]
        }
        assert shown == _store_totals(state, group), group
    # The page's script ran in the browser: every row shown, and it says so.
    assert parsed.drill_rows == total
    assert parsed.shown.strip() == f"{total} of {total} shown"


def test_exports_hold_exactly_the_open_variances(reported):
    state, out = reported
    with VarianceStore(state / "variances.duckdb") as store:
        open_ = store.frame().filter(pl.col("status") != "resolved").sort("variance_id")
    csv = pl.read_csv(out / "variances_open.csv").sort("variance_id")
    assert csv["variance_id"].to_list() == open_["variance_id"].to_list()
    assert csv["amount_minor"].to_list() == open_["amount_minor"].to_list()
    assert "assigned" in csv["status"].to_list() and "resolved" not in csv["status"].to_list()
    sheet = openpyxl.load_workbook(out / "variances_open.xlsx", read_only=True)["open variances"]
    header, *rows = list(sheet.iter_rows(values_only=True))
    xlsx = sorted(
        (r[header.index("variance_id")], r[header.index("amount_minor")], r[header.index("amount")]) for r in rows
    )
    assert [(i, a) for i, a, _ in xlsx] == list(zip(open_["variance_id"], open_["amount_minor"]))
    # The amount as people read it: decimals of its own currency, no float rounding.
    currency = dict(zip(open_["variance_id"], open_["currency"]))
    for variance_id, minor, text in xlsx:
        assert text == str(minor_to_decimal(minor, currency[variance_id]))


def test_quarantined_files_are_shown_with_their_reasons_and_counted(reported, tmp_path):
    """A file intake refused is never out of sight: the report lists it with its reason
    and counts it, and so does `recon list`."""
    import json

    from clearline.recon.intake.ingest import Intake
    from tests.recon.test_intake_resent import real_samples, settings

    state = tmp_path / "state"
    shutil.copytree(reported[0], state)
    (refused,) = Intake(settings(state)).ingest(real_samples("cmxl-mt940-dem.sta"))  # Deutsche Mark: not ISO 4217
    assert refused.status == "quarantined"
    runner, out = CliRunner(), tmp_path / "report"
    done = runner.invoke(main, ["report", "variances", "--state-dir", str(state), "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    assert summary["quarantined_files"] == 1
    (shown,) = summary["quarantined"]
    assert (shown["name"], shown["reason"], shown["kept_as"]) == ("cmxl-mt940-dem.sta", refused.reason, refused.kept_as)
    page = (out / "variances.html").read_text()
    assert 'id="quarantined-count" data-count="1"' in page
    table = page[page.index('<table id="quarantined">') :]
    assert "cmxl-mt940-dem.sta" in table and refused.reason in html.unescape(table)
    listed = runner.invoke(main, ["recon", "list", "--state-dir", str(state), "--json"])
    assert json.loads(listed.output)["quarantined_files"] == 1
    said = runner.invoke(main, ["recon", "list", "--state-dir", str(state)]).output
    assert "1 file(s) quarantined" in said and "cmxl-mt940-dem.sta (mt940, received " in said
    assert refused.reason in said and refused.kept_as in said


def test_without_an_intake_registry_the_report_counts_no_quarantined_file(reported, tmp_path):
    import json

    state, _ = reported
    done = CliRunner().invoke(
        main, ["report", "variances", "--state-dir", str(state), "--out", str(tmp_path), "--json"]
    )
    assert done.exit_code == 0, done.output
    assert (json.loads(done.output)["quarantined_files"], json.loads(done.output)["quarantined"]) == (0, [])
    assert not (state / "intake.sqlite").exists(), "reading made no registry"
    assert 'id="quarantined-count" data-count="0"' in (tmp_path / "variances.html").read_text()


def test_no_store_is_a_clear_error(tmp_path):
    done = CliRunner().invoke(main, ["report", "variances", "--state-dir", str(tmp_path), "--out", str(tmp_path / "r")])
    assert done.exit_code == 2
    assert "no variance store" in done.output and "clearline recon" in done.output


# ---------------------------------------------------------------------------- the trend


def test_the_trend_counts_per_day_up_to_120_days_and_per_week_beyond():
    start = date(2026, 1, 1)
    assert trend_bucket(start, start) == "day"
    assert trend_bucket(start, start + timedelta(days=WEEKLY_TREND_AFTER_DAYS - 1)) == "day"
    assert trend_bucket(start, start + timedelta(days=WEEKLY_TREND_AFTER_DAYS)) == "week"


_CATEGORIES = ("amount_mismatch", "duplicate", "late_settlement")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 400), st.sampled_from(_CATEGORIES)), min_size=1, max_size=60), st.integers(0, 6)
)
def test_a_weekly_trend_counts_each_variance_once_in_the_week_from_its_monday(found, shift):
    first = date(2025, 12, 29) + timedelta(days=shift)  # 2025-12-29 is a Monday; shift moves the start off it
    frame = _variances([(100, "EUR", 1)] * len(found)).with_columns(
        since=pl.Series([first + timedelta(days=d) for d, _ in found]), category=pl.Series([c for _, c in found])
    )
    report = build(frame, RULES, first, first + timedelta(days=400), FIRST_SEEN)
    assert report.trend_bucket == "week"
    want: dict[tuple[date, str], int] = {}
    for d, c in found:
        day = first + timedelta(days=d)
        key = (day - timedelta(days=day.weekday()), c)
        want[key] = want.get(key, 0) + 1
    assert {(r["since"], r["category"]): r["len"] for r in report.trend.iter_rows(named=True)} == want


def _bars(svg: str) -> list[tuple[float, str]]:
    """(x, tooltip) of every bar of a chart."""
    return [(float(x), title) for x, title in re.findall(r'<rect x="([\d.]+)"[^>]*><title>([^<]*)</title>', svg)]


def test_the_chart_draws_a_bar_per_day_or_per_week_and_names_the_bucket():
    days = [date(2026, 3, 2), date(2026, 3, 2), date(2026, 3, 5), date(2026, 3, 12)]  # Mon, Mon, Thu, next Thu
    frame = _variances([(100, "EUR", 1)] * 4).with_columns(since=pl.Series(days))
    daily = build(frame, RULES, date(2026, 3, 1), date(2026, 3, 31), FIRST_SEEN)
    svg = stacked_bars(daily.trend, ("amount_mismatch",), daily.trend_bucket)
    assert 'aria-label="variances per day by category, 2026-03-02 to 2026-03-12"' in svg
    bars = _bars(svg)
    assert [t for _, t in bars] == [
        "2026-03-02 amount_mismatch: 2",
        "2026-03-05 amount_mismatch: 1",
        "2026-03-12 amount_mismatch: 1",
    ]
    slot = (960 - 40 - 10) / 11  # the plot's width over the 11 days drawn, the empty ones too
    assert [x for x, _ in bars] == pytest.approx([40, 40 + 3 * slot, 40 + 10 * slot], abs=0.05)

    weekly = build(frame, RULES, date(2026, 1, 1), date(2026, 6, 30), FIRST_SEEN)
    svg = stacked_bars(weekly.trend, ("amount_mismatch",), weekly.trend_bucket)
    assert (
        'data-bucket="week"' in svg
        and "variances per week by category, week of 2026-03-02 to week of 2026-03-09" in svg
    )
    bars = _bars(svg)
    assert [t for _, t in bars] == ["week of 2026-03-02 amount_mismatch: 3", "week of 2026-03-09 amount_mismatch: 1"]
    assert [x for x, _ in bars] == pytest.approx([40, 40 + 910 / 2], abs=0.05)


def test_a_report_over_a_long_period_shows_its_trend_per_week(reported, tmp_path):
    state, _ = reported
    with VarianceStore(state / "variances.duckdb") as store:
        stored = store.frame()
    # The same variances spread over 300 days: one every few days from 2026-01-05 (a Monday).
    spread = stored.with_columns(
        since=pl.Series([date(2026, 1, 5) + timedelta(days=i * 300 // stored.height) for i in range(stored.height)])
    )
    report = build(spread, RULES, date(2026, 1, 5), date(2026, 10, 31), FIRST_SEEN)
    page = write(report, tmp_path)["html"].read_text()
    assert "Trend: variances per week (weeks from Monday), by category" in page and 'data-bucket="week"' in page
    assert sum(int(n) for n in re.findall(r"<title>week of [\d-]+ [a-z_]+: (\d+)</title>", page)) == stored.height
    short = (reported[1] / "variances.html").read_text()  # the small world's own 120 days or less
    assert "Trend: variances per day, by category" in short and 'data-bucket="day"' in short
