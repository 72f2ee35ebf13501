"""Balance continuity and the bank tied to the ledger, on statements built here.

A chain of statements that each open at the previous closing gives no variance; taking
one out of the middle is exactly one `statement_gap` naming both neighbours; a statement
that opens elsewhere is a `balance_break`. A closing balance that is not the ledger's
bank cash that day is a `bank_balance_mismatch` that names its amount and the open
variances behind it, or the part nothing explains."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline import config, events
from clearline.events import AdjustmentLeg, Money
from clearline.pipelines.connectors.adjustments import Approval, adjustment_event
from clearline.pipelines.world.bank_files import daily_statements, write_statements
from clearline.recon import AdjustmentProposal
from clearline.recon.arrivals import line_frames, line_row
from clearline.recon.intake.parse import parse_file
from clearline.recon.intake.publish import messages
from clearline.recon.intake.store import read_lines, read_statements, write_lines
from clearline.recon.lines import BankLine, SettlementLine, Statement, frame
from clearline.recon.matching import adjusted
from clearline.recon.matching import expectations as ex
from clearline.recon.matching.continuity import BOOKS_SCHEMA, bank_books
from clearline.recon.matching.reconcile import Inputs, reconcile
from clearline.recon.matching.rules import Tolerances
from clearline.recon.matching.variance import variance_id

TOL = Tolerances.from_config(
    {
        "amount_tolerance_minor": 1,
        "date_window_days": 1,
        "bank_date_window_days": 3,
        "deadline_days": {"processor_line": 8, "ledger_record": 2, "bank_line": 5, "unexplained_bank_line": 0},
        "unknown_payout_arrival_days": 3,
    }
)
MONDAY = date(2026, 3, 2)
LATER = datetime(2026, 9, 1, tzinfo=timezone.utc)
ACCOUNT = "DE89370400440532013000"
OPENING = 1_000_000


def workdays(n: int, start: date = MONDAY) -> list[date]:
    days, day = [], start
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def statements(nets: list[int], numbered: bool = True, opening: int = OPENING, fmt: str = "camt053") -> list[Statement]:
    """One statement per working day, each opening at the previous closing."""
    out, balance = [], opening
    for i, (day, net) in enumerate(zip(workdays(len(nets)), nets), 1):
        out.append(
            Statement(
                format=fmt,
                account=ACCOUNT,
                statement_id=f"{day:%Y%m%d}-{i:05d}" if numbered else day.isoformat(),
                sequence=str(i) if numbered else None,
                opening=Money(balance, "EUR"),
                opening_date=day,
                closing=Money(balance + net, "EUR"),
                closing_date=day,
                entries=1,
                source_file=f"stmt_{i:03d}.xml",
                line_no=3,
            )
        )
        balance += net
    return out


def run(
    stmts: list[Statement], movements=(), bank=(), books: pl.DataFrame | None = None, entries: tuple = ()
) -> pl.DataFrame:
    """The open variances of one pass; `entries`: the adjusting entries posted (events)."""
    _, moves = ex.frames(list(movements))
    settle, _ = ex.frames([])
    inputs = Inputs(
        settle,
        moves,
        frame([], SettlementLine),
        frame(list(bank), BankLine),
        statements=frame(stmts, Statement),
        bank_books=books if books is not None else pl.DataFrame(schema=BOOKS_SCHEMA),
        adjustments=adjusted.frame([adjusted.adjustment(e) for e in entries]),
    )
    return reconcile(inputs, TOL, LATER).variances


def shifted(s: Statement, delta: int) -> Statement:
    """The statement with both its balances moved (it still adds up on its own)."""
    return replace(s, opening=Money(s.opening.minor + delta, "EUR"), closing=Money(s.closing.minor + delta, "EUR"))


def where(s: Statement) -> str:
    return f"{s.source_file}:{s.line_no}"


nets = st.lists(st.integers(-50_000, 50_000), min_size=3, max_size=12)


@settings(max_examples=40, deadline=None)
@given(nets=nets, numbered=st.booleans())
def test_a_consistent_chain_gives_no_variance(nets: list[int], numbered: bool) -> None:
    assert run(statements(nets, numbered)).is_empty()


@settings(max_examples=40, deadline=None)
@given(nets=nets, pick=st.integers(1, 10), data=st.data())
def test_removing_any_middle_statement_is_one_gap_naming_both_neighbours(nets, pick, data) -> None:
    chain = statements(nets)
    gone = 1 + pick % (len(chain) - 2)
    kept = chain[:gone] + chain[gone + 1 :]
    shuffled = data.draw(st.permutations(kept))  # the order statements arrive in does not matter
    found = run(list(shuffled))
    assert found["category"].to_list() == ["statement_gap"]
    row = found.row(0, named=True)
    assert row["evidence"] == [where(chain[gone - 1]), where(chain[gone + 1])]
    assert row["amount_minor"] == abs(nets[gone])
    assert row["since"] == chain[gone + 1].closing_date


@settings(max_examples=30, deadline=None)
@given(nets=nets.filter(lambda n: all(n)), pick=st.integers(1, 10))
def test_without_sequence_numbers_a_missing_working_day_is_a_gap(nets, pick) -> None:
    chain = statements(nets, numbered=False, fmt="bai2")
    gone = 1 + pick % (len(chain) - 2)
    found = run(chain[:gone] + chain[gone + 1 :])
    assert found["category"].to_list() == ["statement_gap"]
    assert found["evidence"].to_list() == [[where(chain[gone - 1]), where(chain[gone + 1])]]


def test_a_statement_that_opens_elsewhere_is_a_break_and_the_next_one_too() -> None:
    chain = statements([100, 200, 300, 400])
    chain[2] = shifted(chain[2], 777)
    found = run(chain).sort("since")
    assert found["category"].to_list() == ["balance_break", "balance_break"]
    assert found["amount_minor"].to_list() == [777, 777]
    assert found["evidence"].to_list() == [[where(chain[1]), where(chain[2])], [where(chain[2]), where(chain[3])]]
    assert found["expected"][0].startswith("10003.00 EUR closing statement 20260303-00002 (2) of 2026-03-03")
    assert found["actual"][0] == "10010.77 EUR opening statement 20260304-00003 (3) of 2026-03-04"


def test_the_same_statement_twice_counts_once() -> None:
    chain = statements([100, -50, 25])
    again = replace(chain[1], source_file="copy.xml")
    assert run([*chain, again]).is_empty()


# ------------------------------------------------------------------ the ledger's bank cash


BOOKS = bank_books(
    {"opened_on": date(2025, 12, 31), "bank_accounts": {"EUR": {"account": ACCOUNT, "opening_balance_minor": OPENING}}}
)


def movement(ref: str, minor: int, day: date, kind: str = "processor_payout") -> ex.ExpectedBankMovement:
    return ex.ExpectedBankMovement(f"evt_{ref}", kind, "adyen", ref, Money(minor, "EUR"), day, None)


def line(ref: str, minor: int, day: date, n: int) -> BankLine:
    return BankLine(
        "camt053", ACCOUNT, f"BR{n:04d}", ref, "PAYOUT", Money(minor, "EUR"), day, day, f"stmt_{n:03d}.xml", 10 + n
    )


def booked(days: list[date], lines: list[BankLine]) -> list[Statement]:
    """Statements for `days` whose balances follow `lines`."""
    return statements([sum(x.amount.minor for x in lines if x.booking_date == d) for d in days])


def test_a_bank_that_agrees_with_the_ledger_gives_no_variance() -> None:
    days = workdays(3)
    moves = [movement(f"po_{i}", 10_000 * (i + 1), d) for i, d in enumerate(days)]
    bank = [line(f"po_{i}", 10_000 * (i + 1), d, i) for i, d in enumerate(days)]
    assert run(booked(days, bank), moves, bank, BOOKS).is_empty()


def test_an_unexplained_bank_line_is_a_mismatch_it_explains_whole() -> None:
    days = workdays(3)
    moves = [movement("po_0", 10_000, days[0])]
    bank = [line("po_0", 10_000, days[0], 0), line("wire_9", 4_321, days[1], 1)]
    found = run(booked(days, bank), moves, bank, BOOKS)
    assert sorted(found["category"]) == ["bank_balance_mismatch", "unexplained_bank_line"]
    mismatch = found.filter(pl.col("category") == "bank_balance_mismatch").row(0, named=True)
    unexplained = found.filter(pl.col("category") == "unexplained_bank_line")["variance_id"].item()
    # one variance where the difference arose (day 2), none on day 3 where it only persists
    assert (mismatch["since"], mismatch["amount_minor"], mismatch["currency"]) == (days[1], 4_321, "EUR")
    assert mismatch["reference"] == f"{ACCOUNT} {days[1]}"
    assert mismatch["expected"] == "ledger bank cash 10100.00 EUR"
    assert (
        mismatch["actual"] == "bank 10143.21 EUR (difference 43.21 EUR; all 43.21 EUR explained by 1 open variance(s): "
        "unexplained_bank_line wire_9 43.21 EUR)"
    )
    assert mismatch["evidence"] == ["stmt_002.xml:3", unexplained]


def test_a_payout_missing_from_the_bank_and_a_break_explain_a_difference_between_them() -> None:
    days = workdays(4)
    moves = [movement("po_0", 10_000, days[0]), movement("rpy_1", 20_000, days[1], "buyer_repayment")]
    bank = [line("po_0", 10_000, days[0], 0)]
    chain = booked(days, bank)
    # the bank's balance jumps by 5,000 between days 3 and 4 with no entry to show it
    chain[3] = shifted(chain[3], 5_000)
    found = run(chain, moves, bank, BOOKS).sort("since", "category")
    missing = found.filter(pl.col("category") == "payout_not_in_bank")["variance_id"].item()
    brk = found.filter(pl.col("category") == "balance_break")["variance_id"].item()
    mismatches = found.filter(pl.col("category") == "bank_balance_mismatch")
    assert mismatches["since"].to_list() == [days[1], days[3]]
    assert mismatches["amount_minor"].to_list() == [20_000, 15_000]
    assert mismatches["evidence"].to_list() == [
        ["stmt_002.xml:3", missing],
        ["stmt_004.xml:3", *sorted([missing, brk])],
    ]
    assert mismatches["actual"][1].endswith(
        f"(difference -150.00 EUR; all -150.00 EUR explained by 2 open variance(s): "
        f"balance_break {ACCOUNT} {days[3]} 50.00 EUR, payout_not_in_bank rpy_1 -200.00 EUR)"
    )


def test_a_break_is_named_as_open_while_the_first_entry_for_it_is_not_the_platforms() -> None:
    """A statement's break belongs to no merchant: a tenant's entry for it closes nothing,
    and the first approved entry is the one that counts (`adjusted.close`). The balance
    names the break as open as long as that holds, and sums it as worked once the
    platform's own entry is the first."""
    days = workdays(4)
    moves = [movement("po_0", 10_000, days[0])]
    bank = [line("po_0", 10_000, days[0], 0)]
    chain = booked(days, bank)
    chain[3] = shifted(chain[3], 5_000)
    brk = run(chain, moves, bank, BOOKS).filter(pl.col("category") == "balance_break").row(0, named=True)
    amount = Money(5_000, "EUR")
    legs = (AdjustmentLeg("suspense", "debit", amount), AdjustmentLeg("credit_loss_expense", "credit", amount))

    def entry(merchant: str | None, tenant: str, hour: int) -> events.Event:
        proposal = AdjustmentProposal(brk["variance_id"], merchant, None, "EUR", "manual", legs, "break")
        approval = Approval(tenant, "alice", "bob", "our_error", "break")
        return adjustment_event(
            proposal, approval, datetime.combine(LATER, datetime.min.time(), timezone.utc) + timedelta(hours=hour)
        )

    platform = entry(None, "platform", 10)
    for tenant_hour, closed in ((9, False), (11, True)):
        entries = (entry("m_00001", "reseller_1", tenant_hour), platform)
        found = run(chain, moves, bank, BOOKS, entries)
        mismatch = found.filter((pl.col("category") == "bank_balance_mismatch") & (pl.col("since") == days[3]))
        assert (brk["variance_id"] in found["variance_id"]) is not closed
        assert ("explained by 1 open variance(s): balance_break" in mismatch["actual"].item()) is not closed
        assert ("50.00 EUR in variances closed by adjusting entries" in mismatch["actual"].item()) is closed


