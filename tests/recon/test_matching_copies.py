"""Copies before matching: a processor line id or a bank statement that came in more than
one file counts once; a copy that says the same is no variance, one that differs is one
variance naming what changed; payout totals count each line id once; and the stream,
fed the copies in any order, ends where the batch does."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline.currency import minor_to_decimal
from clearline.events import Money
from clearline.recon.lines import BankLine, SettlementLine, Statement, frame
from clearline.recon.matching import expectations as ex
from clearline.recon.matching.bank import payout_batches
from clearline.recon.matching.continuous import Continuous
from clearline.recon.matching.reconcile import Inputs, reconcile
from clearline.recon.matching.variance import records
from tests.recon.test_matching_rules import DAY0, LATER, TOL, Book, bank_line, books


def run(book: Book, lines: list[SettlementLine], bank: list[BankLine], movements=None, shuffle=None, statements=()):
    """The book's expectations against `lines` and `bank` (and `statements`) as given (the
    book's own bank is what the processors paid: each line once)."""
    exp, moves = list(book.expected), list(movements or book.movements)
    lines, bank = list(lines), list(bank)
    if shuffle:
        for seq in (exp, lines, bank, moves):
            shuffle.shuffle(seq)
    settle_frame, _ = ex.frames(exp)
    _, move_frame = ex.frames(moves)
    inputs = Inputs(
        settle_frame,
        move_frame,
        frame(lines, SettlementLine),
        frame(bank, BankLine),
        frame(list(statements), Statement),
    )
    return reconcile(inputs, TOL, LATER)


def resent(line: SettlementLine, **changes) -> SettlementLine:
    """The line as a report sent again shows it: another file, maybe other values."""
    return replace(line, source_file=line.source_file.replace(".csv", "_resent.csv"), **changes)


def charge_book(specs) -> Book:
    return Book([("adyen", "charge", 10_000, "USD", 1, False), *specs])


# ------------------------------------------------------------------ processor lines


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books, st.data())
def test_a_report_sent_again_with_the_same_lines_gives_no_variance(specs, data):
    book = Book(specs)
    again = data.draw(st.lists(st.sampled_from(book.lines), min_size=1, unique_by=lambda x: x.line_id))
    result = run(book, book.lines + [resent(line) for line in again], book.bank(), shuffle=random.Random(3))
    assert result.variances.is_empty(), result.variances.to_dicts()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books, st.integers(1, 9_999), st.data())
def test_a_corrected_line_is_one_variance_naming_what_changed(specs, moved, data):
    book = charge_book(specs)
    line = data.draw(st.sampled_from([x for x in book.lines if x.record_type == "charge"]))
    fee, net = line.fee.minor + moved, line.net.minor - moved
    corrected = resent(line, fee=Money(fee, line.fee.currency), net=Money(net, line.net.currency))
    twice = [
        corrected,
        replace(corrected, source_file=line.source_file.replace(".csv", "_resent_again.csv")),
    ]  # the same correction twice
    (v,) = records(run(book, book.lines + twice, book.bank(), shuffle=random.Random(5)).variances)
    assert (v.category, v.reference, v.payout_id) == ("corrected_line", line.line_id, line.payout_id)
    assert (v.field, v.amount) == ("net", Money(moved, line.net.currency))
    money = lambda m: f"{minor_to_decimal(m.minor, m.currency)} {m.currency}"  # noqa: E731
    assert (v.expected, v.actual) == (money(line.net), money(Money(net, line.net.currency)))
    assert v.evidence == (f"{line.source_file}:{line.line_no}", f"{corrected.source_file}:{corrected.line_no}")


def test_the_first_field_that_changed_is_named():
    book = charge_book([])
    line = book.lines[0]
    later = resent(line, value_date=line.value_date + timedelta(days=1), payout_id="po_other")
    (v,) = records(run(book, book.lines + [later], book.bank()).variances)
    assert (v.field, v.expected, v.actual) == ("value_date", str(line.value_date), str(later.value_date))
    assert v.amount == Money(abs(line.net.minor), line.net.currency)


