"""Automatic fixes (recon/autofix.py): each rule clears what it should and nothing else.

The bank-fee rule is run on what the real matcher finds when a generated world's bank
credits a payout short; the timing rule on a real missing-line variance the matcher
withdraws when its line arrives. Hypothesis: a fee one minor unit over the limit, a
currency without a limit and a record that arrived a day late are never cleared.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline import config
from clearline.currency import EXPONENT
from clearline.pipelines.cli.recon import load_inputs, tolerances
from clearline.pipelines.world.generate import WorldOptions, generate
from clearline.recon import VARIANCE_SCHEMA as SCHEMA
from clearline.recon import AutofixConfigError, AutofixRules, autofix, money_text, reconcile

RULES = AutofixRules(
    timing_days={"missing_at_processor": 14, "payout_not_in_bank": 10},
    timing_watched=True,
    bank_fee_max_minor={"EUR": 500, "USD": 500, "JPY": 700},
)


@pytest.fixture(scope="module")
def world_inputs(tmp_path_factory):
    """A clean generated world's inputs, as `clearline recon --world` reads them."""
    out = tmp_path_factory.mktemp("autofix-world")
    generate(WorldOptions(days=45, merchants=4, seed=3, discrepancy_rate=0.0), out)
    return load_inputs(out, None, None)


def _as_of(inputs):
    return inputs.bank_lines["booking_date"].max() + timedelta(days=1)


def _paid_payouts(inputs) -> pl.DataFrame:
    """Processor payout credits on the bank statements, each with its currency."""
    payouts = inputs.expected_movements.filter(pl.col("kind") == "processor_payout")["reference"]
    return inputs.bank_lines.filter(pl.col("reference").is_in(payouts.to_list())).sort("booking_date", "reference")


def _short_credit(inputs, shorts: dict[str, int]):
    """The inputs with each named payout's bank credit lowered by its amount."""
    short = pl.col("reference").replace_strict(shorts, default=0, return_dtype=pl.Int64)
    return replace(inputs, bank_lines=inputs.bank_lines.with_columns(amount_minor=pl.col("amount_minor") - short))


def test_the_repository_config_loads():
    rules = AutofixRules.from_config(config.load("recon"))
    assert rules.timing_days and rules.bank_fee_max_minor["EUR"] == 500 and rules.timing_watched


def test_a_bank_fee_netted_from_a_payout_is_cleared_and_nothing_else(world_inputs):
    inputs, _ = world_inputs
    credits = _paid_payouts(inputs)
    eur = credits.filter(pl.col("amount_currency") == "EUR")
    assert eur.height >= 3, "the world pays EUR payouts"
    fee, over, credited_more = eur["reference"][0], eur["reference"][1], eur["reference"][2]
    moved = _short_credit(inputs, {fee: 150, over: 501, credited_more: -200})
    found = reconcile(moved, tolerances(), _as_of(inputs)).variances
    mismatches = found.filter(pl.col("category") == "amount_mismatch")
    assert set(mismatches["reference"]) == {fee, over, credited_more}, "the matcher sees all three"
    fixed = autofix.autofix(found.with_columns(status=pl.lit("open")), RULES)
    want = mismatches.filter(pl.col("reference") == fee)["variance_id"].to_list()
    assert fixed["variance_id"].to_list() == want
    assert fixed["rule"].to_list() == ["bank_fee_netted"]
    reason = fixed["reason"][0]
    assert reason.startswith("autofix:bank_fee_netted") and "1.50 EUR" in reason and fee in reason
    # the same variance already resolved by a person is left alone
    person = pl.when(pl.col("reference") == fee).then(pl.lit("resolved")).otherwise(pl.lit("open"))
    resolved = found.with_columns(status=person)
    assert autofix.autofix(resolved, RULES).is_empty()


