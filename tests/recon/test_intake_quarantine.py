"""Bad files are quarantined whole, each with a reason naming the rule and the line.

Every kind of bad file the issue names (truncated, wrong columns, bad encoding, broken
control totals, unknown currency, duplicated lines, empty), made from good generated
files, for processor layouts and each bank format; all of them ingested in one call (one
GX run per format) and judged one by one. Plus: good files are stored, the same file
twice is a no-op, and nothing from a bad file reaches the store.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from clearline.pipelines.world.bank_files import write_bank_statements
from clearline.pipelines.world.settlement_files import write_settlement_reports
from clearline.recon.intake.ingest import Intake, IntakeSettings
from clearline.recon.intake.store import read_lines
from tests.pipelines.test_bank_files import ACCOUNTS, OPENING, world_bank_lines
from tests.pipelines.test_settlement_files import world_lines


def settings(state: Path) -> IntakeSettings:
    return IntakeSettings(
        state, "unused-without-producer", poll_seconds=0.1, settle_seconds=0, delivery_timeout_seconds=10
    )


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """One good file per format, from the world's writers."""
    out = tmp_path_factory.mktemp("good")
    paths = write_settlement_reports(world_lines(), out) + write_bank_statements(
        world_bank_lines(), OPENING, ACCOUNTS, out
    )
    first = {}
    for p in paths:
        fmt = {"adyen": "adyen", "stripe": "stripe", "checkoutcom": "checkoutcom"}.get(p.parent.name) or {
            ".bai": "bai2",
            ".xml": "camt053",
            ".sta": "mt940",
        }[p.suffix]
        first.setdefault(fmt, p)
    return first


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _nth(lines: list[str], prefix: str, n: int = 0) -> int:
    return [i for i, line in enumerate(lines) if line.lstrip().startswith(prefix)][n]


def _adyen_payout_changed(p: Path) -> str:
    lines = _lines(p)
    i = len(lines) - 1  # the MerchantPayout row is last
    assert ",MerchantPayout," in lines[i]
    lines[i] = re.sub(r",(\d+)\.(\d\d),", lambda m: f",{int(m.group(1)) + 1}.{m.group(2)},", lines[i], count=1)
    return "".join(lines)


def _with_doctype(p: Path, declarations: str, use: str) -> str:
    """The camt.053 with a DOCTYPE after its XML declaration, and `use` in its first Ustrd."""
    text = p.read_text()
    end = text.index("?>") + 2
    text = f"{text[:end]}\n<!DOCTYPE Document [{declarations}]>{text[end:]}"
    return text.replace("<Ustrd>", f"<Ustrd>{use}", 1)


def _duplicate(lines: list[str], i: int, count: int = 1) -> str:
    return "".join(lines[: i + count] + lines[i : i + count] + lines[i + count :])


CONTROLS = "every control total the file declares equals the one recomputed"