def parked(variance: dict, day: date, side: str = "debit") -> events.Event:
    """The entry a person writes for a bank line nobody expected: the money into (debit) or
    out of the bank's cash, against suspense until its cause is known."""
    amount = Money(variance["amount_minor"], "EUR")
    other = "credit" if side == "debit" else "debit"
    legs = (AdjustmentLeg("bank_cash:EUR", side, amount), AdjustmentLeg("suspense", other, amount))
    proposal = AdjustmentProposal(variance["variance_id"], None, None, "EUR", "manual", legs, "parked")
    approval = Approval("platform", "alice", "bob", "our_error", "parked until its cause is known")
    return adjustment_event(proposal, approval, datetime.combine(day, datetime.min.time(), timezone.utc))


def test_a_bank_line_booked_by_an_adjusting_entry_is_no_longer_open_on_later_balances() -> None:
    days = workdays(5)
    moves = [movement("po_0", 10_000, days[0])]
    bank = [line("po_0", 10_000, days[0], 0), line("wire_9", 4_321, days[1], 1), line("wire_10", 500, days[4], 2)]
    chain = booked(days, bank)
    before = run(chain, moves, bank, BOOKS)
    wire_9 = before.filter(pl.col("reference") == "wire_9").row(0, named=True)
    entry = parked(wire_9, days[3])
    after = run(chain, moves, bank, BOOKS, (entry,)).sort("since")
    # the day the difference arose is still one, named as before; from the day the entry
    # put the line into the ledger's bank cash the two agree, so wire_9 is open on no later
    # balance, and the next difference (wire_10) is that line's alone
    assert after.filter(pl.col("reference") == "wire_9").is_empty()
    mismatches = after.filter(pl.col("category") == "bank_balance_mismatch")
    assert mismatches["since"].to_list() == [days[1], days[4]]
    assert mismatches["amount_minor"].to_list() == [4_321, 500]
    assert mismatches["actual"][1].endswith(
        "(difference 5.00 EUR; all 5.00 EUR explained by 1 open variance(s): unexplained_bank_line wire_10 5.00 EUR)"
    )
    # without the entry the difference on day 5 is both lines, and both are named
    old = before.filter((pl.col("category") == "bank_balance_mismatch") & (pl.col("since") == days[4]))
    assert old["amount_minor"].to_list() == [4_821]


