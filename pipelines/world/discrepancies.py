"""Injected discrepancies: what the processors and the bank report differs, on purpose,
from what the platform recorded, with a ground-truth row for every difference.

The event stream stays the platform's own record. Each injection changes the processors'
or the bank's side at one point, and that side stays internally consistent downstream: a
fee overcharge lowers the line's net, the payout that carries it, and the bank credit of
that payout, just as it would in life. Every variance category of ARCHITECTURE.md gets at
least one injection whenever the rate is above zero, so a small world still tests them all.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from clearline.pipelines.world import bank_files
from clearline.pipelines.world.ids import letter_ids
from clearline.pipelines.world.settlement import convert, fx_rate_micro, rate_text

LINE_KINDS = (
    "missing_at_processor",
    "missing_in_ledger",
    "amount_mismatch",
    "fee_mismatch",
    "currency_fx_mismatch",
    "duplicate",
    "late_settlement",
    "unclassified_processor_line",
)
STATEMENT_KINDS = ("statement_gap", "balance_break", "bank_balance_mismatch")
CATEGORIES = LINE_KINDS + ("payout_not_in_bank", "unexplained_bank_line") + STATEMENT_KINDS
TRUTH_SCHEMA = {
    "kind": pl.String,
    "processor": pl.String,
    "payment_id": pl.String,
    "line_id": pl.String,
    "payout_id": pl.String,
    "bank_line_id": pl.String,
    "amount_minor": pl.Int64,
    "currency": pl.String,
    "field": pl.String,
    "expected": pl.String,
    "actual": pl.String,
    "statement": pl.String,  # "<account> <YYYY-MM-DD>": the bank statement a balance discrepancy shows on
}


def _count(rate: float, eligible: int, share: int) -> int:
    return 0 if rate <= 0 or eligible == 0 else max(1, round(rate * eligible / share))


def _truth(rows: pl.DataFrame, kind: str, **exprs) -> pl.DataFrame:
    cols = {k: pl.lit(None, dtype=t) for k, t in TRUTH_SCHEMA.items()}
    cols.update({"kind": pl.lit(kind)}, **exprs)
    return rows.select(**cols)


def inject_lines(
    rng: np.random.Generator, lines: pl.DataFrame, rate: float, last_safe_day: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The processors' actual lines and the truth of what differs from the expected ones."""
    eligible = lines.filter(
        (pl.col("record_type") == "charge")
        & pl.col("batch_id").is_not_null()
        & (pl.col("available_on") <= last_safe_day)
    )
    per_kind = _count(rate, eligible.height, len(LINE_KINDS))
    same_ccy = eligible.filter(pl.col("fx_rate").is_null())["line_id"].to_numpy()
    picks = same_ccy[rng.permutation(len(same_ccy))]
    fx_first = eligible.sort(pl.col("fx_rate").is_null(), "line_id")["line_id"].head(per_kind).to_list()
    chosen, taken = {}, set(fx_first)
    chosen["currency_fx_mismatch"] = fx_first
    pool = iter(p for p in picks if p not in taken)
    for kind in LINE_KINDS:
        if kind != "currency_fx_mismatch":
            chosen[kind] = [p for _, p in zip(range(per_kind), pool)]
            taken.update(chosen[kind])
    actual, truths = lines, []
    by_kind = {k: eligible.filter(pl.col("line_id").is_in(v)) for k, v in chosen.items()}
    ref = dict(
        processor=pl.col("processor"),
        payment_id=pl.col("payment_id"),
        line_id=pl.col("line_id"),
        payout_id=pl.col("batch_id"),
        currency=pl.col("net_currency"),
    )

    rows = by_kind["missing_at_processor"]
    actual = actual.filter(~pl.col("line_id").is_in(rows["line_id"].to_list()))
    truths.append(_truth(rows, "missing_at_processor", **ref, amount_minor=pl.col("net_minor")))

    rows = by_kind["missing_in_ledger"]
    n = rows.height
    phantom = rows.with_columns(
        line_id=letter_ids("stx_", 0, n),
        psp_reference=letter_ids("pspx", 0, n, 9),
        payment_id=letter_ids("payx_", 0, n),
    )
    actual = pl.concat([actual, phantom])
    truths.append(_truth(phantom, "missing_in_ledger", **ref, amount_minor=pl.col("net_minor")))

    rows = by_kind["duplicate"]
    dup = rows.with_columns(line_id=letter_ids("std_", 0, rows.height))
    actual = pl.concat([actual, dup])
    truths.append(_truth(dup, "duplicate", **ref, amount_minor=pl.col("net_minor")))

    delta = lambda r: pl.Series(
        np.maximum(1, (r["gross_minor"].to_numpy() * rng.uniform(0.01, 0.05, r.height)).astype(np.int64))
    )  # noqa: E731
    rows = by_kind["amount_mismatch"]
    rows = rows.with_columns(delta=delta(rows))
    actual = _patch(
        actual,
        rows,
        gross_minor=pl.col("gross_minor") - pl.col("delta"),
        net_minor=pl.col("net_minor") - pl.col("delta"),
    )
    truths.append(
        _truth(
            rows,
            "amount_mismatch",
            **ref,
            amount_minor=pl.col("delta"),
            field=pl.lit("gross"),
            expected=pl.col("gross_minor").cast(pl.String),
            actual=(pl.col("gross_minor") - pl.col("delta")).cast(pl.String),
        )
    )

    rows = by_kind["fee_mismatch"].with_columns(delta=pl.Series(rng.integers(5, 60, by_kind["fee_mismatch"].height)))
    actual = _patch(
        actual,
        rows,
        fee_minor=pl.col("fee_minor") + pl.col("delta"),
        net_minor=pl.col("net_minor") - pl.col("delta"),
        markup_minor=pl.col("markup_minor") + pl.when(pl.col("processor") == "adyen").then("delta").otherwise(0),
    )
    truths.append(
        _truth(
            rows,
            "fee_mismatch",
            **ref,
            amount_minor=pl.col("delta"),
            field=pl.lit("fee"),
            expected=pl.col("fee_minor").cast(pl.String),
            actual=(pl.col("fee_minor") + pl.col("delta")).cast(pl.String),
        )
    )

    rows = _fx_mismatch(by_kind["currency_fx_mismatch"])
    actual = _patch(
        actual, rows, fx_rate=pl.col("new_rate"), net_minor=pl.col("new_net"), gross_currency=pl.col("new_gross_ccy")
    )
    truths.append(
        _truth(
            rows,
            "currency_fx_mismatch",
            **ref,
            amount_minor=(pl.col("net_minor") - pl.col("new_net")).abs(),
            field=pl.col("field"),
            expected=pl.col("expected"),
            actual=pl.col("actual"),
        )
    )

    rows = by_kind["late_settlement"].with_columns(
        late_on=pl.col("available_on").dt.add_business_days(
            pl.Series(rng.integers(3, 6, by_kind["late_settlement"].height))
        )
    )
    rows = rows.with_columns(
        new_batch=pl.format(
            "po_{}_{}_{}",
            "processor",
            pl.col("net_currency").str.to_lowercase(),
            _batch_day(pl.col("late_on"), pl.col("batch_id")).dt.strftime("%Y%m%d"),
        )
    )
    actual = _patch(actual, rows, available_on=pl.col("late_on"), batch_id=pl.col("new_batch"))
    truths.append(
        _truth(
            rows,
            "late_settlement",
            **ref,
            amount_minor=pl.col("net_minor"),
            field=pl.lit("available_on"),
            expected=pl.col("available_on").cast(pl.String),
            actual=pl.col("late_on").cast(pl.String),
        )
    )
    # A record type the processors start writing that intake does not know: a deduction of
    # 1-5 % of a charge's net in the charge's batch, which the payout (and the bank) counts.
    rows = by_kind["unclassified_processor_line"]
    cut = np.maximum(1, (rows["net_minor"].to_numpy() * rng.uniform(0.01, 0.05, rows.height)).astype(np.int64))
    unknown = rows.with_columns(
        line_id=letter_ids("stu_", 0, rows.height),
        psp_reference=letter_ids("pspu", 0, rows.height, 9),
        payment_id=pl.lit(None, pl.String),
        record_type=pl.lit("unclassified"),
        gross_minor=pl.Series(-cut),
        gross_currency=pl.col("net_currency"),
        fee_minor=pl.lit(0, pl.Int64),
        net_minor=pl.Series(-cut),
        fx_rate=pl.lit(None, pl.String),
        **{part: pl.lit(0, pl.Int64) for part in ("commission_minor", "markup_minor", "scheme_fee_minor")},
        interchange_minor=pl.lit(0, pl.Int64),
    )
    actual = pl.concat([actual, unknown.select(actual.columns)])
    truths.append(_truth(unknown, "unclassified_processor_line", **ref, amount_minor=-pl.col("net_minor")))
    return actual.sort("available_on", "processor", "line_id"), pl.concat(truths)


