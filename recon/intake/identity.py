"""What a file's items are called and what they say: how intake knows a copy it holds.

A processor report's items are its lines, each called by (processor, line id); a bank
statement's items are its statements, each called by (account, statement id, sequence:
camt.053 `Stmt/Id` with `ElctrncSeqNb`, MT940 `:20:` with `:28C:`, BAI2 file id and as-of
date; and the day it states, since many banks write one constant `:20:` and number
`:28C:` from 1 again every year). What an item says is a SHA-256 over its normalised content (every column but the
file it sat in, its line there and its file's format; a statement's lines as a multiset,
so their order is no news, with its own balances, dates and count), so the same content
is recognised whatever its bytes, line endings, encoding or file name. A bank line whose
parser gave no statement id is called by its statement's content: a copy is still
recognised, a correction is then a new statement.

Sorting a file against what is held gives three heaps: new items, items held with the
same content (nothing to do), and items held with other content (a corrected line or
statement: taken in, and the matcher names what changed, `clearline.recon.matching.copies`).
"""

from __future__ import annotations

import hashlib
import heapq
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from clearline.recon.intake.chunks import CHUNK_ROWS
from clearline.recon.intake.model import ParsedFile
from clearline.recon.matching.copies import LINE_KEY, STATEMENT_KEY, content_columns

_SEP, _NULL = "\x1f", "\x00"
SLICE_ROWS = CHUNK_ROWS  # lines whose content texts are made at once


@dataclass(frozen=True)
class Item:
    identity: str
    fingerprint: str
    line_no: int  # where it starts in its file
    rows: Sequence[int]  # its rows in the file's `lines` (a range for a statement)
    statement: tuple | None = None  # a bank statement's (account, statement id, sequence)


@dataclass(frozen=True)
class Held:
    """An item's content as intake holds it, and the file that first brought it."""

    fingerprint: str
    name: str
    line_no: int


Record = tuple[str, str, int]  # an item as the registry holds it: identity, fingerprint, first line


class Heaps(Protocol):
    """A file sorted against what intake holds, as intake uses it (`Sorted` for a bank
    file's statements, `SortedLines` for a report's lines)."""

    found: int  # items in the file
    held_rows: int  # its lines held already with the same content
    changed_rows: int  # its lines held under the same identity with other content
    held_in: set[str]  # the files that first brought what it holds already

    def any_held(self) -> bool: ...
    def any_taken(self) -> bool: ...
    def records(self) -> Iterator[Record]: ...
    def only(self, parsed: ParsedFile) -> ParsedFile: ...


@dataclass
class Sorted:
    new: list[Item] = field(default_factory=list)
    same: list[tuple[Item, Held]] = field(default_factory=list)
    changed: list[Item] = field(default_factory=list)
    found: int = 0

    def taken(self) -> list[Item]:
        """What a file brings that intake does not hold yet."""
        return self.new + self.changed

    def rows(self, items: list[Item]) -> int:
        return sum(len(i.rows) for i in items)

    @property
    def held_rows(self) -> int:
        return self.rows([item for item, _ in self.same])

    @property
    def changed_rows(self) -> int:
        return self.rows(self.changed)

    @property
    def held_in(self) -> set[str]:
        return {h.name for _, h in self.same}

    def any_held(self) -> bool:
        return bool(self.same)

    def any_taken(self) -> bool:
        return bool(self.taken())

    def records(self) -> Iterator[Record]:
        return ((i.identity, i.fingerprint, i.line_no) for i in self.taken())

    def only(self, parsed: ParsedFile) -> ParsedFile:
        return only(parsed, self.taken())


@dataclass
class SortedLines:
    """A processor report's lines sorted against what intake holds, a slice at a time: per
    line only a flag (taken or not) stays in memory; the taken lines' identities and
    fingerprints wait in a Parquet file beside the spill (`path`) for the registry."""

    path: Path
    found: int = 0
    held_rows: int = 0
    changed_rows: int = 0
    held_in: set[str] = field(default_factory=set)
    taken: pl.Series = field(default_factory=lambda: pl.Series("taken", [], pl.Boolean))

    def any_held(self) -> bool:
        return self.held_rows > 0

    def any_taken(self) -> bool:
        return self.found > self.held_rows

    def records(self) -> Iterator[Record]:
        """The taken lines' records, a row group (one slice) at a time: pyarrow's batch
        iterator grew by ~80 bytes a line instead (measured: +350 MiB over 4.2 M lines,
        against +50 MiB read by row group)."""
        written = pq.ParquetFile(self.path)
        for group in range(written.num_row_groups):
            table = written.read_row_group(group)
            yield from zip(*(table.column(c).to_pylist() for c in ("identity", "fingerprint", "line_no")))

    def only(self, parsed: ParsedFile) -> ParsedFile:
        """The report with only its taken lines. A spill is rewritten a row group at a
        time with each group's slice of the flags, so neither the file nor a list of its
        row numbers is ever whole in memory."""
        if parsed.spill is None:
            return replace(parsed, rows=parsed.lines.filter(self.taken))
        source, kept, start = pq.ParquetFile(parsed.spill), parsed.spill.with_name(parsed.spill.name + ".only"), 0
        with pq.ParquetWriter(kept, source.schema_arrow) as writer:
            for group in range(source.num_row_groups):
                table = source.read_row_group(group)
                writer.write_table(table.filter(self.taken.slice(start, table.num_rows).to_arrow()))
                start += table.num_rows
        os.replace(kept, parsed.spill)
        return parsed


