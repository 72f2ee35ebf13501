"""The numbers that tie the work to the business: the workbench's KPI page, per tenant and
for the platform, from the published snapshots only.

    underwriting   approval rate and bad rate by cohort (month of the decision)
    chargebacks    chargebacks opened / payments captured, count and amount, per currency
    variances      open variances and their amount by age bucket, per currency
    lead time      capture to the bank credit of its payout, per processor, p50 and p95
    resolve time   first seen to resolved, per variance category, p50 and p95

Each KPI is a pure function of frames (the functional core, tested against SQL); `read`
is the one place that touches files and `compute` the one call the page makes. Reuse
keeps the figures the same as elsewhere: a bad is `clearline.models.labels`'s (a write-off
inside the outcome window, counted once the window closed: the backtests' definition), and
the variance figures come from the variance report's own `classify` and `totals` with
configs/reports.yaml's buckets, so the page and `clearline report variances` agree.

A tenant (reseller) sees only its merchants: a merchant belongs to the reseller its
events name (the archive's `reseller_id`, as the workbench's queue takes it). Variances
of no one merchant (a payout batch, a bank line nobody explains) are the platform's only.
Money is integer minor units and an ISO 4217 code per row, never summed across
currencies; every `<name>_minor` column has a `<name>_text` beside it for display.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

TITLES = {
    "underwriting": "Underwriting by cohort: approval rate, and bad rate of approved orders whose outcome is known",
    "chargebacks": "Chargeback rate per currency: chargebacks opened / payments captured",
    "variances": "Open reconciliation variances by age (as the variance report counts them)",
    "lead_time": "Settlement lead time per processor: payment captured to its payout's bank credit",
    "resolve_time": "Time to resolve a variance, per category: first seen to resolved",
}
QUANTILES = (("p50", 0.5), ("p95", 0.95))
_TS = pl.Datetime("us", "UTC")
_MONEY = pl.Struct({"minor": pl.Int64, "currency": pl.String})
_PAYLOAD = pl.Struct(
    {"payment_id": pl.String, "processor": pl.String, "amount": _MONEY, "batch_id": pl.String, "record_type": pl.String}
)
EVENT_SCHEMA = {
    "event_id": pl.String,
    "event_type": pl.String,
    "occurred_at": _TS,
    "merchant_id": pl.String,
    "payload": pl.String,
}
# the decision log's columns the page reads (pipelines/connectors/decision_sink.DECISION_LOG)
DECISION_SCHEMA = {"order_id": pl.String, "merchant_id": pl.String, "decision_time": _TS, "decision": pl.String}
OUTCOME_SCHEMA = {"order_id": pl.String, "matures_at": _TS, "defaulted": pl.Boolean}
HISTORY_SCHEMA = {"variance_id": pl.String, "changed_at": _TS, "status": pl.String}
_KPI_EVENTS = ("payment.captured", "chargeback.opened", "processor.settlement")
_RESOLVING = ("resolved", "withdrawn")  # history statuses that close a variance


# ---------------------------------------------------------------- the functional core


def owners(merchants: pl.DataFrame) -> pl.DataFrame:
    """merchant_id -> reseller_id, from (merchant_id, reseller_id) rows of the events."""
    return (
        merchants.filter(pl.col("merchant_id").is_not_null())
        .group_by("merchant_id")
        .agg(pl.col("reseller_id").min())
        .sort("merchant_id")
    )


def of_tenant(frame: pl.DataFrame, owner: pl.DataFrame, tenant: str | None) -> pl.DataFrame:
    """The rows a tenant sees: all for the platform (None), else its merchants' rows."""
    if tenant is None:
        return frame
    mine = owner.filter(pl.col("reseller_id") == tenant).select("merchant_id")
    return frame.join(mine, on="merchant_id", how="semi")


def _rate(part: str, whole: str) -> pl.Expr:
    return pl.when(pl.col(whole) > 0).then(pl.col(part) / pl.col(whole)).otherwise(None)