def test_an_entry_that_moves_no_bank_cash_closes_its_variance_and_its_share_of_a_mismatch_is_summed_as_closed() -> None:
    days = workdays(3)
    bank = [line("wire_9", 4_321, days[1], 1)]
    chain = booked(days, bank)
    before = run(chain, [], bank, BOOKS)
    wire_9 = before.filter(pl.col("reference") == "wire_9").row(0, named=True)
    amount = Money(4_321, "EUR")
    legs = (AdjustmentLeg("suspense", "debit", amount), AdjustmentLeg("credit_loss_expense", "credit", amount))
    proposal = AdjustmentProposal(wire_9["variance_id"], None, None, "EUR", "manual", legs, "moved")
    entry = adjustment_event(proposal, Approval("platform", "alice", "bob", "our_error", "moved"), LATER)
    assert adjusted.adjustment(entry)["bank"] == []
    after = run(chain, [], bank, BOOKS, (entry,))
    # the same mismatch, of the same amount on the same day: the line is still not in the
    # ledger's bank cash. It no longer names wire_9 as an open variance: the break was
    # worked, and its share is summed as closed
    kept = before.filter(pl.col("reference") != "wire_9")
    assert after.drop("actual", "evidence").equals(kept.drop("actual", "evidence"))
    mismatch = after.row(0, named=True)
    assert mismatch["actual"] == (
        "bank 10043.21 EUR (difference 43.21 EUR; 43.21 EUR in variances closed by adjusting entries)"
    )
    assert mismatch["evidence"] == kept["evidence"][0].to_list()[:1]
    assert wire_9["variance_id"] in kept["evidence"][0].to_list()