def test_a_line_id_twice_in_one_report_is_the_reports_own_duplicate_and_paid_twice():
    """Not a copy: the report itself says the line twice (intake quarantines such a file;
    read from a folder, the line rules call it a duplicate), and the bank shows it paid
    twice, so its payout counts it twice."""
    book = charge_book([])
    line = book.lines[0]
    book.lines.append(replace(line, line_no=99))  # same file, same id
    (v,) = records(book.run().variances)
    assert (v.category, v.reference) == ("duplicate", line.line_id)
    (total,) = payout_batches(frame(book.lines, SettlementLine))["amount_minor"]
    assert total == 2 * line.net.minor


def test_a_true_duplicate_under_another_id_is_still_a_duplicate():
    book = charge_book([])
    line = book.lines[0]
    book.lines.append(replace(line, line_id="std_1", line_no=99))  # the processor paid it twice
    (v,) = records(book.run().variances)
    assert (v.category, v.reference) == ("duplicate", "std_1")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["po_a", "po_b"]), st.integers(-10_000, 10_000), st.integers(0, 3)),
        min_size=1,
        max_size=12,
    )
)
def test_payout_totals_count_each_line_id_once(rows):
    """Each line id sent 1 to 4 times (copies with the same net or another) adds its first
    report's net to its payout once."""
    book = charge_book([])
    template = book.lines[0]
    lines, first = [], {}
    for n, (payout, net, copies) in enumerate(rows):
        for c in range(copies + 1):
            lines.append(
                replace(
                    template,
                    line_id=f"l{n}",
                    payout_id=payout,
                    net=Money(net + 7 * c, "USD"),
                    source_file=f"report_{c}.csv",
                    line_no=n + 2,
                )
            )
        first[f"l{n}"] = (payout, net)
    random.Random(len(rows)).shuffle(lines)
    batches = payout_batches(frame(lines, SettlementLine))
    got = dict(zip(batches["payout_id"], batches["amount_minor"]))
    want: dict[str, int] = {}
    for payout, net in first.values():
        want[payout] = want.get(payout, 0) + net
    assert got == want


# ------------------------------------------------------------------ bank statements


def statement(lines: list[BankLine], statement_id: str, file: str) -> list[BankLine]:
    return [replace(b, statement_id=statement_id, sequence="1", source_file=file) for b in lines]


def merchant_payout_book() -> tuple[Book, list, BankLine]:
    """A book with one more merchant payout, booked on a statement of its own."""
    book = charge_book([])
    movement = ex.ExpectedBankMovement(
        "evt_mpo_9", "merchant_payout", None, "mpo_9", Money(-7_000, "USD"), DAY0 + timedelta(days=2), "m_1"
    )
    return book, [*book.movements, movement], bank_line("mpo_9", Money(-7_000, "USD"), DAY0 + timedelta(days=2), 950)


def test_a_statement_reissued_with_the_same_entries_is_no_variance():
    book, movements, payout = merchant_payout_book()
    first = statement(
        [payout, replace(payout, bank_ref="BR-FEE", reference=None, amount=Money(-50, "USD"), line_no=951)], "S9", "a"
    )
    movements.append(
        ex.ExpectedBankMovement(
            "evt_fee_1", "merchant_payout", None, "BR-FEE", Money(-50, "USD"), DAY0 + timedelta(days=2), "m_1"
        )
    )
    reissued = [replace(b, source_file="b.xml", format="camt053", line_no=b.line_no + 40) for b in first]
    result = run(book, book.lines, book.bank() + first + list(reversed(reissued)), movements)
    assert result.variances.is_empty(), result.variances.to_dicts()


def test_a_corrected_statement_is_one_variance_and_its_first_version_counts():
    book, movements, payout = merchant_payout_book()
    first = statement([payout], "S9", "stmt_a.xml")
    corrected = statement(
        [payout, replace(payout, bank_ref="BR-NEW", reference="wire_9", line_no=960)], "S9", "stmt_b.xml"
    )
    (v,) = records(
        run(book, book.lines, book.bank() + corrected + first, movements, shuffle=random.Random(1)).variances
    )
    assert v.category == "corrected_statement" and v.reference == f"{payout.account} statement S9/1"
    assert v.field == "entries" and v.amount == Money(7_000, "USD")
    assert v.expected == "1 entries, net -70.00 USD"
    assert v.actual.startswith("2 entries, net -140.00 USD (entries: 1 changed or added, 0 changed or gone)")
    assert v.evidence == (f"stmt_a.xml:{payout.line_no}", f"stmt_b.xml:{payout.line_no}")