def test_a_missing_line_withdrawn_in_time_is_cleared_and_a_late_one_is_not(world_inputs):
    inputs, _ = world_inputs
    lines = inputs.settlement_lines
    first = lines.sort("value_date", "line_id").row(0, named=True)
    without = replace(inputs, settlement_lines=lines.filter(pl.col("line_id") != first["line_id"]))
    found = reconcile(without, tolerances(), _as_of(inputs)).variances
    missing = found.filter((pl.col("category") == "missing_at_processor") & (pl.col("reference") == first["line_id"]))
    assert missing.height == 1
    again = reconcile(inputs, tolerances(), _as_of(inputs)).variances
    gone = sorted(set(found["variance_id"]) - set(again["variance_id"]))
    assert missing["variance_id"].to_list() == [g for g in gone if g in set(missing["variance_id"])]
    since = missing["since"][0]
    rows = found.with_columns(status=pl.lit("open"))
    on_time = autofix.autofix(autofix.mark_cleared(rows, gone, since + timedelta(days=14)), RULES)
    timing = on_time.filter(pl.col("rule") == "timing_cleared")
    assert timing["variance_id"].to_list() == missing["variance_id"].to_list()
    assert on_time["reason"][0].startswith("autofix:timing_cleared")
    late = autofix.autofix(autofix.mark_cleared(rows, gone, since + timedelta(days=15)), RULES)
    assert late.filter(pl.col("rule") == "timing_cleared").is_empty()
    # still found by the matcher (not withdrawn): never cleared, whatever its age
    assert autofix.autofix(rows, RULES).filter(pl.col("rule") == "timing_cleared").is_empty()


def _variance(**over) -> dict:
    row = {
        "variance_id": "var_00000000000000000001",
        "category": "amount_mismatch",
        "processor": "stripe",
        "merchant_id": None,
        "reference": "po_1",
        "payout_id": "po_1",
        "amount_minor": 100,
        "currency": "EUR",
        "field": "amount",
        "expected": "",
        "actual": "",
        "since": date(2026, 3, 2),
        "age_days": 3,
        "ledger_event_ids": [],
        "evidence": [],
        "status": "open",
    }
    return row | over


def _payout_short(currency: str, paid: int, fee: int, **over) -> pl.DataFrame:
    """One bank-level payout difference as the matcher words it (matching/bank.py)."""
    row = _variance(amount_minor=fee, currency=currency, **over)
    frame = pl.DataFrame([row], schema={**SCHEMA, "status": pl.String})
    return frame.with_columns(
        expected=money_text(pl.lit(paid, pl.Int64), pl.col("currency")),
        actual=money_text(pl.lit(paid - fee, pl.Int64), pl.col("currency")),
    )


currencies = st.sampled_from(["EUR", "USD", "JPY", "GBP", "CHF", "KWD"])


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(currency=currencies, paid=st.integers(1_000, 10**9), fee=st.integers(1, 2_000))
def test_a_fee_is_cleared_exactly_when_its_currency_allows_it(currency, paid, fee):
    fixed = autofix.autofix(_payout_short(currency, paid, fee), RULES)
    limit = RULES.bank_fee_max_minor.get(currency)
    assert fixed.height == (limit is not None and fee <= limit)


@settings(max_examples=100)
@given(currency=st.sampled_from(["EUR", "USD", "JPY"]), paid=st.integers(1_000, 10**9))
def test_one_minor_unit_over_the_limit_is_never_cleared(currency, paid):
    limit = RULES.bank_fee_max_minor[currency]
    assert autofix.autofix(_payout_short(currency, paid, limit), RULES).height == 1
    assert autofix.autofix(_payout_short(currency, paid, limit + 1), RULES).is_empty()


@settings(max_examples=100)
@given(
    category=st.sampled_from(["amount_mismatch", "fee_mismatch", "missing_at_processor"]),
    field=st.sampled_from(["amount", "gross", "net", "fee", "line"]),
    payout=st.booleans(),
    fee=st.integers(1, 500),
)
def test_only_a_payouts_bank_amount_difference_counts_as_a_fee(category, field, payout, fee):
    frame = _payout_short("EUR", 10_000, fee, category=category, field=field, payout_id="po_1" if payout else None)
    cleared = autofix.autofix(frame, RULES).height == 1
    assert cleared == (category == "amount_mismatch" and field == "amount" and payout)


def test_a_payout_credited_more_than_expected_is_not_a_fee():
    frame = _payout_short("EUR", 10_000, 100).with_columns(expected=pl.lit("99.00 EUR"), actual=pl.lit("100.00 EUR"))
    assert autofix.autofix(frame, RULES).is_empty()