def test_what_no_variance_explains_is_named() -> None:
    days = workdays(2)
    moves = [movement("po_0", 10_000, days[0])]
    bank = [line("po_0", 10_000, days[0], 0)]
    books = BOOKS.with_columns(opening_minor=pl.lit(OPENING - 250, pl.Int64))  # the ledger opened with less
    found = run(booked(days, bank), moves, bank, books)
    assert found["category"].to_list() == ["bank_balance_mismatch"]
    row = found.row(0, named=True)
    assert (row["since"], row["amount_minor"]) == (days[0], 250)
    assert row["actual"] == "bank 10100.00 EUR (difference 2.50 EUR; 2.50 EUR unexplained)"
    assert row["evidence"] == ["stmt_001.xml:3"]


def test_an_account_the_ledger_does_not_keep_is_not_tied() -> None:
    days = workdays(2)
    bank = [line("wire_1", 999, days[0], 0)]
    other = BOOKS.with_columns(account=pl.lit("GB29NWBK60161331926819"))
    found = run(booked(days, bank), [], bank, other)
    assert found["category"].to_list() == ["unexplained_bank_line"]


def test_ids_are_stable_per_account_and_day() -> None:
    days = workdays(2)
    bank = [line("wire_1", 999, days[1], 0)]
    found = run(booked(days, bank), [], bank, BOOKS)
    row = found.filter(pl.col("category") == "bank_balance_mismatch").row(0, named=True)
    assert row["variance_id"] == variance_id("bank_balance_mismatch", f"{ACCOUNT}|{days[1]}")


