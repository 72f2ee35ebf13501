"""What every corpus of real files no one here wrote keeps: each data file has a stated
outcome in its test and a row in the corpus's SOURCES.md (where it comes from, its licence)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def corpus_files(corpus: Path) -> set[str]:
    """Every data file under `corpus`, by path relative to it (licences and SOURCES.md aside)."""
    return {
        str(p.relative_to(corpus))
        for p in corpus.rglob("*")
        if p.is_file() and not p.name.startswith(("LICENSE", "SOURCES"))
    }


def unsourced(corpus: Path, names: Iterable[str]) -> list[str]:
    """The files among `names` that have no row in the corpus's SOURCES.md."""
    sources = (corpus / "SOURCES.md").read_text()
    return [name for name in names if f"`{name}`" not in sources]