def underwriting(decisions: pl.DataFrame, outcomes: pl.DataFrame, data_end: datetime | None) -> pl.DataFrame:
    """Per cohort (YYYY-MM of the decision): decisions, approved, reviewed, declined, the
    approval rate; of the approved orders those whose outcome window closed by `data_end`
    (the time the events end; `matured`, as `labels.matured` counts them), how many
    defaulted (`bad`) and the bad rate (null while none has matured). `outcomes` is
    `labels.outcomes`."""
    rows = decisions.unique("order_id", keep="first").join(
        outcomes.select("order_id", "matures_at", "defaulted"), on="order_id", how="left"
    )
    end = pl.lit(data_end, _TS) if data_end is not None else pl.lit(None, _TS)
    approved = pl.col("decision") == "approve"
    matured = approved & (pl.col("matures_at") <= end).fill_null(False)
    return (
        rows.group_by(cohort=pl.col("decision_time").dt.strftime("%Y-%m"))
        .agg(
            decisions=pl.len().cast(pl.Int64),
            approved=approved.sum().cast(pl.Int64),
            reviewed=(pl.col("decision") == "review").sum().cast(pl.Int64),
            declined=(pl.col("decision") == "decline").sum().cast(pl.Int64),
            matured=matured.sum().cast(pl.Int64),
            bad=(matured & pl.col("defaulted").fill_null(False)).sum().cast(pl.Int64),
        )
        .with_columns(approval_rate=_rate("approved", "decisions"), bad_rate=_rate("bad", "matured"))
        .select(
            "cohort", "decisions", "approved", "reviewed", "declined", "approval_rate", "matured", "bad", "bad_rate"
        )
        .sort("cohort")
    )


def decode(events: pl.DataFrame) -> pl.DataFrame:
    """The KPI events (captures, chargebacks opened, processor settlements) with the payload
    fields the KPIs read as columns."""
    p = pl.col("p")
    return (
        events.filter(pl.col("event_type").is_in(_KPI_EVENTS))
        .unique("event_id", keep="first")
        .with_columns(p=pl.col("payload").str.json_decode(_PAYLOAD))
        .select(
            "event_id",
            "event_type",
            "occurred_at",
            "merchant_id",
            p.struct.field("payment_id"),
            p.struct.field("processor"),
            p.struct.field("batch_id"),
            p.struct.field("record_type"),
            amount_minor=p.struct.field("amount").struct.field("minor"),
            currency=p.struct.field("amount").struct.field("currency"),
        )
    )


def chargebacks(kpi_events: pl.DataFrame) -> pl.DataFrame:
    """Per currency (the payment's): captures and their amount, chargebacks opened and
    their amount, and the rate by count and by amount. A partial capture is a capture."""
    kinds = {"payment.captured": "captures", "chargeback.opened": "chargebacks"}
    per = (
        kpi_events.filter(pl.col("event_type").is_in(list(kinds)))
        .group_by("currency")
        .agg(
            captures=(pl.col("event_type") == "payment.captured").sum().cast(pl.Int64),
            captured_minor=pl.col("amount_minor").filter(pl.col("event_type") == "payment.captured").sum(),
            chargebacks=(pl.col("event_type") == "chargeback.opened").sum().cast(pl.Int64),
            chargeback_minor=pl.col("amount_minor").filter(pl.col("event_type") == "chargeback.opened").sum(),
        )
    )
    return per.with_columns(
        rate_by_count=_rate("chargebacks", "captures"), rate_by_amount=_rate("chargeback_minor", "captured_minor")
    ).sort("currency")


def open_variances(variances: pl.DataFrame, rules) -> pl.DataFrame:
    """Open variances (not resolved, as the report counts `open`) and their amount at stake
    per ageing bucket and currency, through the report's own `classify` and `totals`;
    buckets in configs/reports.yaml's order. `rules` is a `ReportRules`."""
    from clearline.recon import classify_variances, variance_totals

    frame = classify_variances(variances.filter(pl.col("status") != "resolved"), rules)
    order = {label: i for i, (label, _) in enumerate(rules.ageing)}
    return (
        variance_totals(frame, "ageing_bucket")
        .select("ageing_bucket", "currency", open=pl.col("open").cast(pl.Int64), amount_minor="amount_minor")
        .sort(pl.col("ageing_bucket").replace_strict(order, return_dtype=pl.Int64), "currency")
    )