def _batch_day(day: pl.Expr, old_batch: pl.Expr) -> pl.Expr:
    """The batch day a late line lands in: weekly processors pay on the following Monday."""
    weekly = old_batch.str.starts_with("po_checkoutcom")
    monday = day.dt.add_business_days(0, roll="forward", week_mask=[True, False, False, False, False, False, False])
    return pl.when(weekly).then(monday).otherwise(day)


def _fx_mismatch(rows: pl.DataFrame) -> pl.DataFrame:
    """FX lines get a rate 1.5 % off (net follows); same-currency lines a wrong currency code."""
    is_fx = rows["fx_rate"].is_not_null().to_numpy()
    gross = rows["gross_minor"].to_numpy()
    present, settle = rows["gross_currency"].to_numpy(), rows["net_currency"].to_numpy()
    day = rows["available_on"].cast(pl.Int64).to_numpy()
    rate = fx_rate_micro(present, settle, day) * 985 // 1000
    new_net = np.where(
        is_fx, convert(gross, rate, present, settle) - rows["fee_minor"].to_numpy(), rows["net_minor"].to_numpy()
    )
    swap = {"USD": "CAD", "EUR": "USD", "GBP": "EUR"}
    new_ccy = np.where(is_fx, present, np.array([swap.get(c, "USD") for c in present]))
    new_rate = np.where(is_fx, rate_text(rate), None)
    text = lambda a: pl.Series(list(a), dtype=pl.String)  # noqa: E731  (numpy str/object -> String)
    return rows.with_columns(
        new_rate=text(new_rate),
        new_net=pl.Series(new_net, dtype=pl.Int64),
        new_gross_ccy=text(new_ccy),
        field=text(np.where(is_fx, "fx_rate", "currency")),
        expected=text(np.where(is_fx, rows["fx_rate"].fill_null("").to_numpy(), present)),
        actual=text(np.where(is_fx, new_rate, new_ccy)),
    )


