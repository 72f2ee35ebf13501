"""What happens to each order, drawn for all orders at once with numpy.

Orders on terms: the platform funds the merchant, takes its fee, and the buyer repays on
the due date, late, partly, or not at all (a write-off). Card and ACH orders: an
authorization, then a full capture, partial captures with the rest voided, or a void;
later partial refunds, chargebacks and their reversals.

Every table returned is one event type: `t` (event time, µs since the epoch, UTC),
`merchant` (row of the merchants table) and the payload's fields, money spelt as
`<field>_minor` + `<field>_ccy`. Times may fall after the world's end; the caller cuts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from clearline.pipelines.world.entities import Entities
from clearline.pipelines.world.ids import letter_ids

SECOND = 1_000_000
HOUR = 3600 * SECOND
DAY = 24 * HOUR
PLATFORM_FEE_BPS = 250
CHARGEBACK_REASONS = np.array(["10.4", "13.1", "13.3", "4837", "4853", "4863"])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _uniform_time(rng: np.random.Generator, lo_us: float, hi_us: float, n: int) -> np.ndarray:
    return rng.uniform(lo_us, hi_us, n).astype(np.int64)


def _day_start(t: np.ndarray) -> np.ndarray:
    return t - t % DAY


def _to_date(t: np.ndarray) -> np.ndarray:
    return (t // DAY).astype("datetime64[D]")


@dataclass
class Lifecycle:
    orders: pl.DataFrame  # one row per order, with its truth (p_default, defaulted)
    tables: dict[str, pl.DataFrame]  # event type -> rows


def simulate_orders(rng: np.random.Generator, cfg: dict, ents: Entities, start_us: int, days: int) -> pl.DataFrame:
    """Orders for every buyer: count, time, merchant, amount, payment method, true risk."""
    buyers, merchants = ents.buyers, ents.merchants
    z = buyers["z"].to_numpy()
    counts = rng.poisson(cfg["orders_per_buyer_per_day"] * days * np.exp(0.35 * z))
    n = int(counts.sum())
    b = np.repeat(np.arange(len(buyers)), counts)
    zb = z[b]
    day = rng.integers(0, days, n)
    hour = np.clip(rng.normal(13.0, 3.0, n), 0.0, 23.99)
    t = start_us + day * DAY + (hour * HOUR).astype(np.int64) + rng.integers(0, 60 * SECOND, n)
    home = buyers["home_merchant"].to_numpy()[b]
    other = rng.integers(0, len(merchants), n)
    ccy = merchants["currency"].to_numpy()
    cross = (rng.random(n) < 0.25) & (ccy[other] == ccy[home])
    merchant = np.where(cross, other, home)
    amount = np.maximum(500, np.round(rng.lognormal(np.log(80_000), 0.9, n) * np.exp(0.15 * zb))).astype(np.int64)
    mix = cfg["payment_mix"]
    method = np.array(list(mix))[rng.choice(len(mix), n, p=np.array(list(mix.values())) / sum(mix.values()))]
    terms = method == "terms"
    terms_days = np.where(terms, np.array(cfg["terms_days"])[rng.integers(0, len(cfg["terms_days"]), n)], 0)
    logit = -3.6 + 1.25 * zb + 0.25 * np.log(amount / 80_000) + 0.3 * (terms_days == 60)
    p_default = np.where(terms, _sigmoid(logit), 0.0)
    order = np.argsort(t, kind="stable")
    cols = {
        "t": t,
        "buyer": b,
        "merchant": merchant,
        "amount": amount,
        "method": method,
        "terms_days": terms_days,
        "p_default": p_default,
        "defaulted": terms & (rng.random(n) < p_default),
        "z": zb,
    }
    df = pl.DataFrame({k: v[order] for k, v in cols.items()})
    return df.with_columns(
        order_id=letter_ids("ord_", 0, n),
        buyer_id=buyers["buyer_id"].gather(df["buyer"]),
        currency=merchants["currency"].gather(df["merchant"]),
    )


def simulate(rng: np.random.Generator, cfg: dict, ents: Entities, start_us: int, days: int) -> Lifecycle:
    orders = simulate_orders(rng, cfg, ents, start_us, days)
    tables: dict[str, pl.DataFrame] = {
        "order.created": orders.select(
            "t",
            "merchant",
            "order_id",
            "buyer_id",
            amount_minor="amount",
            amount_ccy="currency",
            payment_method="method",
            terms_days="terms_days",
            due_date=pl.when(pl.col("terms_days") > 0).then(
                pl.from_epoch(pl.col("t") // DAY + pl.col("terms_days"), time_unit="d")
            ),
        )
    }
    tables.update(_terms(rng, orders.filter(pl.col("method") == "terms")))
    tables.update(_payments(rng, cfg, ents, orders.filter(pl.col("method") != "terms")))
    return Lifecycle(orders, tables)


def _terms(rng: np.random.Generator, o: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Platform fee at order time; repayment on the due date, late, partial, or written off."""
    n = o.height
    t0, z = o["t"].to_numpy(), o["z"].to_numpy()
    amount, defaulted = o["amount"].to_numpy(), o["defaulted"].to_numpy()
    due = _day_start(t0) + o["terms_days"].to_numpy() * DAY
    fee = pl.DataFrame(
        {
            "t": t0 + SECOND,
            "merchant": o["merchant"],
            "fee_id": letter_ids("fee_", 0, n),
            "kind": "platform_fee",
            "amount_minor": amount * PLATFORM_FEE_BPS // 10_000,
            "amount_ccy": o["currency"],
            "reference": o["order_id"],
        }
    )
    late = rng.random(n) < _sigmoid(-1.8 + 1.4 * z)
    days_late = np.where(late, np.minimum(60, 1 + rng.geometric(0.12, n)), 0)
    partial = defaulted & (rng.random(n) < 0.3)
    paid = np.where(defaulted, np.where(partial, (amount * rng.uniform(0.2, 0.6, n)).astype(np.int64), 0), amount)
    pay_days = np.where(defaulted, rng.integers(0, 20, n), days_late)
    pay_t = due + pay_days * DAY + _uniform_time(rng, 9 * HOUR, 17 * HOUR, n)
    repay = pl.DataFrame(
        {
            "t": pay_t,
            "merchant": o["merchant"],
            "order_id": o["order_id"],
            "buyer_id": o["buyer_id"],
            "repayment_id": letter_ids("rpy_", 0, n),
            "amount_minor": paid,
            "amount_ccy": o["currency"],
            "due_date": _to_date(due),
            "days_late": np.where(defaulted, pay_days, days_late),
        }
    ).filter(pl.col("amount_minor") > 0)
    write_off = (
        pl.DataFrame(
            {
                "t": due + 60 * DAY + 2 * HOUR,
                "merchant": o["merchant"],
                "order_id": o["order_id"],
                "buyer_id": o["buyer_id"],
                "amount_minor": amount - paid,
                "amount_ccy": o["currency"],
                "days_past_due": np.full(n, 60),
                "defaulted": defaulted,
            }
        )
        .filter("defaulted")
        .drop("defaulted")
    )
    return {"fee.charged": fee, "buyer.repayment": repay, "buyer.default": write_off}