def _spread(duration: pl.Expr) -> list[pl.Expr]:
    """count, p50 and p95 (linear interpolation) of a duration in hours, and in days."""
    hours = duration.dt.total_microseconds() / 3_600_000_000
    out = [pl.len().cast(pl.Int64).alias("count")]
    for name, q in QUANTILES:
        out += [
            hours.quantile(q, "linear").alias(f"{name}_hours"),
            (hours.quantile(q, "linear") / 24).alias(f"{name}_days"),
        ]
    return out


def lead_times(kpi_events: pl.DataFrame, bank_lines: pl.DataFrame) -> pl.DataFrame:
    """Per processor: captures whose payout the bank credited, and the time from the capture
    to that credit, p50 and p95. A payment's k-th capture settles as its k-th charge line
    (`processor.settlement`, record type charge), which names its payout batch; the bank
    line carrying the payout's id (the first, when the reference repeats) credits it. A bank
    line has a booking day, not a time: the credit counts from the start of that day (UTC)."""
    ranked = lambda kind: (  # noqa: E731
        kind.sort("occurred_at", "event_id").with_columns(k=pl.int_range(pl.len()).over("payment_id"))
    )
    captures = ranked(kpi_events.filter(pl.col("event_type") == "payment.captured")).select(
        "payment_id", "k", "processor", captured_at="occurred_at"
    )
    charges = ranked(
        kpi_events.filter((pl.col("event_type") == "processor.settlement") & (pl.col("record_type") == "charge"))
    ).select("payment_id", "k", "batch_id")
    credits = (
        bank_lines.filter(pl.col("reference").is_not_null())
        .group_by("reference")
        .agg(credited_on=pl.col("booking_date").min())
    )
    paid = captures.join(charges, on=["payment_id", "k"]).join(credits, left_on="batch_id", right_on="reference")
    lead = pl.col("credited_on").cast(pl.Datetime("us")).dt.replace_time_zone("UTC") - pl.col("captured_at")
    return paid.group_by("processor").agg(_spread(lead)).sort("processor")


def resolve_times(variances: pl.DataFrame, history: pl.DataFrame) -> pl.DataFrame:
    """Per category: resolved variances and the time from first seen to the resolution that
    closed them (the last `resolved` or `withdrawn` history row), p50 and p95."""
    closed = (
        history.filter(pl.col("status").is_in(_RESOLVING))
        .group_by("variance_id")
        .agg(resolved_at=pl.col("changed_at").max())
    )
    resolved = variances.filter(pl.col("status") == "resolved").join(closed, on="variance_id")
    return resolved.group_by("category").agg(_spread(pl.col("resolved_at") - pl.col("first_seen"))).sort("category")


def with_money_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Each `<name>_minor` column with `<name>_text` beside it ('2.90 EUR'), when the frame
    has the rows' `currency`."""
    from clearline.recon import money_text

    if "currency" not in frame.columns:
        return frame
    minor = [c for c in frame.columns if c.endswith("_minor")]
    return frame.with_columns(
        money_text(pl.col(c), pl.col("currency")).alias(c.removesuffix("_minor") + "_text") for c in minor
    )


@dataclass(frozen=True)
class Snapshots:
    """What the KPIs read, as frames: the merchant owners, the events (EVENT_SCHEMA), the
    decision log (DECISION_SCHEMA), the orders' outcomes (`labels.outcomes`) with the time
    the events end, the variance store's rows with their history, and intake's bank lines."""

    owners: pl.DataFrame
    events: pl.DataFrame
    decisions: pl.DataFrame
    outcomes: pl.DataFrame
    data_end: datetime | None
    variances: pl.DataFrame
    history: pl.DataFrame
    bank_lines: pl.DataFrame


def tables(snap: Snapshots, tenant: str | None, rules) -> dict[str, pl.DataFrame]:
    """Every KPI table for a tenant (None: the platform), by title. `rules`: `ReportRules`."""
    own = lambda frame: of_tenant(frame, snap.owners, tenant)  # noqa: E731
    kpi_events = own(decode(snap.events))
    return {
        TITLES["underwriting"]: underwriting(own(snap.decisions), snap.outcomes, snap.data_end),
        TITLES["chargebacks"]: with_money_text(chargebacks(kpi_events)),
        TITLES["variances"]: with_money_text(open_variances(own(snap.variances), rules)),
        TITLES["lead_time"]: lead_times(kpi_events, snap.bank_lines),
        TITLES["resolve_time"]: resolve_times(own(snap.variances), snap.history),
    }


