"""The batch runtime: the features of `clearline.features.definitions`, vectorised with Polars over
a whole world or event archive, for training, backtests and the Feast offline store.

Every "as of" value is an as-of join: each kind of event becomes a per-entity cumulative
series (summed per timestamp first, so simultaneous events land together), and a row
looks up the series strictly before its time (`allow_exact_matches=False`). A window
`[at - w, at)` is the difference of two such lookups. That is how a per-event fold in the
streaming runtime and this frame can agree exactly, and why it runs in seconds over
millions of events: no Python per row.

    read_events(path)      a world folder or an archive folder -> one frame of facts
    order_features(frame)  one row per terms order, with MODEL_FEATURES and the merchant's
                           ticket aggregates (`TICKET_COLUMNS`, not model inputs)
    feature_history(rows, "buyer" | "merchant")   rows for the Feast offline store
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl

from clearline.features.definitions import (
    DEFAULT_SPEC,
    FEATURE_EVENTS,
    NEEDS_ATTRIBUTION,
    ORDER_COLUMNS,
    Spec,
    buyer_feature_names,
    float_features,
    merchant_feature_names,
    merchant_row_names,
    merchant_ticket_names,
    wide_integers,
)

MODEL_FEATURES: tuple[str, ...] = (*buyer_feature_names(DEFAULT_SPEC), *merchant_feature_names(DEFAULT_SPEC))
TICKET_COLUMNS: tuple[str, ...] = merchant_ticket_names(DEFAULT_SPEC)

FACTS_SCHEMA = {
    "event_id": pl.String,
    "event_type": pl.String,
    "occurred_at": pl.Datetime("us", "UTC"),
    "merchant_id": pl.String,
    "buyer_id": pl.String,
    "order_id": pl.String,
    "payment_id": pl.String,
    "amount_minor": pl.Int64,
    "currency": pl.String,
    "payment_method": pl.String,
    "terms_days": pl.Int64,
    "due_date": pl.Date,
    "days_late": pl.Int64,
}
_PAYLOAD = pl.Struct(
    {
        "order_id": pl.String,
        "buyer_id": pl.String,
        "payment_id": pl.String,
        "amount": pl.Struct({"minor": pl.Int64, "currency": pl.String}),
        "payment_method": pl.String,
        "terms_days": pl.Int64,
        "due_date": pl.String,
        "days_late": pl.Int64,
    }
)
# the fields each event type must carry for the features to be computed from it
_REQUIRED = {
    "order.created": ("order_id", "buyer_id", "amount_minor", "currency", "payment_method"),
    "payment.authorized": ("payment_id", "buyer_id"),
    "payment.refunded": ("payment_id",),
    "chargeback.opened": ("payment_id",),
    "buyer.repayment": ("order_id", "buyer_id", "amount_minor", "currency", "days_late"),
    "buyer.default": ("order_id", "buyer_id"),
}


class EventsReadError(ValueError):
    """Events could not be read as contract events; the message names the file or event."""


# --------------------------------------------------------------------------- reading


def read_events(path: Path | str) -> pl.DataFrame:
    """Facts from a generated world (`<world>/events/events.parquet`, payload as JSON text)
    or from the ledger's event archive (`<root>/event_date=*/…parquet`, `body` bytes)."""
    root = Path(path)
    world = root / "events" / "events.parquet"
    if world.is_file():
        files = [world]
    elif root.is_file() and root.suffix == ".parquet":
        files = [root]
    else:
        files = sorted(root.glob("event_date=*/*.parquet"))
    if not files:
        raise EventsReadError(
            f"{root}: neither a world folder (events/events.parquet) nor an event archive (event_date=*/*.parquet)"
        )
    try:
        frame = pl.read_parquet(files)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise EventsReadError(f"{root}: cannot read the Parquet files: {exc}") from None
    return normalise(frame, where=str(root))


