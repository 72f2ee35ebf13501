"""Hostile and careless files against intake: it always gives a verdict, never a crash.

Hypothesis takes good files (one per format from the world's writers, and the real public
statements of tests/data/bank_statements) and breaks them the ways files arrive broken or
are made to: cut short anywhere, bytes inserted or overwritten, NULs, other encodings
(UTF-16, UTF-32, Latin-1), a DOCTYPE with external entities, a line of megabytes. Whatever
comes, `Intake.ingest` names one outcome for the file: accepted (its lines stored), or
quarantined (kept byte for byte, with a reason, and nothing of it stored). A parser that
fails on its own (the catch-all "the parser failed") is a bug this suite exists to find.

What a sender may do without changing what a file says (CRLF or LF, a byte-order mark,
trailing blank lines) changes nothing of its verdict or its lines.
"""

from __future__ import annotations

import codecs
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline.recon.intake.ingest import Intake
from clearline.recon.intake.store import read_lines
from tests import REPO_ROOT
from tests.recon.test_intake_quarantine import good  # noqa: F401  (the fixture: one good file per format)
from tests.recon.test_intake_quarantine import settings as intake_settings

CORPUS = sorted(
    p
    for p in (REPO_ROOT / "tests/data/bank_statements").rglob("*")
    if p.is_file() and not p.name.startswith(("LICENSE", "SOURCES"))
)
HOSTILE_DOCTYPE = b'<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd"><!ENTITY a "&xxe;&xxe;">]>\n'
VERDICTS = {"accepted", "quarantined"}


def truncate(data: bytes, at: float) -> bytes:
    return data[: int(len(data) * at)]


def insert(data: bytes, at: float, junk: bytes) -> bytes:
    i = int(len(data) * at)
    return data[:i] + junk + data[i:]


def overwrite(data: bytes, at: float, junk: bytes) -> bytes:
    i = int(len(data) * at)
    return data[:i] + junk + data[i + len(junk) :]


def reencode(data: bytes, codec: str) -> bytes:
    return data.decode("utf-8", errors="replace").encode(codec, errors="replace")


def with_doctype(data: bytes) -> bytes:
    """After an XML declaration if there is one, else in front."""
    end = data.find(b"?>")
    return data[: end + 2] + b"\n" + HOSTILE_DOCTYPE + data[end + 2 :] if end >= 0 else HOSTILE_DOCTYPE + data


def giant_line(data: bytes, at: float) -> bytes:
    return insert(data, at, b"\n" + b"A" * 3_000_000 + b"\n")


fractions = st.floats(0.0, 1.0)
junk = st.binary(min_size=1, max_size=64)
hostile = st.one_of(
    st.builds(lambda at: ("truncated", lambda d: truncate(d, at)), fractions),
    st.builds(lambda at, j: ("bytes inserted", lambda d: insert(d, at, j)), fractions, junk),
    st.builds(lambda at, j: ("bytes overwritten", lambda d: overwrite(d, at, j)), fractions, junk),
    st.builds(lambda at: ("a NUL", lambda d: overwrite(d, at, b"\x00")), fractions),
    st.builds(
        lambda codec: (f"re-encoded {codec}", lambda d: reencode(d, codec)),
        st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"]),
    ),
    st.just(("a DOCTYPE with external entities", with_doctype)),
    st.builds(lambda at: ("a 3 MB line", lambda d: giant_line(d, at)), fractions),
    st.builds(lambda b: ("random bytes", lambda d: b), st.binary(min_size=0, max_size=512)),
)


def ingest(data: bytes, name: str):
    """One file through a fresh intake; (outcome, lines stored, the file's path)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        state = Path(tmp) / "state"
        (outcome,) = Intake(intake_settings(state)).ingest([path])
        stored = read_lines(state, "processor").height + read_lines(state, "bank").height
        kept = Path(outcome.kept_as).read_bytes() if outcome.kept_as else None
    return outcome, stored, kept


def sources(good) -> list[Path]:  # noqa: F811
    return [*good.values(), *CORPUS]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), breaking=hostile)
def test_any_broken_file_gets_a_verdict_and_nothing_half(good, data, breaking) -> None:  # noqa: F811
    source = data.draw(st.sampled_from(sources(good)), label="source")
    how, breaks = breaking
    bad = breaks(source.read_bytes())
    outcome, stored, kept = ingest(bad, source.name)
    assert outcome.status in VERDICTS, (how, source.name, outcome)
    assert not (outcome.reason or "").startswith("the parser failed"), (how, source.name, outcome.reason)
    if outcome.status == "quarantined":
        assert outcome.reason and stored == 0, (how, source.name, outcome)
        assert kept == bad, "a quarantined file is kept byte for byte"
    else:
        assert stored == outcome.lines, (how, source.name, outcome)
    if how == "a DOCTYPE with external entities" and source.suffix == ".xml":
        assert outcome.status == "quarantined" and "DOCTYPE" in outcome.reason, outcome


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def bom(data: bytes) -> bytes:
    return data if data.startswith(codecs.BOM_UTF8) else codecs.BOM_UTF8 + data


def blank_lines(data: bytes) -> bytes:
    return data + b"\r\n\r\n\n"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), changes=st.lists(st.sampled_from([crlf, lf, bom, blank_lines]), min_size=1, max_size=3))
def test_what_a_sender_may_change_changes_nothing(good, data, changes) -> None:  # noqa: F811
    source = data.draw(st.sampled_from(sources(good)), label="source")
    original, _, _ = ingest(source.read_bytes(), source.name)
    changed = source.read_bytes()
    for change in changes:
        changed = change(changed)
    outcome, _, _ = ingest(changed, source.name)
    assert (outcome.status, outcome.lines) == (original.status, original.lines), (
        [c.__name__ for c in changes],
        source.name,
        original,
        outcome,
    )


@pytest.mark.parametrize("codec", ["utf-16", "utf-32"])
def test_a_statement_in_utf16_or_utf32_is_refused_by_name_not_by_crash(good, codec) -> None:  # noqa: F811
    outcome, stored, _ = ingest(reencode(good["mt940"].read_bytes(), codec), "statement.sta")
    assert outcome.status == "quarantined" and stored == 0, outcome
