"""`clearline generate`: write a whole, deterministic payments world to a folder.

    OUT/world.json                      what was generated: options, counts, files
    OUT/events/events.jsonl             contract events, one per line, in arrival order
    OUT/events/events.parquet           the same events as columns (payload as JSON text)
    OUT/entities/merchants.parquet      merchants with tenant, currency and processors
    OUT/entities/buyers.parquet         buyers and their home merchant
    OUT/settlements/<processor>/…csv    each processor's settlement reports, its own layout
    OUT/bank/…                          bank statements: BAI2 (USD), camt.053 (EUR), MT940 (GBP)
    OUT/truth/orders.parquet            every order with its true default probability
    OUT/truth/discrepancies.csv         every injected discrepancy (kind, references, amount)

The same options and seed give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from clearline import config, events
from clearline.freezes import NONE, Freezes
from clearline.pipelines.world import bank_files, settlement_files
from clearline.pipelines.world.discrepancies import (
    CATEGORIES,
    balance_truth,
    inject_bank,
    inject_lines,
    inject_statements,
)
from clearline.pipelines.world.emit import arrival_order, body, build_events
from clearline.pipelines.world.entities import make_entities
from clearline.pipelines.world.ids import letter_ids
from clearline.pipelines.world.lifecycle import DAY, HOUR, SECOND, simulate
from clearline.pipelines.world.settlement import (
    bank_lines,
    held_payouts,
    merchant_payouts,
    processor_payouts,
    settlement_lines,
)


class WorldOptionError(ValueError):
    """An option to `generate` is out of range; the message names it and the range."""


@dataclass(frozen=True)
class WorldOptions:
    days: int
    merchants: int
    seed: int
    discrepancy_rate: float | None = None  # None: configs/world.yaml; 0: a clean world
    start: date | None = None
    # the emergency freezes the platform's payout run honours (clearline.freezes' snapshot
    # format): a payout a freeze holds is a payout.held event and leaves no bank line
    freezes: Freezes = NONE

    def check(self) -> None:
        if not 1 <= self.days <= 3660:
            raise WorldOptionError(f"--days must be between 1 and 3660, got {self.days}")
        if not 1 <= self.merchants <= 1_000_000:
            raise WorldOptionError(f"--merchants must be between 1 and 1,000,000, got {self.merchants}")
        if not 0 <= self.seed < 2**63:
            raise WorldOptionError(f"--seed must be a non-negative integer below 2^63, got {self.seed}")
        if self.discrepancy_rate is not None and not 0.0 <= self.discrepancy_rate <= 0.2:
            raise WorldOptionError(f"--discrepancy-rate must be between 0 and 0.2, got {self.discrepancy_rate}")


Progress = Callable[[str], None]


def generate(opts: WorldOptions, out: Path, progress: Progress = lambda step: None) -> dict:
    """Simulate the world and write it under `out`; returns the manifest."""
    opts.check()
    cfg = config.load("world")
    tenants = [t for t in config.load("tenants")["tenants"] if t != events.PLATFORM]
    rate = cfg["discrepancy_rate"] if opts.discrepancy_rate is None else opts.discrepancy_rate
    start = opts.start or date.fromisoformat(config.typed(cfg, "start_date", str))
    start_us = int(datetime(start.year, start.month, start.day, tzinfo=timezone.utc).timestamp()) * SECOND
    end_us = start_us + opts.days * DAY
    end_day = start + timedelta(days=opts.days)
    last_safe_day = end_day - timedelta(days=10)  # injections stay clear of the world's edge
    rng = np.random.default_rng(opts.seed)

    progress("entities")
    ents = make_entities(rng, cfg, tenants, opts.merchants)
    progress("orders and payment lifecycles")
    life = simulate(rng, cfg, ents, start_us, opts.days)
    tables = life.tables
    progress("settlement, payouts and bank lines")
    lines = settlement_lines(cfg, tables, ents.merchants)
    lines, payouts = processor_payouts(lines)
    tables["fee.charged"] = pl.concat(
        [tables["fee.charged"], _dispute_fees(cfg, tables["chargeback.opened"], ents.merchants)]
    )
    accounts = config.load("platform")["bank_accounts"]
    m_payouts = held_payouts(
        merchant_payouts(lines, tables, ents.merchants), ents.merchants["merchant_id"], accounts, opts.freezes
    )
    tables.update(_settlement_events(lines, payouts, m_payouts, platform_row=ents.merchants.height))
    m_payouts = m_payouts.filter(pl.col("frozen_kind").is_null())  # a held payout leaves no bank line

    progress("processor and bank reports, with discrepancies")
    in_world = lambda df, col: df.filter(pl.col(col) < end_day)  # noqa: E731
    actual_lines, line_truth = inject_lines(
        rng, in_world(lines, "available_on").filter(pl.col("batch_id").is_not_null()), rate, last_safe_day
    )
    actual_payouts = _payouts_of(actual_lines, payouts)
    bank = bank_lines(actual_payouts, m_payouts, tables["buyer.repayment"].filter(pl.col("t") < end_us))
    actual_bank, bank_truth = inject_bank(rng, in_world(bank, "booking_date"), rate, last_safe_day)

    with ThreadPoolExecutor(max_workers=2) as writer:
        # Writing files is mostly Polars' work, which lets go of the GIL: each set of files
        # is written on another thread as soon as it is final, beside the work still to do
        # here (the order of the random draws stays the same).
        written = [writer.submit(_write_reports, out / "settlements", actual_lines, ents.merchants)]

        progress("events in arrival order")
        emit_merchants = pl.concat(
            [
                ents.merchants.select("merchant_id", "reseller_id"),
                pl.DataFrame({"merchant_id": [events.PLATFORM], "reseller_id": [events.PLATFORM]}),
            ]
        )
        ev = build_events(tables, emit_merchants, end_us, world_tag(opts, start))
        ev = arrival_order(rng, ev, cfg["late_arrival"]["share"], cfg["late_arrival"]["max_delay_s"])
        written.append(writer.submit(_write_events, out / "events", ev))

        # bank statements, one left out and one tampered with: truth needs the ledger's events
        opening = {ccy: spec["opening_balance_minor"] for ccy, spec in accounts.items()}
        statements = bank_files.daily_statements(actual_bank, opening, accounts)
        statements, statement_truth = inject_statements(rng, statements, rate, last_safe_day)
        written.append(writer.submit(bank_files.write_statements, statements, out / "bank"))
        truth = pl.concat([line_truth, bank_truth, statement_truth, balance_truth(statements, ev, opening)]).sort(
            "kind", "line_id", "bank_line_id", "statement"
        )

        progress("writing files")
        files = _write(out, ents, life.orders, truth)
        for files_written in written:
            files += files_written.result()
    manifest = {
        "generator": "clearline",
        "schema_version": events.SCHEMA_VERSION,
        "seed": opts.seed,
        "days": opts.days,
        "merchants": opts.merchants,
        "buyers": ents.buyers.height,
        "start": start.isoformat(),
        "end": end_day.isoformat(),
        "discrepancy_rate": rate,
        "events": ev.height,
        "events_by_type": dict(sorted(ev.group_by("event_type").len().iter_rows())),
        "orders": life.orders.height,
        "settlement_lines": actual_lines.height,
        "payouts": actual_payouts.height,
        "bank_lines": sum(len(s.entries) for s in statements),
        "discrepancies": {k: int((truth["kind"] == k).sum()) for k in CATEGORIES},
        "files": sorted(str(p.relative_to(out)) for p in files),
    }
    (out / "world.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def world_tag(opts: WorldOptions, start: date) -> str:
    """Six letters that name this world (its options and seed) inside its event ids; the
    freezes it honours count among its options (a world without any keeps its old name)."""
    named = f"{opts.seed}|{opts.days}|{opts.merchants}|{start}|{opts.discrepancy_rate}"
    if opts.freezes:
        named += "|" + json.dumps(sorted((k, f["frozen_at"]) for k, f in opts.freezes.by_target.items()))
    digest = hashlib.sha256(named.encode()).digest()
    return "".join(chr(ord("a") + b % 26) for b in digest[:6])


def _dispute_fees(cfg: dict, chargebacks: pl.DataFrame, merchants: pl.DataFrame) -> pl.DataFrame:
    """The platform passes each processor's chargeback fee on to the merchant."""
    fee = {p: spec["fees"]["chargeback_fee_minor"] for p, spec in cfg["processors"].items()}
    return chargebacks.select(
        t=pl.col("t") + SECOND,
        merchant="merchant",
        fee_id=letter_ids("dfe_", 0, chargebacks.height),
        kind=pl.lit("dispute_fee"),
        amount_minor=pl.col("processor").replace_strict(fee, return_dtype=pl.Int64),
        amount_ccy=merchants["currency"].gather(chargebacks["merchant"]),
        reference="chargeback_id",
    )


