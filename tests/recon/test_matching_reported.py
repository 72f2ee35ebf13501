"""`settlements.reported` vouches for most pairs by their digests and reads only the rest
whole, including every line of an id reported more than once. Which of those lines is an
id's first is known only once they are read, so a later line may be the one whose digest
equals the ledger's expectation while the first line differs: the expectation must then
still be compared with the first line (one variance, not a line the ledger never heard
of), whatever order the lines come in."""

from __future__ import annotations

import random
from dataclasses import replace

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline.events import Money
from clearline.recon.lines import SettlementLine, frame
from clearline.recon.matching import copies, settlements
from clearline.recon.matching import expectations as ex
from tests.recon.test_matching_rules import LATER, TOL, books, reported, settlement


def _match(expected: list, lines: list, seed: int) -> set[tuple[str, str]]:
    random.Random(seed).shuffle(lines)
    raw, _ = settlements.match(ex.frames(expected)[0], frame(lines, SettlementLine), TOL, LATER.date())
    return set(raw.select("category", "reference").iter_rows())


@pytest.mark.parametrize("again_in", ["adyen_report.csv", "adyen_report_resent.csv"])
@pytest.mark.parametrize("seed", range(4))
def test_a_later_line_that_alone_agrees_with_the_ledger_does_not_hide_its_first(again_in, seed):
    charge, other = (
        settlement(0, "adyen", "charge", 10_000, "EUR", 0, False),
        settlement(1, "adyen", "charge", 500, "EUR", 0, False),
    )
    first = reported(charge, 2)
    wrong = replace(first, net=Money(first.net.minor - 37, "EUR"), gross=Money(first.gross.minor - 37, "EUR"))
    again = replace(first, source_file=again_in, line_no=9)  # as the ledger expects, sent after the wrong one
    found = _match([charge, other], [wrong, again, reported(other, 3)], seed)
    assert found == {("amount_mismatch", "stl_00000"), ("duplicate", "stl_00000")}


@pytest.mark.parametrize("seed", range(4))
def test_a_line_sent_twice_as_the_ledger_expects_it_gives_only_the_duplicate(seed):
    charge = settlement(0, "adyen", "charge", 10_000, "EUR", 0, False)
    line = reported(charge, 2)
    assert _match([charge], [line, replace(line, line_no=5)], seed) == {("duplicate", "stl_00000")}


@pytest.mark.parametrize("seed", range(4))
def test_lines_sent_again_as_they_were_pair_with_nothing_but_their_first_is_still_compared(seed):
    """The first line and a copy of it, and another version of it twice: two lines of one
    hash on one side are no pair (taken for one, the copy of the first hid the first)."""
    charge = settlement(0, "adyen", "charge", 10_000, "EUR", 0, False)
    first = reported(charge, 2)
    other = replace(first, net=Money(first.net.minor + 1, "EUR"), line_no=30)
    lines = [first, replace(first, line_no=20), other, replace(other, line_no=40)]
    assert _match([charge], lines, seed) == {("duplicate", "stl_00000")}


def test_every_reported_line_is_read_whole_at_most_once_and_agreeing_pairs_not_at_all():
    """Of a thousand agreeing pairs, one broken and one whose line came twice, only the
    broken pair and the repeated id (its two lines and its expectation: three equal
    digests) are read whole."""
    book = [settlement(i, "stripe", "charge", 1_000 + i, "USD", i % 5, False) for i in range(1_000)]
    lines = [reported(e, i + 2) for i, e in enumerate(book)]
    lines[7] = replace(lines[7], fee=Money(lines[7].fee.minor + 1, "USD"), net=Money(lines[7].net.minor - 1, "USD"))
    lines.append(replace(lines[500], line_no=5_000))
    seen = settlements.reported(ex.frames(book)[0], frame(lines, SettlementLine))
    assert seen.unsure_exp["settlement_id"].to_list() == ["stl_00007", "stl_00500"]
    assert seen.unsure_lines["line_id"].to_list() == ["stl_00007", "stl_00500"]
    assert (seen.later["line_id"].to_list(), seen.heads["line_id"].to_list()) == (["stl_00500"], ["stl_00500"])
    assert seen.unclassified.is_empty() and isinstance(seen.lines, pl.LazyFrame)
    # no line is one the ledger never expected, so none is read to compare such a line with
    assert seen.near.is_empty() and seen.near_nets.is_empty()


def test_a_line_the_ledger_never_expected_is_found_a_duplicate_even_if_its_net_was_not_read_ahead():
    """`reported` reads ahead the lines sharing a net with a line no unsure expectation
    shares a key hash with; a line that escaped that (its key hash an expectation's, by a
    64-bit collision) has its net's lines read when it turns out unexpected."""
    book = [settlement(i, "adyen", "charge", 2_000 + 10 * i, "EUR", i % 3, False) for i in range(20)]
    lines = [reported(e, i + 2) for i, e in enumerate(book)]
    lines.append(replace(lines[4], line_id="std_1", line_no=99))  # line 4 again under an id nobody expected
    expected, reports = ex.frames(book)[0], frame(lines, SettlementLine)
    seen = settlements.reported(expected, reports)
    assert seen.near["line_id"].sort().to_list() == ["std_1", "stl_00004"]
    escaped = replace(seen, near=seen.near.clear(), near_nets=seen.near_nets.clear())
    for told in (seen, escaped):
        raw, _ = settlements.match(expected, reports, TOL, LATER.date(), told)
        assert raw.select("category", "reference", "expected").rows() == [("duplicate", "std_1", "one line stl_00004")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books, st.data())
def test_what_is_reported_holds_without_the_copies_as_if_read_again(specs, data):
    """`reconcile` takes the copies out after `reported` read the lines: `without` them,
    matching says of what is left what it says when it reads what is left afresh."""
    book = [settlement(i, *spec) for i, spec in enumerate(specs)]
    lines = [reported(e, i + 2) for i, e in enumerate(book)]
    for line in data.draw(st.lists(st.sampled_from(lines), max_size=4)):
        again = data.draw(st.sampled_from([line.source_file, "other_report.csv"]))
        moved = data.draw(st.sampled_from([0, 0, 1, -250]))
        lines.append(
            replace(
                line,
                source_file=again,
                line_no=line.line_no + 100,
                net=Money(line.net.minor + moved, line.net.currency),
            )
        )
    expected, reports = ex.frames(book)[0], frame(lines, SettlementLine)
    seen = settlements.reported(expected, reports)
    known = (seen.later.drop("_l"), seen.heads.drop("_l"))
    kept = copies.processor_copies(reports, known)[0]
    fresh = settlements.match(expected, kept, TOL, LATER.date())
    reused = settlements.match(expected, kept, TOL, LATER.date(), seen.without(copies.sent_again(known)))
    for a, b in zip(fresh, reused):
        assert sorted(a.rows()) == sorted(b.rows())