@settings(max_examples=100)
@given(
    category=st.sampled_from(["missing_at_processor", "payout_not_in_bank", "missing_in_ledger", "fee_mismatch"]),
    days=st.integers(0, 30),
    watch=st.one_of(st.none(), st.integers(0, 30)),
)
def test_a_withdrawn_break_clears_only_inside_its_tolerance(category, days, watch):
    since = date(2026, 3, 2)
    until = since + timedelta(days=watch) if watch is not None else None
    frame = pl.DataFrame(
        [_variance(category=category, field="line", payout_id=None, watch_until=until)],
        schema={**SCHEMA, "status": pl.String, "watch_until": pl.Date},
    )
    fixed = autofix.autofix(autofix.mark_cleared(frame, [frame["variance_id"][0]], since + timedelta(days=days)), RULES)
    allowed = watch if watch is not None else RULES.timing_days.get(category)
    assert fixed.height == (allowed is not None and days <= allowed)
    assert (fixed["rule"] == "timing_cleared").all()


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({"bank_fee_netted": {"max_fee": {"EUR": 2.5}}}, "autofix.bank_fee_netted.max_fee.EUR"),
        ({"bank_fee_netted": {"max_fee": {"EURO": "2.50"}}}, "autofix.bank_fee_netted.max_fee.EURO"),
        ({"bank_fee_netted": {"max_fee": {"JPY": "2.5"}}}, "autofix.bank_fee_netted.max_fee.JPY"),
        ({"bank_fee_netted": {"max_fee": {"USD": "0"}}}, "autofix.bank_fee_netted.max_fee.USD"),
        ({"bank_fee_netted": ["EUR"]}, "autofix.bank_fee_netted"),
        ({"timing_cleared": {"within_days": {"missing": 3}}}, "autofix.timing_cleared.within_days.missing"),
        (
            {"timing_cleared": {"within_days": {"missing_in_ledger": -1}}},
            "autofix.timing_cleared.within_days.missing_in_ledger",
        ),
        ({"timing_cleared": {"watched": "yes"}}, "autofix.timing_cleared.watched"),
        ({"fx_clear": {}}, "'fx_clear'"),
    ],
)
def test_a_bad_section_is_refused_naming_its_key(section, named):
    with pytest.raises(AutofixConfigError, match="configs/recon.yaml") as err:
        AutofixRules.from_config({"autofix": section})
    assert named in str(err.value)


def test_no_section_fixes_nothing_and_integer_fees_are_major_units():
    assert AutofixRules.from_config({}) == AutofixRules()
    rules = AutofixRules.from_config({"autofix": {"bank_fee_netted": {"max_fee": {"JPY": 700, "KWD": 2}}}})
    assert rules.bank_fee_max_minor == {"JPY": 700, "KWD": 2 * 10 ** EXPONENT["KWD"]}
    assert autofix.autofix(_payout_short("EUR", 10_000, 1), AutofixRules()).is_empty()


def test_the_variance_store_records_each_fix_with_its_reason_code_and_actor(world_inputs, tmp_path):
    """The wiring both runs share (`variance_sink.apply_autofix`): a fix is a resolution in
    the store, under code and actor "autofix", with the rule's reason as its note; what the
    rules do not clear stays open, and a second pass moves nothing."""
    from clearline.pipelines.connectors.variance_sink import apply_autofix
    from clearline.recon import VarianceStore

    inputs, _ = world_inputs
    eur = _paid_payouts(inputs).filter(pl.col("amount_currency") == "EUR")
    fee, over = eur["reference"][0], eur["reference"][1]
    found = reconcile(_short_credit(inputs, {fee: 150, over: 501}), tolerances(), _as_of(inputs)).variances
    with VarianceStore(tmp_path / "variances.duckdb") as store:
        store.record(found)
        moved = apply_autofix(store, RULES)
        fixed = found.filter((pl.col("category") == "amount_mismatch") & (pl.col("reference") == fee))
        assert moved == fixed["variance_id"].to_list()
        row = store.get(moved[0])
        assert (row["status"], row["code"]) == ("resolved", autofix.CODE)
        assert row["note"].startswith("autofix:bank_fee_netted") and "1.50 EUR" in row["note"]
        last = store.history(moved[0]).row(-1, named=True)
        assert (last["status"], last["actor"], last["code"]) == ("resolved", autofix.CODE, autofix.CODE)
        still = found.filter((pl.col("category") == "amount_mismatch") & (pl.col("reference") == over))
        assert store.get(still["variance_id"][0])["status"] == "open"
        assert apply_autofix(store, RULES) == []
