"""Files sent twice: a processor report downloaded again, a bank statement re-issued.

The copy is recognised by what its sender calls it (processor line ids; account,
statement id and sequence), never by its bytes: the same content with CRLF line endings,
a new file name, a new message id and creation time is a no-op said once as "received
again"; a file that partly overlaps takes in only its new lines and says how many were
already held; a copy whose content differs is one variance naming what changed. Payout
totals count each processor line once. Built from a generated clean world (whose files
reconcile to no variance at all) and from real public statements in tests/data/bank_statements.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from clearline import config
from clearline.pipelines.cli.recon import run_batch, tolerances
from clearline.recon.intake.ingest import Intake, IntakeSettings
from clearline.recon.intake.parse import parse_file
from clearline.recon.intake.store import read_lines, read_statements
from clearline.recon.matching import expectations
from clearline.recon.matching.continuity import bank_books
from clearline.recon.matching.reconcile import Inputs, input_watermark, reconcile
from clearline.recon.matching.variance import records

TESTS = Path(__file__).parent.parent


def real_samples(pattern: str) -> list[Path]:
    """Real public files of the test corpus: bank statements (tests/data/bank_statements,
    and the older tests/recon/data/bank_samples while it is being moved there) and
    processor reports (tests/data/processor_reports)."""
    roots = [
        TESTS / "data" / "bank_statements",
        TESTS / "recon" / "data" / "bank_samples",
        TESTS / "data" / "processor_reports",
    ]
    return sorted(p for root in roots if root.is_dir() for p in root.rglob(pattern) if not p.name.startswith("LICENSE"))


def settings(state: Path) -> IntakeSettings:
    return IntakeSettings(
        state, "unused-without-producer", poll_seconds=0.1, settle_seconds=0, delivery_timeout_seconds=10
    )


def downloaded_again(original: Path, folder: Path, name: str) -> Path:
    """The same report as a browser saves it a second time: CRLF line endings, a new name."""
    copy = folder / name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(original.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    assert copy.read_bytes() != original.read_bytes()
    return copy


def reissued(original: Path, folder: Path, name: str) -> Path:
    """A camt.053 re-issued: the same statement (id, sequence, entries) in a new message,
    with a new message id and a new creation time."""
    text = original.read_text(encoding="utf-8")
    text = re.sub(r"<MsgId>([^<]*)</MsgId>", r"<MsgId>\1-REISSUE2</MsgId>", text)
    text = re.sub(r"<CreDtTm>\d{4}-\d\d-\d\dT[^<]*</CreDtTm>", "<CreDtTm>2026-12-01T09:30:00+01:00</CreDtTm>", text)
    copy = folder / name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(text, encoding="utf-8")
    assert copy.read_bytes() != original.read_bytes()
    return copy


def world_files(world: Path) -> list[Path]:
    return sorted(p for part in ("settlements", "bank") for p in (world / part).rglob("*") if p.is_file())


def biggest_stripe_report(world: Path) -> Path:
    return max(sorted((world / "settlements" / "stripe").glob("*.csv")), key=lambda p: p.stat().st_size)


@pytest.fixture(scope="module")
def world_copy(clean_world, tmp_path_factory) -> Path:
    """The clean world's events and files, in a folder the tests may add copies to."""
    world, _ = clean_world
    copy = tmp_path_factory.mktemp("world-copy")
    for part in ("events", "settlements", "bank"):
        shutil.copytree(world / part, copy / part)
    return copy


@pytest.fixture(scope="module")
def ingested(clean_world, tmp_path_factory):
    """Every file of the clean world taken in by intake once."""
    world, _ = clean_world
    state = tmp_path_factory.mktemp("intake-state")
    outcomes = Intake(settings(state)).ingest(world_files(world))
    assert {o.status for o in outcomes} == {"accepted"}, [o.reason for o in outcomes if o.status != "accepted"]
    return world, state


