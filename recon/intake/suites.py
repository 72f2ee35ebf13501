"""Great Expectations suites, one per format, that a file must pass before any line is used.

Each file becomes one pandas batch of three kinds of rows: its normalised lines
(`kind == "line"`), the control totals it declares (`"control"`: declared vs recomputed)
and the values the parser could not normalise (`"problem"`). The suite for its format
checks them together with row conditions, so one validation names every broken rule and,
through `line_no`, every row that broke it. GX runs in an ephemeral context (no project
folder, nothing written) with a pandas datasource; GX 1.24 has no Polars datasource.

Rules, every format: columns and types of `clearline.recon.lines`; required values present; ISO
4217 codes (`clearline.currency.EXPONENT`); declared control totals
equal to the recomputed ones; nothing the parser could not read. Processor formats add
the sign convention per payment kind and net = gross - fee where no conversion happened
(batch kinds such as balance transfers or deposit corrections go either way, and a
stand-alone fee can be a fee refunded);
bank formats nothing more (see `_bank_rules`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

from clearline.currency import EXPONENT
from clearline.recon.intake.chunks import CHUNK_ROWS
from clearline.recon.intake.model import PROCESSOR_FORMATS, ParsedFile
from clearline.recon.lines import BANK_SCHEMA, PAYMENT_KINDS, RECORD_TYPES, SETTLEMENT_SCHEMA


def _kind(kind: str):
    from great_expectations.expectations.row_conditions import Column

    return Column("kind") == kind


def _on_lines(condition=None) -> dict:
    """Row condition: line rows only, and `condition` (a GX Condition) when given."""
    return {"row_condition": _kind("line") if condition is None else _kind("line") & condition}


MAX_ROWS = 50  # rows listed per broken rule in a report; the count is always complete


@dataclass(frozen=True)
class Failure:
    """One broken rule: what it says, how many rows break it, and (up to MAX_ROWS) which."""

    rule: str
    expectation: str
    count: int
    rows: list[dict[str, Any]]  # line_no, the control's name, and the observed values
    observed: Any = None
    error: str | None = None  # the expectation itself could not run: says nothing about the file


@dataclass(frozen=True)
class Verdict:
    suite: str
    rules: int
    failures: list[Failure] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def errors(self) -> list[str]:
        """Rules that could not run (a fault of the suite, not of the file)."""
        return [f"{f.rule}: {f.error}" for f in self.failures if f.error]


def _rule(expectation, text: str):
    expectation.meta = {"rule": text}
    return expectation


def _common_rules(
    gxe, schema: dict, required: list[str], currencies: list[str], unique: list[str] | None = None
) -> list:
    """Rules every format shares; `unique` (processor formats) are the columns no two lines
    of a file may share."""
    codes = sorted(EXPONENT)
    integers = [c for c, t in schema.items() if t == pl.Int64()]
    texts = [c for c, t in schema.items() if t == pl.String()]
    days = [c for c, t in schema.items() if t == pl.Date()]
    moments = [c for c, t in schema.items() if isinstance(t, pl.Datetime)]
    rules = [
        _rule(
            gxe.ExpectTableColumnsToMatchSet(
                column_set=[*schema, "kind", "control", "declared", "computed", "problem", "file", *DERIVED],
                exact_match=True,
            ),
            "the normalised columns are exactly those of clearline.recon.lines",
        ),
        *(
            _rule(gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=["Int64Dtype"]), f"{c} is an integer")
            for c in integers
        ),
        *(_rule(gxe.ExpectColumnValuesToBeOfType(column=c, type_="str"), f"{c} is text") for c in texts),
        *(
            _rule(
                gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=["datetime64[ms]", "datetime64[us]"]),
                f"{c} is a date",
            )
            for c in days
        ),
        *(
            _rule(gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=["datetime64[us]"]), f"{c} is a time (UTC)")
            for c in moments
        ),
        *(
            _rule(
                gxe.ExpectColumnValuesToBeInSet(column=c, value_set=codes, **_on_lines()),
                f"{c} is an active ISO 4217 code",
            )
            for c in currencies
        ),
        *(
            [
                _rule(
                    gxe.ExpectColumnValuesToBeBetween(column="same_id", min_value=1, max_value=1, **_on_lines()),
                    f"no line appears twice in a file (same {', '.join(unique)})",
                )
            ]
            if unique
            else []
        ),
        _rule(
            gxe.ExpectColumnValuesToBeBetween(
                column="control_gap", min_value=0, max_value=0, row_condition=_kind("control")
            ),
            "every control total the file declares equals the one recomputed from its lines",
        ),
        _rule(gxe.ExpectColumnValuesToBeNull(column="problem"), "every value could be read and normalised"),
        *(
            _rule(gxe.ExpectColumnValuesToNotBeNull(column=c, **_on_lines()), f"{c} is present on every line")
            for c in required
        ),
    ]
    return rules


def _processor_rules(gxe) -> list:
    from great_expectations.expectations.row_conditions import Column

    record_type = Column("record_type")
    rules = _common_rules(
        gxe,
        SETTLEMENT_SCHEMA,
        required=[
            "line_id",
            "payout_id",
            "record_type",
            "gross_minor",
            "fee_minor",
            "net_minor",
            "created_at",
            "value_date",
        ],
        currencies=["gross_currency", "fee_currency", "net_currency"],
        unique=UNIQUE,
    )
    return rules + [
        _rule(
            gxe.ExpectColumnValuesToBeInSet(
                column="record_type", value_set=list(RECORD_TYPES), **_on_lines(record_type.is_not_null())
            ),
            f"record_type is one of {', '.join(RECORD_TYPES)}",
        ),
        _rule(
            gxe.ExpectColumnValuesToNotBeNull(
                column="payment_id", **_on_lines(record_type.is_in([k for k in PAYMENT_KINDS if k != "fee"]))
            ),
            "every payment line (not a stand-alone fee or a batch kind) names the platform's payment (payment_id)",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeBetween(
                column="fee_minor", min_value=0, **_on_lines(record_type.is_in(["charge", "chargeback"]))
            ),
            "the fee of a charge or a chargeback is a positive amount the processor keeps",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeBetween(
                column="gross_minor",
                min_value=0,
                **_on_lines(record_type.is_in(["charge", "chargeback_reversal", "refund_reversal"])),
            ),
            "charges and reversals of refunds and chargebacks have gross >= 0 (money to the platform)",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeBetween(
                column="gross_minor", max_value=0, **_on_lines(record_type.is_in(["refund", "chargeback"]))
            ),
            "refunds and chargebacks have gross <= 0 (money from the platform)",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeBetween(
                column="net_gap", min_value=0, max_value=0, **_on_lines(Column("net_gap").is_not_null())
            ),
            "net = gross - fee on every line without a currency conversion",
        ),
    ]


def _bank_rules(gxe) -> list:
    """No reference is mandatory: a bank line is a movement of money on the account, and
    reconciliation must see it whatever the bank wrote beside it (the BAI2 specification's
    own example has details with nothing but a type code and an amount; a line nothing can
    be matched to becomes a variance, it does not hide the rest of the statement).

    No uniqueness rule: two identical lines in one statement are ordinary (two equal
    payments on one day; a Citi MT940 repeats zero-amount information lines), so each is
    kept as a line of its own. Duplicates in bank statements are judged across files, by
    statement identity (a statement delivered twice, or overlapping statements)."""
    return _common_rules(
        gxe,
        BANK_SCHEMA,
        required=["account", "amount_minor", "booking_date", "value_date", "statement_id"],
        currencies=["amount_currency"],
    )


DERIVED = ("control_gap", "net_gap", "same_id")
ID_ROWS = 200_000  # line ids read at once while looking for repeats (only that column)
UNIQUE = ["line_id"]  # what no two lines of a processor report share (`same_id` counts them per file)


@lru_cache(maxsize=1)
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return (
        gx,
        context,
        context.data_sources.add_pandas("intake")
        .add_dataframe_asset("file")
        .add_batch_definition_whole_dataframe("whole"),
    )


@lru_cache(maxsize=None)
def suite(fmt: str):
    """The GX suite for a format (built once per process)."""
    gx, _, _ = _context()
    import great_expectations.expectations as gxe

    rules = _processor_rules(gxe) if fmt in PROCESSOR_FORMATS else _bank_rules(gxe)
    built = gx.ExpectationSuite(name=f"intake.{fmt}")
    for rule in rules:
        built.add_expectation(rule)
    return built


def validation_frame(parsed: ParsedFile) -> pl.DataFrame:
    """Lines, controls and problems of one file as rows of one frame, with derived checks."""
    return pl.concat(list(validation_parts(parsed, max(parsed.line_count, 1))), how="diagonal_relaxed")


def validation_parts(parsed: ParsedFile, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """`validation_frame` a part at a time: the lines in chunks of at most `chunk_rows`
    (read from the spill of a large report, `ParsedFile.chunks`), then the controls and
    problems; every part has every column. What concerns the whole file is computed over
    it first: `same_id` counts the lines of the whole file with that line id."""
    repeats = _repeats(parsed)
    controls = parsed.controls.with_columns(
        kind=pl.lit("control"),
        control_gap=pl.when(pl.col("declared").is_null() | pl.col("computed").is_null())
        .then(pl.lit(None, pl.Int64))
        .otherwise(pl.col("declared") - pl.col("computed")),
    )
    missing = controls.filter(pl.col("control_gap").is_null()).select(
        "line_no", problem=pl.format("{}: the declared or recomputed total could not be read", "control")
    )
    problems = pl.concat([parsed.problems, missing]).with_columns(kind=pl.lit("problem"))
    facts = pl.concat([controls, problems], how="diagonal_relaxed")
    template: pl.DataFrame | None = None
    for chunk in parsed.chunks(chunk_rows):  # at least one, so the template has the lines' columns
        lines = _checked(chunk, parsed.kind, repeats)
        if template is None:
            template = pl.concat([lines.clear(), facts.clear()], how="diagonal_relaxed")
        if lines.height:
            yield _typed(template, lines)
    yield _typed(template, facts)  # type: ignore[arg-type]  # the last part, empty or not


def _typed(template: pl.DataFrame, part: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([template, part], how="diagonal_relaxed").with_columns(pl.col(DERIVED).cast(pl.Int64))


def _repeats(parsed: ParsedFile) -> pl.DataFrame:
    """The line ids a processor report holds more than once, each with how many times.

    Found without holding the ids: a 64-bit hash per line (8 bytes, read a slice at a
    time), sorted; only the lines whose hash repeats are then read and counted by their
    ids, so a hash collision is never taken for a repeat."""
    if parsed.kind != "processor":
        return pl.DataFrame()
    key, hashes = pl.struct(UNIQUE).hash(), []
    for part in parsed.chunks(ID_ROWS, UNIQUE):
        hashes.append(part.select(key).to_series().to_numpy())
    ordered = np.sort(np.concatenate(hashes))
    del hashes
    twice = pl.Series(np.unique(ordered[1:][ordered[1:] == ordered[:-1]])).implode()
    del ordered
    found = [part.filter(key.is_in(twice)) for part in parsed.chunks(ID_ROWS, UNIQUE)]
    counted = pl.concat(found).group_by(UNIQUE).agg(same_id=pl.len().cast(pl.Int64))
    return counted.filter(pl.col("same_id") > 1)


def _checked(lines: pl.DataFrame, kind: str, repeats: pl.DataFrame) -> pl.DataFrame:
    """A chunk of lines with the derived per-row checks (`DERIVED`)."""
    lines = lines.with_columns(kind=pl.lit("line"))
    if kind != "processor":
        return lines.with_columns(net_gap=pl.lit(None, pl.Int64), same_id=pl.lit(None, pl.Int64))
    same = pl.col("gross_currency") == pl.col("net_currency")
    gap = pl.when(same).then(pl.col("gross_minor") - pl.col("fee_minor") - pl.col("net_minor"))
    counted = lines.join(repeats, on=UNIQUE, how="left", nulls_equal=True, maintain_order="left")
    return counted.with_columns(net_gap=gap.cast(pl.Int64), same_id=pl.col("same_id").fill_null(1))


def _pandas(frame: pl.DataFrame):
    """pandas for GX: nullable integers stay integers, UTC times become naive UTC."""
    moments = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    data = frame.with_columns(pl.col(moments).dt.replace_time_zone(None)).to_pandas()
    return data.astype({c: "Int64" for c, t in frame.schema.items() if t == pl.Int64})


def validate(parsed: ParsedFile) -> Verdict:
    """Run the format's suite on one parsed file."""
    return validate_many([parsed])[0]