def _settlement_events(
    lines: pl.DataFrame, payouts: pl.DataFrame, m_payouts: pl.DataFrame, platform_row: int
) -> dict[str, pl.DataFrame]:
    """The platform's expected settlements, processor payouts and merchant payouts (sent
    or held) as events."""
    settled = lines.filter(pl.col("batch_id").is_not_null())
    paid = ("t", "merchant", "payout_id", "amount_minor", "amount_ccy", "value_date", "order_count")
    return {
        "processor.settlement": settled.select(
            t=pl.col("available_on").cast(pl.Int64) * DAY + 6 * HOUR,
            merchant="merchant",
            processor="processor",
            settlement_id="line_id",
            batch_id="batch_id",
            record_type="record_type",
            payment_id="payment_id",
            gross_minor=pl.col("gross_minor").abs(),
            gross_ccy="gross_currency",
            fee_minor="fee_minor",
            fee_ccy="net_currency",
            net_minor=pl.col("net_minor").abs(),
            net_ccy="net_currency",
            available_on="available_on",
            fx_rate="fx_rate",
        ),
        "processor.payout": payouts.select(
            "t",
            merchant=pl.lit(platform_row, dtype=pl.Int64),
            processor="processor",
            payout_id="payout_id",
            amount_minor="amount_minor",
            amount_ccy="currency",
            arrival_date="arrival_date",
            line_count="line_count",
        ),
        "merchant.payout": m_payouts.filter(pl.col("frozen_kind").is_null()).select(*paid),
        "payout.held": m_payouts.filter(pl.col("frozen_kind").is_not_null()).select(
            *paid, "frozen_kind", "frozen_target"
        ),
    }