def _patch(df: pl.DataFrame, rows: pl.DataFrame, **changes: pl.Expr) -> pl.DataFrame:
    """`df` with the lines in `rows` changed by `changes` (computed on the rows' columns)."""
    patched = rows.with_columns(**changes).select(df.columns)
    return pl.concat([df.filter(~pl.col("line_id").is_in(rows["line_id"].to_list())), patched])


def inject_bank(
    rng: np.random.Generator, bank: pl.DataFrame, rate: float, last_safe_day: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Drop some payout credits from the bank and add some lines nobody can explain."""
    payouts = bank.filter((pl.col("kind") == "processor_payout") & (pl.col("booking_date") <= last_safe_day))
    k = _count(rate, payouts.height, 1)
    missing = payouts.sample(n=min(k, payouts.height), seed=int(rng.integers(1 << 31)))
    truth_missing = _truth(
        missing,
        "payout_not_in_bank",
        payout_id=pl.col("customer_reference"),
        bank_line_id=pl.col("line_id"),
        amount_minor=pl.col("amount_minor"),
        currency=pl.col("currency"),
    )
    k = _count(rate, bank.height, 1)
    donors = bank.sample(n=min(k, bank.height), seed=int(rng.integers(1 << 31)))
    extra = donors.with_columns(
        line_id=letter_ids("bnx_", 0, donors.height),
        bank_reference=letter_ids("BX", 0, donors.height, 9).str.to_uppercase(),
        customer_reference=letter_ids("wire_", 0, donors.height),
        amount_minor=pl.Series(
            rng.integers(1_000, 500_000, donors.height) * np.where(rng.random(donors.height) < 0.5, 1, -1)
        ),
        text=pl.lit("INCOMING WIRE NO REMITTANCE INFO"),
        kind=pl.lit("other"),
    )
    truth_extra = _truth(
        extra,
        "unexplained_bank_line",
        bank_line_id=pl.col("line_id"),
        amount_minor=pl.col("amount_minor").abs(),
        currency=pl.col("currency"),
    )
    actual = pl.concat([bank.filter(~pl.col("line_id").is_in(missing["line_id"].to_list())), extra]).sort(
        "booking_date", "line_id"
    )
    return actual, pl.concat([truth_missing, truth_extra])


def inject_statements(
    rng: np.random.Generator, statements: list[bank_files.Statement], rate: float, last_safe_day: date
) -> tuple[list[bank_files.Statement], pl.DataFrame]:
    """Leave one statement day out and tamper with another statement's balances.

    The dropped statement sits between two others, moves the balance (so a bank that
    numbers nothing still shows the gap) and holds no injected line; its lines are then
    missing from the bank too (truth: payout_not_in_bank each, by the reference the ledger
    knows them by). The tampered one has a statement on each side with no working day
    between them (else a bank without sequence numbers would rightly call it a gap), and
    neither it nor its neighbours is the dropped one: its opening and closing both move by
    the same amount, so the file adds up and both its neighbours break."""
    none = pl.DataFrame(schema=TRUTH_SCHEMA)
    runs = [run for run in _by_account(statements) if len(run) >= 3]
    droppable = [
        (run, i)
        for run in runs
        for i in range(1, len(run) - 1)
        if run[i].day <= last_safe_day
        and run[i].closing_minor != run[i].opening_minor
        and not any(e["line_id"].startswith("bnx_") for e in run[i].entries)
    ]
    if rate <= 0 or not droppable:
        return statements, none
    dropped_run, g = droppable[int(rng.integers(len(droppable)))]
    gone = dropped_run[g]
    truths = [
        _truth(
            pl.DataFrame(list(gone.entries)),
            "payout_not_in_bank",
            payout_id=pl.col("customer_reference"),
            bank_line_id=pl.col("line_id"),
            amount_minor=pl.col("amount_minor").abs(),
            currency=pl.col("currency"),
        ),
        _balance_rows("statement_gap", abs(gone.closing_minor - gone.opening_minor), [dropped_run[g + 1]]),
    ]
    out = bank_files.drop_statement(statements, gone)
    tamperable = [
        (run, i)
        for run in runs
        for i in range(1, len(run) - 1)
        if run[i].day <= last_safe_day
        and not (run is dropped_run and g - 1 <= i <= g + 1)
        and _adjacent(run[i - 1].day, run[i].day)
        and _adjacent(run[i].day, run[i + 1].day)
    ]
    if tamperable:
        run, i = tamperable[int(rng.integers(len(tamperable)))]
        delta = int(rng.integers(1_000, 500_000)) * (1 if rng.random() < 0.5 else -1)
        out = bank_files.tamper_balance(out, run[i], delta)
        truths.append(_balance_rows("balance_break", abs(delta), [run[i], run[i + 1]]))
    return out, pl.concat([t.cast(TRUTH_SCHEMA) for t in truths])


def _adjacent(before: date, after: date) -> bool:
    """No working day between two statement days (a weekend may be)."""
    return int(np.busday_count(before + timedelta(days=1), after)) == 0


def _balance_rows(kind: str, amount_minor: int, shown_on: list[bank_files.Statement]) -> pl.DataFrame:
    """Truth rows of a balance discrepancy, one per statement that shows it."""
    return pl.DataFrame(
        {
            "kind": [kind] * len(shown_on),
            "amount_minor": [amount_minor] * len(shown_on),
            "currency": [s.currency for s in shown_on],
            "statement": [_statement_ref(s) for s in shown_on],
        }
    ).select(_truth_columns())


def balance_truth(statements: list[bank_files.Statement], ev: pl.DataFrame, opening: dict[str, int]) -> pl.DataFrame:
    """Each statement whose closing balance differs from the ledger's bank cash that day, by
    another amount than the account's previous statement did (a bank_balance_mismatch).

    The ledger's bank cash, from the events the world emits: the opening capital plus
    processor payouts by arrival date, repayments by their day, less merchant payouts by
    value date (the day the bank books each: the ledger compared value-dated)."""
    payload = pl.col("payload").str.json_decode(
        pl.Struct(
            {
                "amount": pl.Struct({"minor": pl.Int64, "currency": pl.String}),
                "arrival_date": pl.String,
                "value_date": pl.String,
            }
        )
    )
    sign = pl.when(pl.col("event_type") == "merchant.payout").then(-1).otherwise(1)
    moves = (
        ev.filter(pl.col("event_type").is_in(["processor.payout", "merchant.payout", "buyer.repayment"]))
        .with_columns(p=payload)
        .select(
            currency=pl.col("p").struct.field("amount").struct.field("currency"),
            day=pl.coalesce(
                pl.col("p").struct.field("arrival_date").str.to_date(),
                pl.col("p").struct.field("value_date").str.to_date(),
                pl.col("occurred_at").dt.date(),
            ),
            amount=sign * pl.col("p").struct.field("amount").struct.field("minor"),
        )
    )
    # running total of the ledger's bank cash per currency, by day: a statement's is the
    # last one on or before its day
    daily = moves.group_by("currency", "day").agg(pl.col("amount").sum()).sort("currency", "day")
    running = {
        ccy: (days["day"].to_numpy(), np.cumsum(days["amount"].to_numpy()))
        for (ccy,), days in daily.group_by("currency", maintain_order=True)
    }
    rows = []
    for run in _by_account(statements):
        before = 0
        for s in run:
            days, totals = running.get(s.currency, (np.array([], "datetime64[D]"), np.array([], np.int64)))
            seen = int(np.searchsorted(days, np.datetime64(s.day, "D"), side="right"))
            booked = int(totals[seen - 1]) if seen else 0
            diff = s.closing_minor - (opening[s.currency] + booked)
            if diff not in (before, 0):
                rows.append(_balance_rows("bank_balance_mismatch", abs(diff), [s]))
            before = diff
    return pl.concat([pl.DataFrame(schema=TRUTH_SCHEMA), *rows])


def _truth_columns() -> list[pl.Expr]:
    """Every truth column, null where a balance row has nothing to say."""
    given = ("kind", "amount_minor", "currency", "statement")
    return [pl.col(k).cast(t) if k in given else pl.lit(None, t).alias(k) for k, t in TRUTH_SCHEMA.items()]


def _statement_ref(s: bank_files.Statement) -> str:
    """How reconciliation names a statement: its account and its day."""
    return f"{s.account['account']} {s.day.isoformat()}"


def _by_account(statements: list[bank_files.Statement]) -> list[list[bank_files.Statement]]:
    runs: dict[str, list[bank_files.Statement]] = {}
    for s in statements:
        runs.setdefault(s.account["account"], []).append(s)
    return [sorted(run, key=lambda s: s.day) for run in runs.values()]