# ------------------------------------------------------- statements at rest and on the topic


def test_a_bank_files_statements_are_stored_beside_its_lines_and_published_after_them(tmp_path) -> None:
    accounts = config.load("platform")["bank_accounts"]
    rows = [
        {
            "account_currency": ccy,
            "line_id": f"{ccy}-{n}",
            "booking_date": day,
            "value_date": day,
            "amount_minor": 1_000 * (n + 1),
            "currency": ccy,
            "bank_reference": f"BR{ccy}{n:04d}",
            "customer_reference": f"po_{ccy}_{n}",
            "text": "PAYOUT",
            "kind": "processor_payout",
        }
        for ccy in accounts
        for n, day in enumerate(workdays(2))
    ]
    files = write_statements(daily_statements(pl.DataFrame(rows), dict.fromkeys(accounts, 0), accounts), tmp_path)
    parsed = [parse_file(path) for path in files]
    for n, file in enumerate(parsed):
        write_lines(tmp_path / "state", file, f"sha{n}")
    stored = read_statements(tmp_path / "state")
    assert stored.height == len(files) == 6
    assert stored.sort("source_file").equals(pl.concat([f.statements for f in parsed]).sort("source_file"))
    assert read_lines(tmp_path / "state", "bank").height == len(rows)  # the statements are no lines

    published = [line_row(json.loads(value)) for file in parsed for _, value in messages(file, "sha")]
    kinds = [kind for kind, _ in published]
    assert kinds == (["bank"] + ["statement"]) * len(files)  # each file: its lines, then its statement
    _, bank, statements = line_frames(published)
    assert statements.sort("source_file").equals(stored.sort("source_file"))
    assert bank.height == len(rows)


def test_a_statement_continued_over_pages_is_one_chain_and_tied_at_the_days_end() -> None:
    """MT940 pages (:28C: 5/1, 5/2) chain like statements; only the day's last page closes
    the day the ledger is compared with, whatever order the pages arrive in."""
    day = workdays(1)[0]
    moves = [movement("po_1", 5_000, day), movement("po_2", 7_000, day)]
    bank = [line("po_1", 5_000, day, 1), line("po_2", 7_000, day, 2)]
    pages = [
        Statement(
            "mt940", ACCOUNT, "CL0001", f"5/{page}", Money(opening, "EUR"), day, Money(opening + net, "EUR"), day, 1,
            f"page_{page}.sta", 1,
        )
        for page, opening, net in ((1, OPENING, 5_000), (2, OPENING + 5_000, 7_000))
    ]  # fmt: skip
    assert run(pages[::-1], moves, bank, BOOKS).is_empty()
    assert run(pages, moves[:1], bank[:1], BOOKS)["category"].to_list() == ["bank_balance_mismatch"]