def test_a_statement_reissued_with_other_balances_is_one_variance_naming_them():
    book, movements, payout = merchant_payout_book()
    day = payout.booking_date
    stated = Statement(
        "bai2", payout.account, "S9", "1", Money(100_000, "USD"), day, Money(93_000, "USD"), day, 1, "a", 1
    )
    versions = [stated, replace(stated, closing=Money(93_100, "USD"), source_file="b")]
    bank = book.bank() + statement([payout], "S9", "a") + statement([payout], "S9", "b")
    (v,) = records(run(book, book.lines, bank, movements, statements=versions).variances)
    assert v.category == "corrected_statement" and v.amount == Money(0, "USD")
    assert v.expected == "1 entries, net -70.00 USD, closing 930.00 USD"
    assert v.actual == "1 entries, net -70.00 USD, closing 931.00 USD (entries: 0 changed or added, 0 changed or gone)"
    assert v.evidence == ("a:1", "b:1")


def test_the_same_statement_numbers_on_another_day_are_another_statement():
    """A bank's constant statement id and a sequence that starts again every year: the
    statements of two days under the same numbers are two statements, both counted."""
    book, movements, payout = merchant_payout_book()
    day, later_day = payout.booking_date, payout.booking_date + timedelta(days=365)
    other = replace(payout, reference="mpo_10", booking_date=later_day, value_date=later_day, line_no=990)
    movements.append(
        ex.ExpectedBankMovement("evt_mpo_10", "merchant_payout", None, "mpo_10", payout.amount, later_day, "m_1")
    )
    stated = Statement(
        "mt940", payout.account, "0000000000", "1/1", Money(0, "USD"), day, payout.amount, day, 1, "a", 1
    )
    # the second opens where the first closed: a year apart, and no balance moved in between
    later = Money(stated.closing.minor + other.amount.minor, stated.closing.currency)
    versions = [
        stated,
        replace(
            stated,
            opening=stated.closing,
            opening_date=later_day,
            closing=later,
            closing_date=later_day,
            source_file="b",
        ),
    ]
    bank = book.bank() + statement([payout], "0000000000", "a") + statement([other], "0000000000", "b")
    bank = [replace(b, sequence="1/1") if b.statement_id else b for b in bank]
    result = run(book, book.lines, bank, movements, statements=versions)
    assert result.variances.is_empty(), result.variances.to_dicts()


def test_identical_lines_inside_one_statement_are_two_payments():
    book, movements, payout = merchant_payout_book()
    twice = statement([payout, replace(payout, line_no=payout.line_no + 1)], "S9", "stmt_a.xml")
    (v,) = records(run(book, book.lines, book.bank() + twice, movements).variances)
    assert v.category == "duplicate"  # the bank rules judge it: mpo_9 paid out twice


# ------------------------------------------------------------------ stream = batch


def test_the_stream_fed_copies_in_any_order_ends_with_the_batchs_variances():
    book, movements, payout = merchant_payout_book()
    line = book.lines[0]
    corrected_line = resent(line, fee=Money(line.fee.minor + 5, "USD"), net=Money(line.net.minor - 5, "USD"))
    first = statement([payout], "S9", "stmt_a.xml")
    corrected = statement([replace(payout, text="PAYOUT CORRECTED")], "S9", "stmt_b.xml")
    bank = book.bank() + first + corrected
    batch = run(book, book.lines + [corrected_line], bank, movements)
    assert sorted(batch.variances["category"]) == ["corrected_line", "corrected_statement"]

    settle_frame, _ = ex.frames(book.expected)
    _, move_frame = ex.frames(movements)
    stream = Continuous(TOL)
    stream.add(expected_settlements=settle_frame, expected_movements=move_frame)
    arrivals = [  # the copies first, the versions they are compared with later
        {"settlement_lines": frame([corrected_line], SettlementLine), "bank_lines": frame(corrected, BankLine)},
        {"settlement_lines": frame(book.lines, SettlementLine), "bank_lines": frame(book.bank(), BankLine)},
        {"bank_lines": frame(first, BankLine)},
    ]
    for part in arrivals:
        stream.add(**part)
        changes = stream.advance(LATER)
    assert changes.result.variances.equals(batch.variances)
    assert pl.Series(changes.result.variances["category"]).sort().to_list() == ["corrected_line", "corrected_statement"]