# case -> (source format, how to break it, what the reason must say, the line it must name)
CASES = {
    "adyen-truncated": (
        "adyen",
        lambda p: p.read_text()[: p.read_text().index("\n", 200) + 40],
        "truncated or shifted row",
        2,
    ),
    "adyen-wrong-columns": (
        "adyen",
        lambda p: p.read_text().replace("Merchant Reference,", "Merchant Ref,", 1),
        "missing ['Merchant Reference'], unexpected ['Merchant Ref'",  # and any column the layout does not use
        1,
    ),
    "adyen-bad-encoding": (
        "adyen",
        lambda p: p.read_bytes().replace(b"ClearlineCOM", b"Clearline\xe9COM", 3),
        "not valid UTF-8: byte 0xe9",
        2,
    ),
    "adyen-broken-control": ("adyen", _adyen_payout_changed, "control total", None),
    "adyen-unknown-currency": (
        "adyen",
        lambda p: "".join(line.replace(",USD,", ",XYZ,") if i == 2 else line for i, line in enumerate(_lines(p))),
        "ISO 4217",
        3,
    ),
    "adyen-duplicated-line": ("adyen", lambda p: _duplicate(_lines(p), 1), "appears twice", 2),
    "adyen-empty": ("adyen", lambda p: b"", "the file is empty", 1),
    "stripe-unknown-currency": (
        "stripe",
        lambda p: re.sub(",usd,", ",usx,", p.read_text(), count=1, flags=re.IGNORECASE),  # usd or USD, as written
        "ISO 4217",
        2,
    ),
    "stripe-duplicated-line": ("stripe", lambda p: _duplicate(_lines(p), 2), "appears twice", 3),
    "checkout-duplicated-action": ("checkoutcom", lambda p: _duplicate(_lines(p), 1, 2), "appears twice", 2),
    "bai2-truncated": ("bai2", lambda p: "".join(_lines(p)[:-2]), "truncated", None),
    "bai2-wrong-columns": (
        "bai2",
        lambda p: "".join(
            re.sub(r"^16,(\d+),(\d+),", r"16,\1,", line) if line.startswith("16,") else line for line in _lines(p)
        ),
        "49 account",  # the shifted fields break the totals, and each funds type is named as not BAI2's
        None,
    ),
    # bytes that are not UTF-8 are ISO-8859-1 text in a BAI2 or MT940 file (see test_intake_bank.py);
    # a NUL byte is not text
    "bai2-binary": ("bai2", lambda p: p.read_bytes().replace(b"88,", b"88,\x00", 1), "NUL byte", 5),
    "bai2-broken-control": (
        "bai2",
        lambda p: re.sub(r"^49,(\d+),", lambda m: f"49,{int(m.group(1)) + 7},", p.read_text(), flags=re.M),
        "49 account",
        None,
    ),
    "bai2-unknown-currency": ("bai2", lambda p: p.read_text().replace(",USD,", ",XYZ,"), "ISO 4217", None),
    # two identical lines in one statement are ordinary; a copied entry is refused by the totals it breaks
    "bai2-duplicated-line": ("bai2", lambda p: _duplicate(_lines(p), _nth(_lines(p), "16,"), 2), CONTROLS, None),
    "bai2-empty": ("bai2", lambda p: "\n\n", "the file is empty", 1),
    "camt-truncated": ("camt053", lambda p: p.read_text()[: len(p.read_text()) // 2], "not well-formed XML", None),
    "camt-bad-encoding": ("camt053", lambda p: p.read_bytes().replace(b"BOOK", b"B\xc3OK", 1), "not valid UTF-8", None),
    "camt-broken-control": (
        "camt053",
        lambda p: re.sub(
            r"<NbOfNtries>(\d+)</NbOfNtries>",
            lambda m: f"<NbOfNtries>{int(m.group(1)) + 1}</NbOfNtries>",
            p.read_text(),
            count=1,
        ),
        "NbOfNtries",
        None,
    ),
    "camt-unknown-currency": ("camt053", lambda p: p.read_text().replace('Ccy="EUR"', 'Ccy="EUX"'), "ISO 4217", None),
    "camt-duplicated-line": (
        "camt053",
        lambda p: _duplicate(
            _lines(p), _nth(_lines(p), "<Ntry>"), _nth(_lines(p), "</Ntry>") - _nth(_lines(p), "<Ntry>") + 1
        ),
        CONTROLS,
        None,
    ),
    "camt-empty": ("camt053", lambda p: "   ", "the file is empty", 1),
    # hostile XML (issue 15): refused as hostile, naming what the DOCTYPE declares; never resolved or dropped
    "camt-external-entity": (
        "camt053",
        lambda p: _with_doctype(p, '<!ENTITY xxe SYSTEM "file:///etc/passwd">', "&xxe;"),
        "hostile XML refused: a DOCTYPE; declares external entity 'xxe' ('file:///etc/passwd')",
        1,
    ),
    "camt-entity-expansion": (
        "camt053",
        lambda p: _with_doctype(p, '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">', "&b;"),
        "declares entity 'a'",
        1,
    ),
    "camt-doctype-only": ("camt053", lambda p: _with_doctype(p, "", ""), "ISO 20022 messages carry no DOCTYPE", 1),
    "camt-long-entity-list": (  # 10,000 characters of declarations push the namespace out of detection's view
        "camt053",
        lambda p: _with_doctype(p, "".join(f'<!ENTITY e{i} "{"x" * 40}">' for i in range(200)), "&e1;"),
        "hostile XML refused",
        1,
    ),
    "mt940-truncated": ("mt940", lambda p: "".join(_lines(p)[:-1]), "no closing balance", None),
    "mt940-binary": ("mt940", lambda p: p.read_bytes().replace(b"/REMI/", b"/REMI/\x00", 1), "NUL byte", 6),
    "mt940-broken-control": (
        "mt940",
        lambda p: re.sub(
            r":62F:C(\d{6})GBP(\d+),", lambda m: f":62F:C{m.group(1)}GBP{int(m.group(2)) + 1},", p.read_text()
        ),
        "closing balance",
        None,
    ),
    "mt940-unknown-currency": ("mt940", lambda p: p.read_text().replace("GBP", "GBX"), "ISO 4217", None),
    "mt940-duplicated-line": (
        "mt940",
        lambda p: _duplicate(_lines(p), _nth(_lines(p), ":61:"), 2),
        CONTROLS,
        None,
    ),
    "mt940-empty": ("mt940", lambda p: "\r\n \r\n", "the file is empty", 1),  # each empty file differs: no duplicates
}


@pytest.fixture(scope="module")
def run(good, tmp_path_factory) -> dict:
    folder, state = tmp_path_factory.mktemp("bad"), tmp_path_factory.mktemp("state")
    paths = []
    for case, (fmt, breaks, _, _) in CASES.items():
        data = breaks(good[fmt])
        path = folder / f"{case}{good[fmt].suffix}"
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        paths.append(path)
    outcomes = Intake(settings(state)).ingest(paths)
    return {"state": state, "outcomes": dict(zip(CASES, outcomes)), "folder": folder}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_is_quarantined_with_a_clear_reason(run, case) -> None:
    _, _, says, line = CASES[case]
    outcome = run["outcomes"][case]
    assert outcome.status == "quarantined", outcome
    assert says in outcome.reason
    kept = Path(outcome.kept_as)
    assert kept.parent == run["state"] / "quarantine"
    assert kept.read_bytes() == (run["folder"] / kept.name).read_bytes(), "kept whole, byte for byte"
    report = json.loads(kept.with_name(kept.name + ".report.json").read_text())
    text = kept.with_name(kept.name + ".report.txt").read_text()
    assert report["sha256"] == outcome.sha256 and report["outcome"] == "quarantined"
    assert says in text or any(says in f["rule"] for f in report["failures"]) or says in report["reason"]
    if line is not None:
        named = (
            report["parse_error"]["line"]
            if report["parse_error"]
            else [row["line_no"] for f in report["failures"] for row in f["rows"]]
        )
        assert line == named or (isinstance(named, list) and line in named), (line, named)
    if report["failures"]:
        assert "line " in text, "the text report names the rows"


def test_nothing_from_a_bad_file_reaches_the_store(run) -> None:
    assert read_lines(run["state"], "processor").height == 0
    assert read_lines(run["state"], "bank").height == 0


def test_each_rule_is_reported_once_with_every_row(run) -> None:
    kept = Path(run["outcomes"]["bai2-duplicated-line"].kept_as)
    report = json.loads(kept.with_name(kept.name + ".report.json").read_text())
    rules = [f["rule"] for f in report["failures"]]
    assert len(rules) == len(set(rules))
    assert not any("appears twice" in rule for rule in rules), "identical bank lines are not a fault in themselves"
    # the copied entry breaks every total above it: each is named once, with its trailer line
    controls = next(f for f in report["failures"] if CONTROLS in f["rule"])
    named = {re.sub(r"account \S+ ", "account ", row["control"]) for row in controls["rows"]}
    assert {"49 account control total", "98 group control total", "99 file control total"} <= named
    assert controls["rows_count"] == len(controls["rows"])


def test_good_files_are_stored_and_the_same_file_twice_is_a_no_op(good, tmp_path) -> None:
    intake = Intake(settings(tmp_path / "state"))
    paths = list(good.values())
    first = intake.ingest(paths)
    assert [o.status for o in first] == ["accepted"] * len(paths), [o.reason for o in first]
    stored = pl.concat(
        [
            read_lines(tmp_path / "state", "processor").select("source_file", "line_no"),
            read_lines(tmp_path / "state", "bank").select("source_file", "line_no"),
        ]
    )
    assert stored.height == sum(o.lines for o in first) > 0
    copy = tmp_path / "renamed.csv"
    copy.write_bytes(paths[0].read_bytes())
    again = intake.ingest([*paths, copy])
    assert [o.status for o in again] == ["received_again"] * (len(paths) + 1)
    assert all("already accepted" in o.reason and "nothing done" in o.reason for o in again)
    assert (
        read_lines(tmp_path / "state", "processor").height + read_lines(tmp_path / "state", "bank").height
        == stored.height
    )
    assert len(intake.registry.all()) == len(paths)


def test_a_file_twice_in_one_call_is_ingested_once(good, tmp_path) -> None:
    copy = tmp_path / "copy.bai"
    copy.write_bytes(good["bai2"].read_bytes())
    outcomes = Intake(settings(tmp_path / "state")).ingest([good["bai2"], copy])
    assert [o.status for o in outcomes] == ["accepted", "received_again"]
    assert "in this run" in outcomes[1].reason


def test_a_quarantined_file_sent_again_is_a_no_op_that_says_so(run) -> None:
    path = run["folder"] / "adyen-empty.csv"
    (outcome,) = Intake(settings(run["state"])).ingest([path])
    assert outcome.status == "received_again" and "already quarantined" in outcome.reason


def test_detection_is_by_content_not_by_name(good, tmp_path) -> None:
    from clearline.recon.intake.parse import parse_file

    for fmt, path in good.items():
        disguised = tmp_path / f"{fmt}-statement.txt"
        disguised.write_bytes(path.read_bytes())
        assert parse_file(disguised).format == fmt