@settings(max_examples=30, deadline=None)
@given(
    moves=st.lists(st.tuples(st.integers(0, 4), st.integers(-90_000, 90_000).filter(bool), st.booleans()), max_size=12),
    # lines nobody expected, in amounts no expected movement has (else they pair up by amount)
    extras=st.lists(st.tuples(st.integers(0, 4), st.integers(100_000, 200_000), st.booleans()), max_size=3),
)
def test_every_difference_the_bank_and_ledger_show_is_explained_by_the_variances_behind_it(moves, extras) -> None:
    """Movements the bank never booked and lines nobody expected, on any days: each
    mismatch names the difference at its statement exactly, and all of it is explained."""
    days = workdays(5)
    ledger, bank = [], []
    for n, (d, minor, in_bank) in enumerate(moves):
        kind = "buyer_repayment" if minor > 0 else "merchant_payout"
        ledger.append(movement(f"ref_{n}", minor, days[d], kind))
        if in_bank:
            bank.append(line(f"ref_{n}", minor, days[d], n))
    bank += [line(f"wire_{n}", m if up else -m, days[d], 100 + n) for n, (d, m, up) in enumerate(extras)]
    found = run(booked(days, bank), ledger, bank, BOOKS)
    mismatches = found.filter(pl.col("category") == "bank_balance_mismatch").sort("since")
    difference = {
        day: sum(x.amount.minor for x in bank if x.booking_date <= day)
        - sum(m.amount.minor for m in ledger if m.expected_on <= day)
        for day in days
    }
    changed = [d for i, d in enumerate(days) if difference[d] not in (difference[days[i - 1]] if i else 0, 0)]
    assert mismatches["since"].to_list() == changed
    assert mismatches["amount_minor"].to_list() == [abs(difference[d]) for d in changed]
    assert not mismatches["actual"].str.contains(r"EUR unexplained\)$").any(), mismatches["actual"].to_list()
    named = mismatches["evidence"].explode()
    named = set(named.filter(named.str.starts_with("var_")))
    assert named <= set(found["variance_id"])


def test_a_payout_booked_the_next_working_day_is_in_transit_not_unexplained() -> None:
    friday, monday = date(2026, 3, 6), date(2026, 3, 9)
    moves = [movement("rpy_1", 30_000, friday, "buyer_repayment")]
    bank = [line("rpy_1", 30_000, monday, 1)]  # within the bank's date window: no break
    stmts = statements([0, 30_000])
    stmts = [replace(s, opening_date=d, closing_date=d) for s, d in zip(stmts, (friday, monday))]
    found = run(stmts, moves, bank, BOOKS)
    assert found["category"].to_list() == ["bank_balance_mismatch"]  # on Friday; on Monday they agree
    said = "bank 10000.00 EUR (difference -300.00 EUR; -300.00 EUR in transit, booked after the day)"
    assert found["actual"].item() == said


def test_a_bank_that_numbers_afresh_each_year_under_one_statement_id_still_chains() -> None:
    """ASN Bank and others write one constant :20: and restart :28C: every year: the
    statement of the same numbers a year on is another statement, and a chain through the
    new year is no gap and no break."""
    this_year = statements([100, 200], fmt="mt940")
    next_year = [
        replace(s, opening_date=d, closing_date=d)
        for s, d in zip(
            statements([300, 400], opening=this_year[-1].closing.minor, fmt="mt940"),
            (date(2026, 12, 31), date(2027, 1, 4)),
        )
    ]
    same_ids = [
        replace(s, statement_id="0000000000", source_file=f"{n}.sta") for n, s in enumerate([*this_year, *next_year])
    ]
    assert run(same_ids).is_empty()