def sort_lines(parsed: ParsedFile, held: Callable[[list[str]], dict[str, list[Held]]], path: Path) -> SortedLines:
    """A processor report's lines against what intake holds (`held`: identity -> every
    content held under it, asked a slice at a time), each called by (processor, line id)
    and fingerprinted by what it says."""
    heaps, flags = SortedLines(path), []
    with pq.ParquetWriter(path, _RECORD_SCHEMA) as writer:
        for part in parsed.chunks(SLICE_ROWS):
            names = part.select(pl.concat_str(LINE_KEY, separator="|")).to_series().to_list()
            identities = [f"line|{n}" for n in names]
            known = held(identities)
            taken: list[Record] = []
            flag: list[bool] = []
            for name, text, no in zip(identities, _texts(part), part["line_no"]):
                fingerprint, versions = _sha([text]), known.get(name, [])
                same = next((h for h in versions if h.fingerprint == fingerprint), None)
                flag.append(same is None)
                if same is not None:
                    heaps.held_rows += 1
                    heaps.held_in.add(same.name)
                    continue
                heaps.changed_rows += bool(versions)
                taken.append((name, fingerprint, no))
            heaps.found += part.height
            flags.append(pl.Series("taken", flag, pl.Boolean))
            columns = [list(column) for column in zip(*taken)] or [[], [], []]
            writer.write_table(pa.Table.from_arrays(columns, schema=_RECORD_SCHEMA))
    heaps.taken = pl.concat(flags) if flags else heaps.taken
    return heaps


_RECORD_SCHEMA = pa.schema([("identity", pa.string()), ("fingerprint", pa.string()), ("line_no", pa.int64())])


def _texts(lines: pl.DataFrame) -> list[str]:
    """Each line's content as one text (nulls told from empty strings)."""
    said = content_columns(lines.columns)
    return (
        lines.select(pl.concat_str([pl.col(c).cast(pl.String).fill_null(_NULL) for c in said], separator=_SEP))
        .to_series()
        .to_list()
    )