def validate_many(files: list[ParsedFile], chunk_rows: int = CHUNK_ROWS) -> list[Verdict]:
    """Verdicts for many files, in order: one GX run per chunk of at most `chunk_rows` rows
    of one format, not per file nor per whole file.

    GX costs about a second a run whatever the size, so small files of one format share a
    chunk with a `file` column; a large file is validated a chunk at a time, so GX's pandas
    copy of it is never whole. Every rule is per row: what concerns the whole file (a line
    id the file repeats, a payout's sum) is computed across the file before it is cut into
    chunks (`validation_frame`), so a file's verdict depends neither on the files beside it
    nor on where the chunks fall; a rule's failures are merged over the chunks
    (`_merged`: its count is the sum, its rows listed up to MAX_ROWS).
    """
    verdicts: list[Verdict | None] = [None] * len(files)
    for fmt in sorted({f.format for f in files}):
        members = [i for i, f in enumerate(files) if f.format == fmt]
        checked = suite(fmt)
        found: dict[int, list[Failure]] = {i: [] for i in members}
        for chunk in _chunks(files, members, chunk_rows):
            in_chunk = set(chunk["file"].unique().to_list())
            for failure in _run(checked, chunk):
                for i in in_chunk:
                    mine = _for_file(failure, i)
                    if mine is not None:
                        found[i].append(mine)
        order = {e.meta["rule"]: n for n, e in enumerate(checked.expectations)}
        for i in members:
            merged = _merged(found[i])
            verdicts[i] = Verdict(
                checked.name, len(checked.expectations), sorted(merged, key=lambda f: order.get(f.rule, 0))
            )
    return verdicts  # type: ignore[return-value]