def stored_lines(state: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    return read_lines(state, "processor"), read_lines(state, "bank")


def reconcile_stored(world: Path, state: Path) -> pl.DataFrame:
    """The world's events against the lines intake stored in `state`: the variances."""
    scan = pl.scan_parquet(world / "events" / "events.parquet")
    settle, movements = expectations.from_events(scan)
    processor, bank = stored_lines(state)
    inputs = Inputs(settle, movements, processor, bank, read_statements(state), bank_books(config.load("platform")))
    latest = scan.select(pl.col("occurred_at").max()).collect().item()
    return reconcile(inputs, tolerances(), input_watermark(inputs, latest)).variances


# ------------------------------------------------------- the two failures


def test_a_stripe_report_downloaded_again_gives_no_variance(world_copy):
    """The issue's Stripe case in a batch over a folder: the same lines, CRLF, a new
    name gave a `duplicate` per line and a false `amount_mismatch` per payout, the payout
    counted twice against what the bank received once."""
    original = biggest_stripe_report(world_copy)
    downloaded_again(original, world_copy / "settlements" / "stripe", "payout_reconciliation (1).csv")
    _, variances = run_batch(world_copy, None, None, None, None)
    assert variances.is_empty(), variances.select("category", "reference", "field", "expected", "actual").to_dicts()


def test_a_camt053_reissued_in_the_same_folder_gives_no_variance(world_copy):
    """The issue's camt.053 case in a batch over a folder: each entry of the copy was a
    `duplicate`; the statement (and its balances) must count once."""
    original = sorted((world_copy / "bank").rglob("*.xml"))[5]
    reissued(original, original.parent, "reissued-" + original.name)
    _, variances = run_batch(world_copy, None, None, None, None)
    assert variances.is_empty(), variances.select("category", "reference", "field", "expected", "actual").to_dicts()


def test_a_stripe_report_downloaded_again_is_received_again(ingested, tmp_path):
    world, state = ingested
    before = stored_lines(state)
    copy = downloaded_again(biggest_stripe_report(world), tmp_path, "Itemized payout reconciliation (1).csv")
    (outcome,) = Intake(settings(state)).ingest([copy])
    assert outcome.status == "received_again", outcome
    assert outcome.lines == 0 and outcome.already_held == parse_file(copy).lines.height > 0
    assert biggest_stripe_report(world).name in outcome.reason and "nothing done" in outcome.reason
    after = stored_lines(state)
    assert all(b.equals(a) for b, a in zip(before, after)), "nothing of the copy reached the store"
    assert reconcile_stored(world, state).is_empty()


def test_a_camt053_reissued_with_a_new_message_id_is_received_again(ingested, tmp_path):
    world, state = ingested
    before = stored_lines(state)
    original = sorted((world / "bank").rglob("*.xml"))[3]
    copy = reissued(original, tmp_path, "statement-reissued.xml")
    (outcome,) = Intake(settings(state)).ingest([copy])
    assert outcome.status == "received_again", outcome
    assert original.name in outcome.reason
    assert all(b.equals(a) for b, a in zip(before, stored_lines(state)))


def test_real_camt053_statements_reissued_are_received_again(tmp_path):
    """Every real camt.053 of the corpus the intake accepts, re-issued, is received again;
    one it quarantines (the file itself is inconsistent) is quarantined again."""
    intake, accepted = Intake(settings(tmp_path / "state")), 0
    for n, sample in enumerate(real_samples("*.xml")):
        (first,) = intake.ingest([sample])
        (again,) = intake.ingest([reissued(sample, tmp_path / str(n), f"reissued-{sample.name}")])
        if first.status == "quarantined":
            assert again.status == "quarantined", again
            continue
        accepted += 1
        assert first.status == "accepted", first
        assert again.status == "received_again", again
        assert again.already_held == first.lines and sample.name in again.reason
    assert accepted >= 2


def test_a_corrected_statement_is_taken_in_and_is_one_variance(ingested, tmp_path):
    """The bank re-issues a statement under the same id and sequence with one entry's
    text corrected: intake takes it in (saying its lines differ from the copy held), the
    matcher keeps the first version and names the correction once; the same corrected
    copy once more is received again."""
    world, held_state = ingested
    state = tmp_path / "state"
    shutil.copytree(held_state, state)
    original = next(
        p for p in sorted((world / "bank").rglob("*.xml")) if "<Ustrd>MERCHANT PAYOUT</Ustrd>" in p.read_text()
    )
    copy = reissued(original, tmp_path, "statement-corrected.xml")
    copy.write_text(
        copy.read_text().replace("<Ustrd>MERCHANT PAYOUT</Ustrd>", "<Ustrd>MERCHANT PAYOUT (CORR)</Ustrd>", 1)
    )
    entries = parse_file(original).lines.height
    (outcome,) = Intake(settings(state)).ingest([copy])
    assert (outcome.status, outcome.lines, outcome.changed) == ("accepted", entries, entries), outcome
    assert "differ from the copy held" in outcome.reason
    (v,) = records(reconcile_stored(world, state))
    assert v.category == "corrected_statement" and v.field == "entries"
    assert v.expected.startswith(f"{entries} entries") and "entries: 1 changed or added, 1 changed or gone" in v.actual
    assert [e.rsplit(":", 1)[0] for e in v.evidence] == [original.name, copy.name]
    again = reissued(copy, tmp_path / "again", copy.name)
    (second,) = Intake(settings(state)).ingest([again])
    assert second.status == "received_again" and copy.name in second.reason


def other_line_endings(original: Path, folder: Path) -> Path:
    """The file saved again on another system: CRLF where it had LF, LF where it had
    CRLF, under a new name."""
    data = original.read_bytes()
    copy = folder / f"saved-again-{original.name}"
    copy.write_bytes(data.replace(b"\r\n", b"\n") if b"\r\n" in data else data.replace(b"\n", b"\r\n"))
    return copy


@pytest.mark.slow
def test_every_real_file_saved_again_is_received_again(tmp_path):
    """Each real statement and report of the corpus, taken in on its own, then saved
    again with other line endings and another name: received again when it was taken in,
    quarantined again when the file itself is inconsistent."""
    accepted = 0
    samples = [p for p in real_samples("*") if p.suffix.lower() in (".sta", ".xml", ".bai", ".csv", ".txt", ".940")]
    for n, sample in enumerate(samples):
        intake = Intake(settings(tmp_path / f"state-{n}"))
        (first,) = intake.ingest([sample])
        (again,) = intake.ingest([other_line_endings(sample, tmp_path / f"state-{n}")])
        if first.status == "quarantined":
            assert again.status == "quarantined", (sample.name, again)
            continue
        accepted += 1
        assert (first.status, again.status) == ("accepted", "received_again"), (sample.name, first, again)
        assert again.already_held == first.lines and sample.name in again.reason
    assert accepted >= 10, f"only {accepted} of {len(samples)} real files taken in"


def test_next_years_statements_under_the_same_numbers_are_new_statements(tmp_path):
    """ASN Bank writes `:20:0000000000` on every statement and numbers `:28C:` by the day
    of the year: a year later the same numbers come back on other statements. They are
    new statements, taken in whole, not corrections of last year's."""
    (sample,) = real_samples("wolph-asnb-mt940.txt")
    text = sample.read_text()
    next_year = re.sub(r"(:6[02][FM]:[CD])20(\d{4})", r"\g<1>21\2", text)
    next_year = re.sub(r":61:20(\d{4})", r":61:21\1", next_year)
    later = tmp_path / "asn-2021.sta"
    later.write_text(next_year)
    intake = Intake(settings(tmp_path / "state"))
    first, second = intake.ingest([sample, later])
    assert first.status == "accepted", first
    assert (second.status, second.lines, second.already_held, second.changed) == ("accepted", first.lines, 0, 0)


def test_the_same_bytes_again_are_received_again_too(ingested):
    world, state = ingested
    (outcome,) = Intake(settings(state)).ingest([biggest_stripe_report(world)])
    assert outcome.status == "received_again" and "already accepted" in outcome.reason


# ---------------------------------------------------------------- partial overlap


def same_layout_pair(folder: Path) -> tuple[Path, Path]:
    """Two reports of one processor with the same columns in the same order (the world
    varies them, as merchants do), so their rows can be put in one file."""
    reports = sorted(folder.glob("*.csv"))
    header = lambda p: p.read_text().split("\n", 1)[0]  # noqa: E731
    return next((a, b) for a, b in zip(reports, reports[1:]) if header(a) == header(b))


def test_a_report_that_partly_overlaps_takes_in_only_its_new_lines(clean_world, tmp_path):
    """Two days' report, the first of which was taken in already (each day's rows with
    its payout row, as Stripe writes them)."""
    world, _ = clean_world
    first, second = same_layout_pair(world / "settlements" / "stripe")
    header, *rows_first = first.read_text().splitlines(keepends=True)
    overlap = tmp_path / "stripe_two_days.csv"
    overlap.write_text(header + "".join(rows_first + second.read_text().splitlines(keepends=True)[1:]))
    n_first, n_second = parse_file(first).lines.height, parse_file(second).lines.height
    state = tmp_path / "state"
    intake = Intake(settings(state))
    (taken,) = intake.ingest([first])
    (partly,) = intake.ingest([overlap])
    assert (taken.status, partly.status) == ("accepted", "accepted"), partly
    assert (partly.lines, partly.already_held) == (n_second, n_first)
    assert f"{n_first} already held" in partly.reason and first.name in partly.reason
    (rest,) = intake.ingest([second])
    assert rest.status == "received_again" and rest.already_held == n_second
    processor, _ = stored_lines(state)
    assert processor.height == taken.lines + partly.lines == n_first + n_second
    assert processor["line_id"].is_unique().all()