def _sha(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def items(parsed: ParsedFile) -> list[Item]:
    """A bank file's items (its statements), in file order. A processor report's lines are
    sorted a slice at a time instead (`sort_lines`), never one object per line.

    A statement's fingerprint is a SHA-256 over its lines' texts in sorted order, then its
    own figures. The texts are sorted a slice at a time into runs on disk and the runs
    merged (`_sorted_texts`), and a statement's rows are kept as ranges, so neither the
    lines nor their texts are ever whole in memory: a statement of millions of entries
    costs what one slice costs."""
    stated: dict[tuple, list[str]] = defaultdict(list)  # a statement's own figures: balances, dates, count
    starts: dict[tuple, int] = {}
    days: dict[tuple, str] = {}  # its day is part of who it is (numbers start again every year)
    statements = parsed.statements
    day = statements.select(pl.coalesce("closing_date", "opening_date").cast(pl.String).fill_null("")).to_series()
    for key, text, no, on in zip(
        statements.select(STATEMENT_KEY).iter_rows(), _texts(statements), statements["line_no"], day
    ):
        stated[key].append(text)
        starts[key] = min(starts.get(key, no), no)
        days[key] = min(days.get(key, on), on)
    with tempfile.TemporaryDirectory(prefix="statement-texts-") as runs:
        keys, spans, first_line, texts = _sorted_texts(parsed, Path(runs))
        for key in stated:
            spans.setdefault(keys.setdefault(key, len(keys)), [])  # a statement with no entries is an item too
        found = []
        for key, number in keys.items():
            joined = _Joined()
            for text in texts.of(number):
                joined.add(text)
            joined.add("")
            for text in sorted(stated[key]):
                joined.add(text)
            said = joined.hexdigest()
            account, statement_id, sequence = key
            named = f"statement|{account}|{statement_id}|{sequence or ''}|{days.get(key, '')}"
            called = named if statement_id else f"content|{account}|{said}"
            start = first_line.get(number, starts.get(key, 0))
            found.append(Item(called, said, start, _rows(spans[number]), key))
    return sorted(found, key=lambda item: item.line_no)


class _Joined:
    """SHA-256 of "\n".join(texts), the texts given one at a time."""

    def __init__(self) -> None:
        self._sha, self._first = hashlib.sha256(), True

    def add(self, text: str) -> None:
        if not self._first:
            self._sha.update(b"\n")
        self._sha.update(text.encode())
        self._first = False

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


_RUN_GROUP = 256  # texts per row group of a run: what the merge holds per run (runs: lines / SLICE_ROWS)


def _sorted_texts(parsed: ParsedFile, folder: Path):
    """One pass over the lines a slice at a time: each statement's number (in order of
    first appearance), its rows as spans [start, stop), its first line number, and its
    texts in sorted order (`texts.of(number)`, read by merging the slices' sorted runs).
    The merge is keyed by (statement number, text), so every statement's texts come out
    together and in Python's string order, as `sorted` gives."""
    keys: dict[tuple, int] = {}
    spans: dict[int, list[list[int]]] = {}
    first_line: dict[int, int] = {}
    run_paths, row = [], 0
    for part in parsed.chunks(SLICE_ROWS):
        numbers = [keys.setdefault(key, len(keys)) for key in part.select(STATEMENT_KEY).iter_rows()]
        for number, no in zip(numbers, part["line_no"]):
            own = spans.setdefault(number, [])
            if own and own[-1][1] == row:
                own[-1][1] = row + 1
            else:
                own.append([row, row + 1])
            first_line[number] = min(first_line.get(number, no), no)
            row += 1
        if part.height:
            run = sorted(zip(numbers, _texts(part)))
            path = folder / f"run{len(run_paths):06d}.parquet"
            table = pa.Table.from_arrays([[n for n, _ in run], [t for _, t in run]], schema=_RUN_SCHEMA)
            pq.write_table(table, path, row_group_size=_RUN_GROUP)
            run_paths.append(path)
    merged = heapq.merge(*(_read_run(p) for p in run_paths))
    return keys, spans, first_line, _Grouped(merged)


_RUN_SCHEMA = pa.schema([("statement", pa.int64()), ("text", pa.string())])


def _read_run(path: Path) -> Iterator[tuple[int, str]]:
    run = pq.ParquetFile(path)
    for group in range(run.num_row_groups):
        table = run.read_row_group(group)
        yield from zip(table.column("statement").to_pylist(), table.column("text").to_pylist())


class _Grouped:
    """The merged (statement, text) pairs, read one statement at a time in increasing
    statement number (`of`), as the merge gives them."""

    def __init__(self, merged: Iterator[tuple[int, str]]) -> None:
        self._merged, self._next = merged, next(merged, None)

    def of(self, number: int) -> Iterator[str]:
        if self._next is not None and self._next[0] < number:
            raise RuntimeError(f"statement {self._next[0]}'s texts were not read before {number}'s")
        while self._next is not None and self._next[0] == number:
            yield self._next[1]
            self._next = next(self._merged, None)


def _rows(spans: list[list[int]]) -> Sequence[int]:
    """A statement's rows: one range when they are contiguous (always, in the formats'
    parsers), else every row."""
    if len(spans) == 1:
        return range(*spans[0])
    return tuple(i for start, stop in spans for i in range(start, stop))


def sort_out(found: list[Item], held: dict[str, list[Held]]) -> Sorted:
    """`found` against `held` (identity -> every content held under it)."""
    heaps = Sorted(found=len(found))
    for item in found:
        versions = held.get(item.identity, [])
        same = next((h for h in versions if h.fingerprint == item.fingerprint), None)
        if same is not None:
            heaps.same.append((item, same))
        elif versions:
            heaps.changed.append(item)
        else:
            heaps.new.append(item)
    return heaps


def only(parsed: ParsedFile, taken: list[Item]) -> ParsedFile:
    """The bank file with only the lines and statements of `taken`."""
    rows = sorted(i for item in taken for i in item.rows)
    lines = parsed.lines[rows] if rows else parsed.lines.clear()
    statements = parsed.statements
    if statements.height:
        keys = pl.DataFrame([i.statement for i in taken], schema=statements.select(STATEMENT_KEY).schema, orient="row")
        statements = statements.join(keys, on=STATEMENT_KEY, how="semi", nulls_equal=True)
    return ParsedFile(parsed.path, parsed.format, lines, parsed.controls, parsed.problems, statements)