def _chunks(files: list[ParsedFile], members: list[int], chunk_rows: int) -> Iterator[pl.DataFrame]:
    """The members' validation rows, `file` column added, in frames of at most `chunk_rows` rows."""
    pending: list[pl.DataFrame] = []
    size = 0
    for i in members:
        for rows in validation_parts(files[i], chunk_rows):
            rows, start = rows.with_columns(file=pl.lit(i, pl.Int64)), 0
            while start < rows.height:
                part = rows.slice(start, chunk_rows - size)
                pending.append(part)
                size, start = size + part.height, start + part.height
                if size >= chunk_rows:
                    yield pl.concat(pending, how="diagonal_relaxed")
                    pending, size = [], 0
    if pending:
        yield pl.concat(pending, how="diagonal_relaxed")


def _run(checked, chunk: pl.DataFrame) -> list[Failure]:
    """The failures of one GX run of a suite over one chunk."""
    _, _, batch_definition = _context()
    batch = batch_definition.get_batch(batch_parameters={"dataframe": _pandas(chunk)})
    result = batch.validate(
        checked,
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": ["file", "line_no", "control", "declared", "computed"],
        },
    )
    return [_failure(r) for r in result.results if not r.success]


def _merged(failures: list[Failure]) -> list[Failure]:
    """One failure per rule from its failures in several chunks: the count is the sum, the
    rows are listed in file order up to MAX_ROWS; a rule that could not run, or broken by the
    table as a whole (no rows), is said once."""
    by_rule: dict[str, list[Failure]] = {}
    for failure in failures:
        by_rule.setdefault(failure.rule, []).append(failure)
    merged = []
    for rule, found in by_rule.items():
        failed = next((f for f in found if f.error), None) or next((f for f in found if not f.rows), None)
        if failed is not None:
            merged.append(failed)
            continue
        rows = [row for f in found for row in f.rows][:MAX_ROWS]
        merged.append(Failure(rule, found[0].expectation, sum(f.count for f in found), rows))
    return merged