def _payments(rng: np.random.Generator, cfg: dict, ents: Entities, o: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Authorization, captures, voids, refunds, chargebacks and reversals per payment."""
    n = o.height
    m = ents.merchants
    method = o["method"].to_numpy()
    merchant = o["merchant"].to_numpy()
    processor = np.where(
        method == "card", m["card_processor"].to_numpy()[merchant], m["ach_processor"].to_numpy()[merchant]
    )
    ccy = o["currency"].to_numpy()
    # A share of card payments is presented in another currency than the merchant settles in.
    others = np.array(list(cfg["currencies"]))
    fx = (method == "card") & (rng.random(n) < cfg["fx_share"])
    present = np.where(fx, others[rng.integers(0, len(others), n)], ccy)
    fx &= present != ccy
    amount = o["amount"].to_numpy()
    pay_ids = letter_ids("pay_", 0, n)
    t0 = o["t"].to_numpy()
    z = o["z"].to_numpy()
    base = {"merchant": merchant, "payment_id": pay_ids, "processor": processor, "amount_ccy": present}
    auth = pl.DataFrame(
        {
            "t": t0 + 2 * SECOND,
            **base,
            "order_id": o["order_id"],
            "buyer_id": o["buyer_id"],
            "method": method,
            "amount_minor": amount,
            "instrument_token": letter_ids("tok_", 0, n, 8),
        }
    )
    # Outcome: full capture, partial capture(s) with the rest voided, or a void.
    u = rng.random(n)
    card = method == "card"
    void_all = card & (u < 0.04)
    partial = card & (u >= 0.04) & (u < 0.14)
    cap1_t = t0 + _uniform_time(rng, HOUR, 48 * HOUR, n)
    cap1 = np.where(partial, (amount * rng.uniform(0.3, 0.7, n)).astype(np.int64), amount)
    two = partial & (rng.random(n) < 0.5)
    # Every capture is at least 100 minor units so no processor fee exceeds it.
    cap2 = np.where(two, np.maximum(100, ((amount - cap1) * rng.uniform(0.3, 1.0, n)).astype(np.int64)), 0)
    cap2_t = cap1_t + _uniform_time(rng, HOUR, 24 * HOUR, n)
    captured = np.where(void_all, 0, cap1 + cap2)
    rest = amount - captured
    last_t = np.where(two, cap2_t, cap1_t)
    idx = np.arange(n)
    c1 = ~void_all
    caps = pl.concat(
        [
            pl.DataFrame({"t": cap1_t[c1], "row": idx[c1], "amount_minor": cap1[c1], "final": (cap1 == amount)[c1]}),
            pl.DataFrame(
                {"t": cap2_t[two], "row": idx[two], "amount_minor": cap2[two], "final": (cap1 + cap2 == amount)[two]}
            ),
        ]
    ).filter(pl.col("amount_minor") > 0)
    caps = caps.with_columns(capture_id=letter_ids("cap_", 0, caps.height))
    voided = rest > 0
    void = pl.DataFrame(
        {
            "t": np.where(void_all, t0 + _uniform_time(rng, HOUR, 24 * HOUR, n), last_t + HOUR)[voided],
            "row": idx[voided],
            "amount_minor": rest[voided],
        }
    )
    # Refunds (one, sometimes two) and chargebacks draw on what was captured.
    refund_p = np.minimum(0.5, 0.05 * np.exp(0.4 * z))
    r1 = (captured > 0) & (rng.random(n) < refund_p)
    r1_amt = np.where(rng.random(n) < 0.3, captured, (captured * rng.uniform(0.1, 0.9, n)).astype(np.int64))
    r1_t = last_t + _uniform_time(rng, DAY, 20 * DAY, n)
    r2 = r1 & (r1_amt < captured) & (rng.random(n) < 0.3)
    r2_amt = ((captured - r1_amt) * rng.uniform(0.2, 1.0, n)).astype(np.int64)
    r2_t = r1_t + _uniform_time(rng, DAY, 10 * DAY, n)
    refunded = np.where(r1, r1_amt, 0) + np.where(r2, r2_amt, 0)
    refunds = pl.concat(
        [
            pl.DataFrame({"t": r1_t[r1], "row": idx[r1], "amount_minor": r1_amt[r1]}),
            pl.DataFrame({"t": r2_t[r2], "row": idx[r2], "amount_minor": r2_amt[r2]}),
        ]
    ).filter(pl.col("amount_minor") > 0)
    refunds = refunds.with_columns(refund_id=letter_ids("rfd_", 0, refunds.height))
    disputable = captured - refunded
    cb = card & (disputable > 0) & (rng.random(n) < np.minimum(0.3, 0.006 * np.exp(0.9 * z)))
    cb_t = last_t + _uniform_time(rng, 10 * DAY, 45 * DAY, n)
    cb_ids = letter_ids("cbk_", 0, n)
    cbs = pl.DataFrame(
        {
            "t": cb_t[cb],
            "row": idx[cb],
            "amount_minor": disputable[cb],
            "chargeback_id": cb_ids.filter(cb),
            "reason_code": CHARGEBACK_REASONS[rng.integers(0, len(CHARGEBACK_REASONS), n)][cb],
        }
    )
    rev = cb & (rng.random(n) < 0.35)
    revs = pl.DataFrame(
        {
            "t": (cb_t + _uniform_time(rng, 10 * DAY, 30 * DAY, n))[rev],
            "row": idx[rev],
            "amount_minor": disputable[rev],
            "chargeback_id": cb_ids.filter(rev),
        }
    )
    per_payment = pl.DataFrame({**base, "fx": fx, "method": method}).with_row_index("row")

    def attach(df: pl.DataFrame) -> pl.DataFrame:
        return df.join(per_payment, on="row", how="left").drop("row")

    return {
        "payment.authorized": auth,
        "payment.captured": attach(caps),
        "payment.voided": attach(void),
        "payment.refunded": attach(refunds),
        "chargeback.opened": attach(cbs),
        "chargeback.reversed": attach(revs),
    }
