"""How money settles: processor settlement lines, payout batches, merchant payouts and the
platform's bank account lines.

Each processor turns captures, refunds, chargebacks and reversals into settlement lines in
the merchant's settlement currency (converting presentment currency at the day's rate),
deducts its fee by its own schedule, makes them available after its settlement delay, and
pays them out in batches (daily or weekly). A batch whose total is not positive rolls into
the next one, as processors carry a negative balance forward. The platform then pays its
merchants what they are owed each business day and its buyers repay into the bank.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from clearline.currency import EXPONENT
from clearline.freezes import Freezes
from clearline.pipelines.world.ids import letter_ids
from clearline.pipelines.world.lifecycle import DAY, HOUR

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Reference value of one unit in USD, in millionths; the day's rate moves around it.
_USD_MICRO = {"USD": 1_000_000, "EUR": 1_082_000, "GBP": 1_268_000, "JPY": 6_700, "CAD": 731_000}
_LINE_SIGN = {"charge": 1, "refund": -1, "chargeback": -1, "chargeback_reversal": 1, "fee": -1}


def fx_rate_micro(present: np.ndarray, settle: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Settlement units per presentment unit, in millionths, for each (pair, day)."""
    jitter = 1_000_000 + ((day.astype(np.int64) * 7919) % 1001 - 500) * 10  # ±0.5 %, fixed per day
    num = np.array([_USD_MICRO[c] for c in present], dtype=np.int64) * jitter
    den = np.array([_USD_MICRO[c] for c in settle], dtype=np.int64)
    same = present == settle
    return np.where(same, 1_000_000, (num + den // 2) // den)


def convert(minor: np.ndarray, rate_micro: np.ndarray, present: np.ndarray, settle: np.ndarray) -> np.ndarray:
    """Minor units of `present` currency into minor units of `settle`, rounded half up.

    The rate is per whole unit, so the currencies' minor-unit exponents enter (JPY has none)."""
    shift = np.array([EXPONENT[s] - EXPONENT[p] for p, s in zip(present, settle)], dtype=np.int64)
    num = minor * rate_micro * 10 ** np.maximum(shift, 0)
    den = 1_000_000 * 10 ** np.maximum(-shift, 0)
    return (num + den // 2) // den


def rate_text(rate_micro: np.ndarray) -> np.ndarray:
    """Decimal text of rates in millionths: 1082000 -> '1.082000'."""
    if rate_micro.size == 0:
        return np.array([], dtype=str)
    return np.char.add(
        np.char.add((rate_micro // 1_000_000).astype(str), "."), np.char.zfill((rate_micro % 1_000_000).astype(str), 6)
    )


def _bps(amount: np.ndarray, bps: int) -> np.ndarray:
    return (amount * bps + 5_000) // 10_000


def processor_fees(schedule: dict, amount: np.ndarray) -> dict[str, np.ndarray]:
    """Fee components of a charge under one processor's schedule for one method.

    Adyen-style schedules split into commission, markup, scheme fees and interchange;
    blended ones (percent + fixed, maybe capped) are one processing fee.
    """
    if "percent_bps" in schedule:
        fee = _bps(amount, schedule["percent_bps"]) + schedule.get("fixed_minor", 0)
        if "cap_minor" in schedule:
            fee = np.minimum(fee, schedule["cap_minor"])
        zero = np.zeros_like(amount)
        return {
            "fee": fee,
            "commission_minor": zero,
            "markup_minor": zero,
            "scheme_fee_minor": zero,
            "interchange_minor": zero,
        }
    parts = {
        "commission_minor": np.full_like(amount, schedule["commission_fixed_minor"]),
        "markup_minor": _bps(amount, schedule["markup_bps"]),
        "scheme_fee_minor": _bps(amount, schedule["scheme_bps"]),
        "interchange_minor": _bps(amount, schedule["interchange_bps"]),
    }
    return {"fee": sum(parts.values()), **parts}


def settlement_lines(cfg: dict, tables: dict[str, pl.DataFrame], merchants: pl.DataFrame) -> pl.DataFrame:
    """Every line each processor settles, with its fee, net, availability and batch."""
    kinds = {
        "charge": "payment.captured",
        "refund": "payment.refunded",
        "chargeback": "chargeback.opened",
        "chargeback_reversal": "chargeback.reversed",
    }
    cols = ["t", "merchant", "payment_id", "processor", "method", "amount_minor", "amount_ccy"]
    parts = [tables[ev].select(cols).with_columns(record_type=pl.lit(kind)) for kind, ev in kinds.items()]
    cb = tables["chargeback.opened"].select(cols).with_columns(record_type=pl.lit("fee"))
    lines = pl.concat(parts + [cb]).sort("t", "payment_id", "record_type")
    n = lines.height
    proc = lines["processor"].to_numpy()
    method = lines["method"].to_numpy()
    kind = lines["record_type"].to_numpy()
    present = lines["amount_ccy"].to_numpy()
    settle = merchants["currency"].to_numpy()[lines["merchant"].to_numpy()]
    t = lines["t"].to_numpy()
    day = t // DAY
    rate = fx_rate_micro(present, settle, day)
    gross = np.where(kind == "fee", 0, lines["amount_minor"].to_numpy())
    converted = convert(gross, rate, present, settle)
    fee_cols = {
        k: np.zeros(n, dtype=np.int64)
        for k in ("fee", "commission_minor", "markup_minor", "scheme_fee_minor", "interchange_minor")
    }
    delay = np.zeros(n, dtype=np.int64)
    weekly = np.zeros(n, dtype=bool)
    for name, spec in cfg["processors"].items():
        at = proc == name
        delay[at] = spec["settlement_delay_days"]
        weekly[at] = spec["payout"] == "weekly"
        for m in spec["methods"]:
            sel = at & (method == m) & (kind == "charge")
            for k, v in processor_fees(spec["fees"][m], converted[sel]).items():
                fee_cols[k][sel] = v
        fee_cols["fee"][at & (kind == "fee")] = spec["fees"]["chargeback_fee_minor"]
    sign = np.array([_LINE_SIGN[k] for k in kind], dtype=np.int64)
    net = np.where(kind == "fee", -fee_cols["fee"], sign * converted - fee_cols["fee"])
    available = np.busday_offset(day.astype("datetime64[D]"), delay, roll="forward")
    batch_day = np.where(weekly, np.busday_offset(available, 0, roll="forward", weekmask="Mon"), available)
    fx = present != settle
    return lines.select("t", "merchant", "payment_id", "processor", "record_type", "method").with_columns(
        line_id=letter_ids("stl_", 0, n),
        psp_reference=letter_ids("psp", 0, n, 9),
        gross_minor=pl.Series(sign * gross),
        gross_currency=pl.Series(present),
        fee_minor=pl.Series(fee_cols["fee"]),
        net_minor=pl.Series(net),
        net_currency=pl.Series(settle),
        fx_rate=pl.Series(np.where(fx, rate_text(rate), None).tolist(), dtype=pl.String),
        available_on=pl.Series(available),
        batch_day=pl.Series(batch_day),
        **{k: pl.Series(v) for k, v in fee_cols.items() if k != "fee"},
    )


def _roll_forward(totals: pl.DataFrame, keys: list[str], day: str) -> pl.DataFrame:
    """Map each (keys, day) bucket to the day it is paid: the first day from it on whose
    running total since the last payment is positive. Buckets after the last payment stay
    unpaid (their paid day is null)."""
    out = []
    for _, grp in totals.sort(*keys, day).group_by(keys, maintain_order=True):
        days, amounts = grp[day].to_list(), grp["amount"].to_list()
        paid, pending, running = [None] * len(days), [], 0
        for i, (d, a) in enumerate(zip(days, amounts)):
            pending.append(i)
            running += a
            if running > 0:
                for j in pending:
                    paid[j] = d
                pending, running = [], 0
        out.append(grp.with_columns(paid_day=pl.Series(paid, dtype=grp[day].dtype)))
    return pl.concat(out).drop("amount")


def _batch_id(day: str) -> pl.Expr:
    return pl.format(
        "po_{}_{}_{}", "processor", pl.col("net_currency").str.to_lowercase(), pl.col(day).dt.strftime("%Y%m%d")
    )


def processor_payouts(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Assign each line its payout batch; return (lines with batch_id, payouts).

    A line of a day whose balance was not positive is paid by a later batch (`batch_id`),
    and keeps in `reported_in` the batch of its own day, whose report lists it and carries
    its balance forward (Adyen writes a Balancetransfer row in each of the two reports);
    `reported_in` is null for a line paid by its own day's batch."""
    keys = ["processor", "net_currency"]
    totals = lines.group_by(*keys, "batch_day").agg(amount=pl.col("net_minor").sum())
    paid = _roll_forward(totals, keys, "batch_day")
    lines = lines.join(paid, on=[*keys, "batch_day"], how="left").with_columns(
        batch_id=pl.when(pl.col("paid_day").is_not_null()).then(_batch_id("paid_day")),
        reported_in=pl.when(pl.col("paid_day").is_not_null() & (pl.col("paid_day") != pl.col("batch_day"))).then(
            _batch_id("batch_day")
        ),
    )
    payouts = (
        lines.filter(pl.col("batch_id").is_not_null())
        .group_by("batch_id", "processor", "net_currency", "paid_day")
        .agg(amount_minor=pl.col("net_minor").sum(), line_count=pl.len())
        .rename({"batch_id": "payout_id", "net_currency": "currency"})
        .with_columns(
            t=(pl.col("paid_day").cast(pl.Int64) * DAY + 7 * HOUR),
            arrival_date=pl.col("paid_day").dt.add_business_days(1),
        )
        .sort("t", "payout_id")
    )
    return lines.drop("paid_day"), payouts


def merchant_payouts(lines: pl.DataFrame, tables: dict[str, pl.DataFrame], merchants: pl.DataFrame) -> pl.DataFrame:
    """What the platform owes each merchant per business day: terms orders it funds (less
    its fee) the next business day, and card/ACH settlement net (less dispute fees)."""
    terms = tables["order.created"].filter(pl.col("payment_method") == "terms")
    fees = tables["fee.charged"]
    d = lambda t: pl.from_epoch(t // DAY, time_unit="d")  # noqa: E731
    owed = pl.concat(
        [
            terms.select(
                "merchant", day=d(pl.col("t")).dt.add_business_days(1, roll="forward"), amount=pl.col("amount_minor")
            ),
            fees.select(
                "merchant", day=d(pl.col("t")).dt.add_business_days(1, roll="forward"), amount=-pl.col("amount_minor")
            ),
            lines.filter((pl.col("record_type") != "fee") & pl.col("batch_id").is_not_null()).select(
                "merchant", day=pl.col("available_on"), amount=pl.col("net_minor")
            ),
        ]
    )
    totals = owed.group_by("merchant", "day").agg(amount=pl.col("amount").sum(), items=pl.len())
    paid = _roll_forward(totals.drop("items"), ["merchant"], "day")
    payouts = (
        totals.join(paid, on=["merchant", "day"])
        .filter(pl.col("paid_day").is_not_null())
        .group_by("merchant", "paid_day")
        .agg(amount_minor=pl.col("amount").sum(), order_count=pl.col("items").sum())
        .sort("paid_day", "merchant")
    )
    return payouts.with_columns(
        payout_id=letter_ids("mpo_", 0, payouts.height),
        t=pl.col("paid_day").cast(pl.Int64) * DAY + 9 * HOUR,
        amount_ccy=merchants["currency"].gather(payouts["merchant"]),
    ).rename({"paid_day": "value_date"})


def held_payouts(
    m_payouts: pl.DataFrame, merchant_ids: pl.Series, accounts_cfg: dict[str, dict], freezes: Freezes
) -> pl.DataFrame:
    """`m_payouts` with `frozen_kind` and `frozen_target`: the freeze that held each one
    (null for the payouts sent), as the platform's payout run decides it
    (`Freezes.holding_payout`: the merchant, else the bank account the currency is paid
    from, frozen at or before the payout)."""
    # Only a payout to a frozen merchant or from a frozen account can be held: the run is
    # asked about those; the others (nearly all, and all without freezes) are sent.
    frozen_merchants = [target for kind, target in freezes.by_target if kind == "merchant"]
    frozen_currencies = [
        ccy for ccy, spec in accounts_cfg.items() if ("bank_account", (spec or {}).get("account")) in freezes.by_target
    ]
    asked = merchant_ids.gather(m_payouts["merchant"]).is_in(frozen_merchants) | m_payouts["amount_ccy"].is_in(
        frozen_currencies
    )
    kinds: list[str | None] = [None] * m_payouts.height
    targets: list[str | None] = [None] * m_payouts.height
    rows = m_payouts.with_row_index("row").filter(asked).select("row", "merchant", "amount_ccy", "t")
    for row, merchant, ccy, t in rows.iter_rows():
        at = EPOCH + timedelta(microseconds=t)
        f = freezes.holding_payout(merchant_ids[merchant], (accounts_cfg.get(ccy) or {}).get("account"), at)
        kinds[row] = f["kind"] if f else None
        targets[row] = f["target"] if f else None
    return m_payouts.with_columns(
        frozen_kind=pl.Series(kinds, dtype=pl.String), frozen_target=pl.Series(targets, dtype=pl.String)
    )


def bank_lines(proc_payouts: pl.DataFrame, m_payouts: pl.DataFrame, repayments: pl.DataFrame) -> pl.DataFrame:
    """The platform's bank account lines: payouts in, merchant payouts out, buyers' repayments in."""
    d = lambda t: pl.from_epoch(t // DAY, time_unit="d").dt.add_business_days(0, roll="forward")  # noqa: E731
    cols = ["booking_date", "amount_minor", "currency", "customer_reference", "text", "kind"]
    lines = (
        pl.concat(
            [
                proc_payouts.select(
                    booking_date="arrival_date",
                    amount_minor="amount_minor",
                    currency="currency",
                    customer_reference="payout_id",
                    text=pl.format("{} PAYOUT {}", pl.col("processor").str.to_uppercase(), "payout_id"),
                    kind=pl.lit("processor_payout"),
                ),
                m_payouts.select(
                    booking_date="value_date",
                    amount_minor=-pl.col("amount_minor"),
                    currency="amount_ccy",
                    customer_reference="payout_id",
                    text=pl.lit("MERCHANT PAYOUT"),
                    kind=pl.lit("merchant_payout"),
                ),
                repayments.select(
                    booking_date=d(pl.col("t")),
                    amount_minor="amount_minor",
                    currency="amount_ccy",
                    customer_reference="repayment_id",
                    text=pl.format("ACH CREDIT ORDER {}", "order_id"),
                    kind=pl.lit("buyer_repayment"),
                ),
            ]
        )
        .select(cols)
        .sort("booking_date", "kind", "customer_reference")
    )
    return lines.with_columns(
        line_id=letter_ids("bnk_", 0, lines.height),
        bank_reference=letter_ids("BR", 0, lines.height, 9).str.to_uppercase(),
        value_date="booking_date",
        account_currency="currency",
    )
