"""Bytes to text, with the line number of whatever goes wrong.

Settlement reports and statements are text; a file that is not valid UTF-8 (or in the
encoding its XML declaration names, or, for the text formats that allow it, Windows-1252 /
ISO-8859-1), or that has NUL bytes as a binary or a half-copied file does, is refused here
with the line of the first bad byte, so the quarantine report can point at it.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clearline.recon.intake.model import ParseError


def line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


_XML_DECLARATION = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def decode(data: bytes, single_byte: bool = False) -> str:
    """The file's text; refuses empty files, bad bytes and NUL bytes, naming the line.

    UTF-8 (a byte-order mark is dropped), unless an XML declaration names another
    encoding, which is then used (`<?xml version="1.0" encoding="ISO-8859-1"?>`: the file
    says what it is). With `single_byte` (the caller's choice, for text formats whose banks
    still send ISO-8859-1) bytes that are not UTF-8 are read as Windows-1252, the superset
    of ISO-8859-1 that files labelled Latin-1 are in practice (the WHATWG Encoding Standard
    reads the label so), or as ISO-8859-1 itself where a byte is undefined in Windows-1252.
    Either maps every byte to exactly one character, so nothing of the file is lost or
    replaced: an `é` in a statement's text stays an `é`.
    """
    if not data.strip():
        raise ParseError("the file is empty", 1)
    nul = data.find(b"\x00")
    declared = _XML_DECLARATION.match(data)
    encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    if codecs_name(encoding) != "utf-8":
        return _declared(data, encoding)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if not single_byte or nul >= 0:
            raise ParseError(
                f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}", line_of(data, exc.start)
            ) from None
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    if nul >= 0:
        raise ParseError(f"NUL byte at offset {nul}: not a text file", line_of(data, nul))
    return text


def codecs_name(encoding: str) -> str | None:
    """Python's name for an encoding label, None for a label it does not know."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return None


def _declared(data: bytes, encoding: str) -> str:
    if codecs_name(encoding) is None:
        raise ParseError(f"the XML declaration names an unknown encoding {encoding!r}", 1)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"not valid {encoding} (as the XML declaration says): byte 0x{data[exc.start]:02x} at offset {exc.start}",
            line_of(data, exc.start),
        ) from None
    if "\x00" in text:
        raise ParseError(f"NUL character at offset {text.index(chr(0))}: not a text file", 1)
    return text


BLOCK = 1 << 20  # bytes read at once when a file is streamed


@dataclass(frozen=True)
class Scan:
    """What one pass over a file's bytes found: its SHA-256, and whether its text can be
    read as a stream (`streams`: UTF-8, no NUL byte, not blank, no XML declaration naming
    another encoding). A file that cannot is read whole by `decode`, which says what is wrong."""

    sha256: str
    streams: bool


def scan(path: Path) -> Scan:
    """Hash the file and check its UTF-8 in one pass, a block at a time (never whole)."""
    digest, check = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")()
    utf8, blank, nul, prefix = True, True, False, b""
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            if prefix is not None:  # the start, until it says whether it declares an encoding
                prefix += block
                if not _undecided(prefix):
                    utf8, prefix = utf8 and not _declares_other_encoding(prefix), None
            blank = blank and not block.strip()
            nul = nul or b"\x00" in block
            if utf8:
                try:
                    check.decode(block)
                except UnicodeDecodeError:
                    utf8 = False
    if prefix is not None:
        utf8 = utf8 and not _declares_other_encoding(prefix)
    if utf8:
        try:
            check.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    return Scan(digest.hexdigest(), utf8 and not nul and not blank)


def _undecided(start: bytes) -> bool:
    """Whether more of the file is needed to tell if it opens with an XML declaration
    naming an encoding (one ends before the first ">")."""
    body = start.lstrip()
    return len(body) < 5 or (body.startswith(b"<?xml") and b">" not in body)


def _declares_other_encoding(start: bytes) -> bool:
    declared = _XML_DECLARATION.match(start)
    return bool(declared) and codecs_name(declared.group(1).decode("ascii")) != "utf-8"


class TextFile:
    """A UTF-8 file's text read as a stream (a byte-order mark dropped, as `decode` drops
    it): `head` for detection, `lines` for the CSV reader, each from the start of the file
    as often as a parser wants (Adyen's reader takes two passes). Only for a file `scan`
    says `streams`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _open(self):
        return self.path.open(encoding="utf-8-sig", newline="")

    def head(self, chars: int) -> str:
        with self._open() as handle:
            return handle.read(chars)

    def first_line(self) -> str:
        """Up to the first "\\n" (what `text.split("\\n", 1)[0]` gives)."""
        with self._open() as handle:
            parts = []
            while part := handle.read(BLOCK):
                end = part.find("\n")
                if end >= 0:
                    parts.append(part[:end])
                    break
                parts.append(part)
            return "".join(parts)

    def lines(self) -> Iterator[str]:
        """The physical lines, endings kept, as a file opened with newline="" gives them."""
        with self._open() as handle:
            yield from handle


def text_lines(text: str | TextFile) -> Iterator[str]:
    """The text's lines as `str.splitlines` gives them (endings dropped; any of the
    separators `splitlines` knows ends a line), read one physical line at a time: a bank
    statement's parsers take them so, whether the text is whole (a file `decode` read) or
    a `TextFile` streamed from disk, and hold no list of the file's lines."""
    physical = text.lines() if isinstance(text, TextFile) else io.StringIO(text, newline="")
    for line in physical:
        yield from line.splitlines()