# ---------------------------------------------------------------- the shell


@dataclass(frozen=True)
class KpiSources:
    """Where the published snapshots are: the ledger's event archive (or a generated
    world's folder), the recon state folder (variances, their history, intake's lines) and
    the risk state folder (the decision log)."""

    events: Path
    recon_state: Path
    risk_state: Path

    @classmethod
    def from_config(
        cls, ledger_state: Path | None = None, recon_state: Path | None = None, risk_state: Path | None = None
    ) -> KpiSources:
        """The folders given, else configs/ledger.yaml's, recon.yaml's and risk.yaml's."""
        from clearline.pipelines.cli.options import ledger_state_dir, recon_state_dir, risk_state_dir

        return cls(ledger_state_dir(ledger_state) / "archive", recon_state_dir(recon_state), risk_state_dir(risk_state))


def _event_files(root: Path) -> tuple[list[Path], pl.Expr]:
    """The event files under `root` and how to get each event's payload JSON from them."""
    world = root / "events" / "events.parquet"
    if world.is_file():
        return [world], pl.col("payload")
    return sorted(root.glob("event_date=*/*.parquet")), pl.col("body").cast(pl.String).str.json_path_match("$.payload")


def read_history(recon_state: Path) -> pl.DataFrame:
    """The variance store's history (HISTORY_SCHEMA): its published snapshot
    (published/history.parquet) when there is one, else the store when no flow holds it,
    else nothing (a running flow that publishes no history)."""
    import duckdb

    from clearline.recon import VarianceStore

    published = recon_state / "published" / "history.parquet"
    if published.is_file():
        return pl.read_parquet(published).select(list(HISTORY_SCHEMA)).cast(HISTORY_SCHEMA)
    path = recon_state / "variances.duckdb"
    if path.is_file():
        try:
            store = VarianceStore(path)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
        else:
            with store:
                rows = store.con.sql(f"SELECT {', '.join(HISTORY_SCHEMA)} FROM history").pl()
            return rows.cast(HISTORY_SCHEMA)
    return pl.DataFrame(schema=HISTORY_SCHEMA)


def read(sources: KpiSources) -> Snapshots:
    """The snapshots, read once: nothing here opens a store a running flow holds."""
    from clearline import config
    from clearline.features import read_events
    from clearline.models import labels, read_log
    from clearline.recon import VARIANCE_SCHEMA as SCHEMA
    from clearline.recon import read_lines, read_variances

    files, payload = _event_files(sources.events)
    if files:
        scan = pl.scan_parquet(files)
        found = scan.select("merchant_id", "reseller_id").unique().collect()
        events = (
            scan.filter(pl.col("event_type").is_in(_KPI_EVENTS))
            .select("event_id", "event_type", "occurred_at", "merchant_id", payload.alias("payload"))
            .collect()
            .cast(EVENT_SCHEMA)
        )
        outcomes = labels.outcomes(read_events(sources.events), labels.outcome_window_days(config.load("models")))
        data_end = scan.select(pl.col("occurred_at").max()).collect().item()
    else:
        found = pl.DataFrame(schema={"merchant_id": pl.String, "reseller_id": pl.String})
        events, outcomes, data_end = pl.DataFrame(schema=EVENT_SCHEMA), pl.DataFrame(schema=OUTCOME_SCHEMA), None
    log = read_log(sources.risk_state, "decisions")
    decisions = log.select(list(DECISION_SCHEMA)) if log.height else pl.DataFrame(schema=DECISION_SCHEMA)
    variances = read_variances(sources.recon_state)
    if variances is None:
        extra = {"status": pl.String, "first_seen": _TS}
        variances = pl.DataFrame(schema={**SCHEMA, **extra})
    return Snapshots(
        owners(found),
        events,
        decisions,
        outcomes,
        data_end,
        variances,
        read_history(sources.recon_state),
        read_lines(sources.recon_state, "bank"),
    )


def compute(sources: KpiSources, tenant: str | None = None) -> dict[str, pl.DataFrame]:
    """The KPI page's tables, by title, for a reseller (`tenant`) or the platform (None)."""
    from clearline import config
    from clearline.recon import ReportRules

    return tables(read(sources), tenant, ReportRules.from_config(config.load("reports")))