def normalise(frame: pl.DataFrame, where: str = "events") -> pl.DataFrame:
    """One frame of facts (FACTS_SCHEMA) from either stored form, checked for what the
    features need, sorted by event time then event id. Only the event types some feature
    reads are decoded and kept (settlements, payouts, captures and fees are not)."""
    if set(FACTS_SCHEMA) <= set(frame.columns):
        facts = frame.select(list(FACTS_SCHEMA))
    elif "payload" in frame.columns or "body" in frame.columns:
        facts = _decode(frame, where)
    else:
        raise EventsReadError(f"{where}: expected a `payload` (world) or `body` (archive) column, got {frame.columns}")
    _check(facts, where)
    return facts.sort("occurred_at", "event_id")


def _decode(frame: pl.DataFrame, where: str) -> pl.DataFrame:
    if "body" in frame.columns:
        text = pl.col("body").cast(pl.String).str.json_decode(pl.Struct({"payload": _PAYLOAD})).struct.field("payload")
    else:
        text = pl.col("payload").str.json_decode(_PAYLOAD)
    frame = frame.filter(pl.col("event_type").is_in(sorted(FEATURE_EVENTS)))
    try:
        p = frame.select(
            "event_id",
            "event_type",
            pl.col("occurred_at").cast(pl.Datetime("us", "UTC")),
            "merchant_id",
            text.alias("p"),
        )
    except pl.exceptions.PolarsError as exc:
        raise EventsReadError(f"{where}: {_unparsable(frame)}: {str(exc).splitlines()[0]}") from None
    q = pl.col("p")
    return p.select(
        "event_id",
        "event_type",
        "occurred_at",
        "merchant_id",
        q.struct.field("buyer_id"),
        q.struct.field("order_id"),
        q.struct.field("payment_id"),
        q.struct.field("amount").struct.field("minor").alias("amount_minor"),
        q.struct.field("amount").struct.field("currency").alias("currency"),
        q.struct.field("payment_method"),
        q.struct.field("terms_days"),
        q.struct.field("due_date").str.to_date(strict=False),
        q.struct.field("days_late"),
    )


def _unparsable(frame: pl.DataFrame) -> str:
    """Name the first event whose JSON does not parse (only looked for after a failure)."""
    column = "body" if "body" in frame.columns else "payload"
    for event_id, text in frame.select("event_id", column).iter_rows():
        try:
            json.loads(text)
        except (ValueError, TypeError):
            return f"event {event_id}: its {column} is not JSON"
    return "an event's JSON could not be read"


def _check(facts: pl.DataFrame, where: str) -> None:
    bad = facts.filter(pl.col("occurred_at").is_null() | pl.col("event_id").is_null())
    for event_type, fields in _REQUIRED.items():
        missing = pl.any_horizontal(pl.col(f).is_null() for f in fields)
        bad = pl.concat([bad, facts.filter((pl.col("event_type") == event_type) & missing)])
    if bad.height:
        first = bad.row(0, named=True)
        needed = ("event_id", "occurred_at", *_REQUIRED.get(first["event_type"], ()))
        raise EventsReadError(
            f"{where}: {bad.height} event(s) lack fields the features need, first "
            f"{first['event_id']} ({first['event_type']}): " + ", ".join(k for k in needed if first[k] is None)
        )
    repeated = facts.filter(pl.col("event_id").is_duplicated())
    if repeated.height:  # an archive holds each event once; counting one twice would be wrong
        raise EventsReadError(
            f"{where}: {repeated['event_id'].n_unique()} event id(s) appear more than once, "
            f"first {repeated['event_id'][0]}: read events that were deduplicated (the archive)"
        )


# --------------------------------------------------------------------------- as-of machinery


def _cumulative(rows: pl.DataFrame, by: list[str], values: dict[str, pl.Expr]) -> pl.DataFrame:
    """Per entity, the running totals after each timestamp: `rows` must be in time order
    (facts are); of the events at one instant only the last row, holding them all, is kept.
    Rows that change no total are left out first (most events matter to few totals)."""
    keyed = rows.select(*by, "occurred_at", **values).filter(pl.any_horizontal(pl.col(k) != 0 for k in values))
    run = keyed.with_columns(pl.col(k).cum_sum().over(by) for k in values)
    following = pl.col("occurred_at").shift(-1).over(by)
    return run.filter(following.is_null() | (following != pl.col("occurred_at"))).rename({"occurred_at": "_t"})