def _payouts_of(actual_lines: pl.DataFrame, expected: pl.DataFrame) -> pl.DataFrame:
    """The payouts the processors actually made: the sum of each batch's actual lines."""
    timing = expected.select("payout_id", "t", "arrival_date")
    batches = actual_lines.group_by("batch_id", "processor", "net_currency").agg(
        amount_minor=pl.col("net_minor").sum(), line_count=pl.len(), last_day=pl.col("available_on").max()
    )
    return (
        batches.rename({"batch_id": "payout_id", "net_currency": "currency"})
        .join(timing, on="payout_id", how="left")
        .with_columns(
            t=pl.col("t").fill_null(pl.col("last_day").cast(pl.Int64) * DAY + 7 * HOUR),
            arrival_date=pl.col("arrival_date").fill_null(pl.col("last_day").dt.add_business_days(1)),
        )
        .drop("last_day")
        .sort("t", "payout_id")
    )


def _write_events(folder: Path, ev: pl.DataFrame) -> list[Path]:
    """events.jsonl (one body a line, written as it is by Polars: no quoting, not joined
    in Python) and events.parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "events.jsonl", folder / "events.parquet"]
    ev.select(body()).write_csv(files[0], include_header=False, quote_style="never")
    ev.select(
        "arrival_seq",
        "event_id",
        "event_type",
        "occurred_at",
        "merchant_id",
        "reseller_id",
        "schema_version",
        "payload",
    ).write_parquet(files[1])
    return files


def _write(out: Path, ents, orders: pl.DataFrame, truth: pl.DataFrame) -> list[Path]:
    """Entities, the orders' truth and the discrepancies' truth."""
    for sub in ("entities", "truth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ents.merchants.write_parquet(out / "entities/merchants.parquet")
    ents.buyers.select(
        "buyer_id", home_merchant_id=ents.merchants["merchant_id"].gather(ents.buyers["home_merchant"])
    ).write_parquet(out / "entities/buyers.parquet")
    orders.select(
        "order_id",
        "buyer_id",
        merchant_id=ents.merchants["merchant_id"].gather(orders["merchant"]),
        created_at=pl.from_epoch("t", time_unit="us").dt.replace_time_zone("UTC"),
        amount_minor="amount",
        currency="currency",
        payment_method="method",
        terms_days="terms_days",
        p_default="p_default",
        defaulted="defaulted",
    ).write_parquet(out / "truth/orders.parquet")
    truth.write_csv(out / "truth/discrepancies.csv")
    return [
        out / "entities/merchants.parquet",
        out / "entities/buyers.parquet",
        out / "truth/orders.parquet",
        out / "truth/discrepancies.csv",
    ]


def _write_reports(folder: Path, lines: pl.DataFrame, merchants: pl.DataFrame) -> list[Path]:
    """Each processor's settlement reports, in its own layout."""
    report_lines = lines.with_columns(
        created_at=pl.from_epoch("t", time_unit="us").dt.replace_time_zone("UTC"),
        merchant_id=merchants["merchant_id"].gather(lines["merchant"]),
        payment_method="method",
    )
    return settlement_files.write_settlement_reports(report_lines, folder)