def _for_file(failure: Failure, index: int) -> Failure | None:
    """The part of a failure that concerns one file; a table-level failure concerns all."""
    if not failure.rows:
        return failure
    rows = [{k: v for k, v in row.items() if k != "file"} for row in failure.rows if row.get("file") == index]
    if not rows:
        return None
    return Failure(failure.rule, failure.expectation, len(rows), rows)


def _failure(result) -> Failure:
    config = result.expectation_config
    found = result.result or {}
    index_only = ("control", "declared", "computed")  # said on control rows, empty on the others
    rows = [
        {k: _plain(v) for k, v in row.items() if k not in index_only or _plain(v) is not None}
        for row in (found.get("unexpected_index_list") or [])
    ]
    rule = (config.meta or {}).get("rule", config.type)
    error = (result.exception_info or {}).get("exception_message")
    if error:
        return Failure(rule, config.type, 0, [], error=error)
    return Failure(
        rule,
        config.type,
        count=int(found.get("unexpected_count") or len(rows)),
        rows=rows,
        observed=_plain(found.get("observed_value")) if not rows else None,
    )


def _plain(value: Any) -> Any:
    """numpy / pandas scalars as plain Python for JSON reports."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:
        pass
    return value if isinstance(value, (int, float, str, bool, dict)) else str(value)
