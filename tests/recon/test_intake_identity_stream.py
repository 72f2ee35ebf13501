"""A bank file's items (its statements, what each says) come out of `identity.items` the
same however its lines are sliced: the streamed form (each slice's texts sorted into a
run on disk, the runs merged, a statement's rows a range) equals the definition applied to
the whole file at once, on every real statement of the corpus, on a generated world's
statements, and on statements of random entries sliced at random."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline.recon.intake import identity
from clearline.recon.intake.model import ParseError
from clearline.recon.intake.parse import parse_bytes, parse_path
from clearline.recon.intake.reading import scan
from clearline.recon.matching.copies import STATEMENT_KEY
from tests.recon.test_intake_bank_stream import CORPUS, SAMPLES, _bai2, _mt940


def defined(parsed) -> list[tuple]:
    """The items by their definition, the whole file at once: per statement (account, id,
    sequence), a SHA-256 over its lines' texts sorted, an empty text, and its own figures
    sorted; called by its name and day, or by its content when it has no id."""
    lines, statements = parsed.lines, parsed.statements
    texts, rows = identity._texts(lines), defaultdict(list)
    for i, key in enumerate(lines.select(STATEMENT_KEY).iter_rows()):
        rows[key].append(i)
    stated, starts, days = defaultdict(list), {}, {}
    day = statements.select(pl.coalesce("closing_date", "opening_date").cast(pl.String).fill_null("")).to_series()
    for key, text, no, on in zip(
        statements.select(STATEMENT_KEY).iter_rows(), identity._texts(statements), statements["line_no"], day
    ):
        stated[key].append(text)
        starts[key], days[key] = min(starts.get(key, no), no), min(days.get(key, on), on)
        rows.setdefault(key, [])
    out = []
    for key, own in rows.items():
        said = "\n".join(sorted(texts[i] for i in own) + [""] + sorted(stated[key]))
        said = hashlib.sha256(said.encode()).hexdigest()
        named = f"statement|{key[0]}|{key[1]}|{key[2] or ''}|{days.get(key, '')}"
        start = min((lines["line_no"][i] for i in own), default=starts.get(key, 0))
        out.append((named if key[1] else f"content|{key[0]}|{said}", said, start, tuple(own), key))
    return sorted(out, key=lambda item: item[2])


def streamed(parsed) -> list[tuple]:
    return [(i.identity, i.fingerprint, i.line_no, tuple(i.rows), i.statement) for i in identity.items(parsed)]


@pytest.fixture
def small_slices(monkeypatch):
    monkeypatch.setattr(identity, "SLICE_ROWS", 3)  # many runs to merge, statements across slices
    monkeypatch.setattr(identity, "_RUN_GROUP", 2)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_a_real_statements_items_streamed_are_its_items_by_definition(sample: Path, small_slices) -> None:
    try:
        parsed = parse_path(sample, scan(sample).streams)
    except ParseError:
        pytest.skip("refused as a file: no items")
    assert streamed(parsed) == defined(parsed)


def test_a_worlds_statements_items_streamed_are_their_items_by_definition(small_world, small_slices) -> None:
    world, _ = small_world
    files = sorted((world / "bank").glob("*/*"))
    assert {f.suffix for f in files} == {".bai", ".xml", ".sta"}
    for path in files:
        parsed = parse_path(path, scan(path).streams)
        assert streamed(parsed) == defined(parsed), path


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from([_mt940, _bai2]),
    st.integers(0, 60),
    st.integers(1, 9),
    st.randoms(use_true_random=False),
)
def test_random_entries_in_any_order_and_slicing_give_the_defined_items(write, n, slice_rows, rng) -> None:
    text = write(n).splitlines(keepends=True)
    body = [i for i, line in enumerate(text) if line.startswith((":61:", "16,"))]
    if write is _mt940:  # entries with their :86: line, shuffled: the fingerprint ignores order
        entries = [text[i] + text[i + 1] for i in body]
        rng.shuffle(entries)
        text = text[: body[0]] + entries + text[body[-1] + 2 :] if body else text
    data = "".join(text).encode()
    parsed = parse_bytes(data, "statement.sta" if write is _mt940 else "statement.bai")
    saved = identity.SLICE_ROWS, identity._RUN_GROUP
    identity.SLICE_ROWS, identity._RUN_GROUP = slice_rows, max(1, slice_rows // 2)
    try:
        assert streamed(parsed) == defined(parsed)
    finally:
        identity.SLICE_ROWS, identity._RUN_GROUP = saved


def _peak(work) -> tuple[object, int]:
    tracemalloc.start()
    try:
        return work(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_statement_of_many_entries_costs_a_slice_not_the_file(tmp_path: Path) -> None:
    """Fingerprinting a 40,000-entry statement from its spill holds a slice's texts and the
    runs' heads, a fraction of what holding its lines and texts at once costs (the
    definition above, which is how items were made before)."""
    warm = tmp_path / "warm.sta"  # what the first call loads (modules, pools) is not the file's cost
    warm.write_text(_mt940(10))
    identity.items(parse_path(warm, True, spill=tmp_path / "warm.parquet"))
    path = tmp_path / "big.sta"
    path.write_text(_mt940(40_000))
    parsed = parse_path(path, scan(path).streams, chunk_rows=5_000, spill=tmp_path / "big.parquet")
    (item,), streamed_peak = _peak(lambda: identity.items(parsed))
    (whole,), whole_peak = _peak(lambda: defined(parsed))
    assert (item.fingerprint, len(item.rows)) == (whole[1], 40_000)
    assert streamed_peak < whole_peak / 3, (streamed_peak, whole_peak)