def _before(left: pl.DataFrame, series: pl.DataFrame, by: list[str], at: pl.Expr, prefix: str) -> pl.DataFrame:
    """`left` with each running total of `series` as it stood strictly before `at`
    (0 when the entity had none), as columns named `prefix + total`."""
    values = [c for c in series.columns if c not in (*by, "_t")]
    joined = (
        left.with_columns(at.alias("_at"))
        .sort("_at")
        .join_asof(
            series,
            left_on="_at",
            right_on="_t",
            by=by,
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
    )
    return joined.select(*left.columns, *(pl.col(v).fill_null(0).alias(prefix + v) for v in values))


def _rate(num: str, den: str) -> pl.Expr:
    return pl.when(pl.col(den) > 0).then(pl.col(num).cast(pl.Float64) / pl.col(den).cast(pl.Float64))


def _is(event_type: str) -> pl.Expr:
    return (pl.col("event_type") == event_type).cast(pl.Int64)


def _amount_if(event_type: str, extra: pl.Expr = pl.lit(True)) -> pl.Expr:
    return pl.when((pl.col("event_type") == event_type) & extra).then(pl.col("amount_minor")).otherwise(0)


# --------------------------------------------------------------------------- features


def attribute(facts: pl.DataFrame) -> pl.DataFrame:
    """Refunds and chargebacks get the buyer named by their payment's authorization (the
    first, facts being in time order); without one they stay unattributed."""
    auth = (
        facts.filter(pl.col("event_type") == "payment.authorized")
        .group_by("payment_id")
        .agg(pl.col("buyer_id").first())
    )
    by_payment = pl.col("payment_id").replace_strict(auth["payment_id"], auth["buyer_id"], default=None)
    return facts.with_columns(
        pl.when(pl.col("event_type").is_in(NEEDS_ATTRIBUTION))
        .then(by_payment)
        .otherwise(pl.col("buyer_id"))
        .alias("buyer_id")
    )


def underwriting_requests(facts: pl.DataFrame) -> pl.DataFrame:
    return facts.filter((pl.col("event_type") == "order.created") & (pl.col("payment_method") == "terms")).select(
        "order_id",
        "buyer_id",
        "merchant_id",
        "event_id",
        pl.col("occurred_at").alias("decision_time"),
        "amount_minor",
        "currency",
        "terms_days",
    )


def order_features(events: pl.DataFrame, spec: Spec = DEFAULT_SPEC) -> pl.DataFrame:
    """One row per `order.created` on terms, with its features as of its own time, then
    the merchant's ticket aggregates (the sum of squares as Int128: it can pass 64 bits).

    `events` is what `read_events` returns, or a world's / archive's raw frame."""
    facts = attribute(normalise(events))
    rows = underwriting_requests(facts)
    rows = _buyer_features(rows, facts, spec)
    rows = _merchant_features(rows, facts, spec)
    names = (*buyer_feature_names(spec), *merchant_row_names(spec))
    floats, wide = float_features(spec), wide_integers(spec)
    return rows.select(
        *ORDER_COLUMNS,
        *(pl.col(n).cast(pl.Float64 if n in floats else pl.Int128 if n in wide else pl.Int64) for n in names),
    ).sort("decision_time", "event_id")


def _buyer_features(rows: pl.DataFrame, facts: pl.DataFrame, spec: Spec) -> pl.DataFrame:
    mine = facts.filter(pl.col("buyer_id").is_not_null())
    firsts = (
        mine.filter(pl.col("event_type") == "order.created")  # facts are in time order
        .unique(["buyer_id", "merchant_id"], keep="first", maintain_order=True)
        .select("event_id", pl.lit(1, pl.Int64).alias("_new_merchant"))
    )
    mine = mine.join(firsts, on="event_id", how="left")
    counts = _cumulative(
        mine,
        ["buyer_id"],
        {
            "orders": _is("order.created"),
            "repayments": _is("buyer.repayment"),
            "late": ((pl.col("event_type") == "buyer.repayment") & (pl.col("days_late") > 0)).cast(pl.Int64),
            "payments": _is("payment.authorized"),
            "refunds": _is("payment.refunded"),
            "chargebacks": _is("chargeback.opened"),
            "defaults": _is("buyer.default"),
            "merchants": pl.col("_new_merchant").fill_null(0),
        },
    )
    money = _cumulative(
        mine.filter(pl.col("currency").is_not_null()),
        ["buyer_id", "currency"],
        {
            "amount": _amount_if("order.created"),
            "financed": _amount_if("order.created", pl.col("payment_method") == "terms"),
            "repaid": _amount_if("buyer.repayment"),
        },
    )
    at = pl.col("decision_time")
    rows = _before(rows, counts, ["buyer_id"], at, "b_")
    rows = _before(rows, money, ["buyer_id", "currency"], at, "b_")
    for label, secs in spec.windows:
        since = at - timedelta(seconds=secs)
        rows = _before(rows, counts.select("buyer_id", "_t", "orders"), ["buyer_id"], since, f"w{label}_")
        rows = _before(
            rows, money.select("buyer_id", "currency", "_t", "amount"), ["buyer_id", "currency"], since, f"w{label}_"
        )
    rows = rows.with_columns(
        *((pl.col("b_orders") - pl.col(f"w{w}_orders")).alias(f"buyer_orders_{w}") for w, _ in spec.windows),
        *((pl.col("b_amount") - pl.col(f"w{w}_amount")).alias(f"buyer_amount_{w}") for w, _ in spec.windows),
        (pl.col("b_financed") - pl.col("b_repaid")).alias("buyer_exposure_minor"),
        _rate("b_late", "b_repayments").alias("buyer_late_repayment_rate"),
        _rate("b_refunds", "b_payments").alias("buyer_refund_rate"),
        _rate("b_chargebacks", "b_payments").alias("buyer_chargeback_rate"),
        pl.col("b_merchants").alias("buyer_distinct_merchants"),
        pl.col("b_defaults").alias("buyer_defaults"),
    )
    return rows.join(_days_past_due(rows, facts), on="event_id", how="left").with_columns(
        pl.col("buyer_days_past_due").fill_null(0)
    )


def _days_past_due(rows: pl.DataFrame, facts: pl.DataFrame) -> pl.DataFrame:
    """Per request: the most days any of the buyer's open terms orders is past due. An
    order is open from its creation until a repayment brings what was repaid on it to its
    amount, or until it is written off; at that very instant it still counts as open."""
    terms = facts.filter((pl.col("event_type") == "order.created") & (pl.col("payment_method") == "terms")).select(
        "order_id",
        "buyer_id",
        pl.col("occurred_at").alias("created_at"),
        "amount_minor",
        pl.coalesce("due_date", (pl.col("occurred_at") + pl.duration(days=pl.col("terms_days"))).dt.date()).alias(
            "due"
        ),
    )
    repaid = (
        facts.filter(pl.col("event_type") == "buyer.repayment")
        .sort("occurred_at", "event_id")
        .select("order_id", "occurred_at", pl.col("amount_minor").cum_sum().over("order_id").alias("repaid"))
        .join(terms.select("order_id", "amount_minor"), on="order_id")
        .filter(pl.col("repaid") >= pl.col("amount_minor"))
        .group_by("order_id")
        .agg(pl.col("occurred_at").min().alias("paid_at"))
    )
    written_off = (
        facts.filter(pl.col("event_type") == "buyer.default")
        .group_by("order_id")
        .agg(pl.col("occurred_at").min().alias("off_at"))
    )
    terms = (
        terms.join(repaid, on="order_id", how="left")
        .join(written_off, on="order_id", how="left")
        .select("buyer_id", "created_at", "due", pl.min_horizontal("paid_at", "off_at").alias("closed_at"))
        # only an order still open after its due date can ever be past due: most are not
        .filter(pl.col("closed_at").is_null() | (pl.col("closed_at").dt.date() > pl.col("due")))
    )
    at = pl.col("decision_time")
    return (
        rows.select("event_id", "buyer_id", "decision_time")
        .join(terms, on="buyer_id")
        .filter((pl.col("created_at") < at) & (pl.col("closed_at").is_null() | (pl.col("closed_at") >= at)))
        .group_by("event_id")
        .agg((at.dt.date() - pl.col("due")).dt.total_days().max().clip(lower_bound=0).alias("buyer_days_past_due"))
    )


def _merchant_features(rows: pl.DataFrame, facts: pl.DataFrame, spec: Spec) -> pl.DataFrame:
    counts = _cumulative(
        facts,
        ["merchant_id"],
        {
            "orders": _is("order.created"),
            "payments": _is("payment.authorized"),
            "voids": _is("payment.voided"),
            "refunds": _is("payment.refunded"),
            "chargebacks": _is("chargeback.opened"),
        },
    )
    orders = facts.filter(pl.col("event_type") == "order.created")
    big = pl.col("amount_minor").cast(pl.Int128)
    tickets = _cumulative(orders, ["merchant_id", "currency"], {"n": _is("order.created"), "s": big, "q": big * big})
    label, secs = spec.merchant_window
    at = pl.col("decision_time")
    since = at - timedelta(seconds=secs)
    rows = _before(rows, counts, ["merchant_id"], at, "m_")
    rows = _before(rows, counts.select("merchant_id", "_t", "orders"), ["merchant_id"], since, "mw_")
    rows = _before(rows, tickets, ["merchant_id", "currency"], at, "m_")
    rows = _before(rows, tickets, ["merchant_id", "currency"], since, "mw_")
    n, s, q = (pl.col(f"m_{k}") - pl.col(f"mw_{k}") for k in "nsq")
    x = pl.col("amount_minor").cast(pl.Int128)
    rows = rows.with_columns(n.alias("_n"), s.alias("_s"), q.alias("_q"), (n * q - s * s).alias("_spread"))
    n, s, spread = pl.col("_n"), pl.col("_s"), pl.col("_spread")
    tickets, sumsq = merchant_ticket_names(spec)
    return rows.with_columns(
        (pl.col("m_orders") - pl.col("mw_orders")).alias(f"merchant_orders_{label}"),
        s.cast(pl.Int64).alias(f"merchant_volume_{label}"),
        pl.when(n > 0).then(s // n).cast(pl.Int64).alias(f"merchant_avg_ticket_{label}"),
        pl.when((n >= 2) & (spread > 0))
        .then((n * x - s).cast(pl.Float64) / ((n * spread).cast(pl.Float64) / (n - 1).cast(pl.Float64)).sqrt())
        .alias("merchant_ticket_zscore"),
        _rate("m_voids", "m_payments").alias("merchant_decline_rate"),
        _rate("m_refunds", "m_payments").alias("merchant_refund_rate"),
        _rate("m_chargebacks", "m_payments").alias("merchant_chargeback_rate"),
        n.cast(pl.Int64).alias(tickets),
        pl.col("_q").alias(sumsq),
    )


# --------------------------------------------------------------------------- Feast history


def feature_history(rows: pl.DataFrame, entity: str, spec: Spec = DEFAULT_SPEC) -> pl.DataFrame:
    """Point-in-time rows for the Feast offline store: per request, the entity's features
    as the model saw them (`event_timestamp` = the decision time; `created` = the same
    instant, when the value became knowable). `currency` names the amounts' currency. The
    merchant's rows carry its ticket aggregates too, the wide integers as decimal text:
    Feast has no integer type wider than 64 bits (`clearline.features.store.history_schema`)."""
    names = {"buyer": buyer_feature_names, "merchant": merchant_row_names}
    if entity not in names:
        raise ValueError(f"entity must be buyer or merchant, got {entity!r}")
    wide = wide_integers(spec)
    return rows.select(
        f"{entity}_id",
        pl.col("decision_time").alias("event_timestamp"),
        pl.col("decision_time").alias("created"),
        "currency",
        *(pl.col(n).cast(pl.String) if n in wide else pl.col(n) for n in names[entity](spec)),
    )
