"""`rules.first_rows`, which every matching step uses to tell a line's first report from
its repeats, against its definition written out plainly: per key, the rows sorted by the
order columns and then by the other fields; the first is the key's first row, the rest
are later rows, and the first of a key that has later rows is its head. Hashes handed in
by the caller (as `settlements.reported` does) give the same answer as hashes computed."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.recon.matching.rules import first_rows

KEYS, ORDER = ["processor", "line_id"], ["source_file", "line_no"]
SCHEMA = dict.fromkeys([*KEYS, "source_file"], pl.String) | dict.fromkeys(["line_no", "net_minor"], pl.Int64)

rows = st.lists(
    st.fixed_dictionaries(
        {
            "processor": st.sampled_from(["adyen", "stripe"]),
            "line_id": st.sampled_from(["a", "b", "c", "d"]),
            "source_file": st.sampled_from(["r1.csv", "r2.csv"]),
            "line_no": st.integers(1, 3),
            "net_minor": st.integers(-5, 5),
        }
    ),
    max_size=25,
)


def _plain(frame: pl.DataFrame) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """(firsts, later, heads) by the definition, as sorted row tuples."""
    by_key: dict[tuple, list[tuple]] = {}
    for row in frame.iter_rows():
        by_key.setdefault(row[:2], []).append(row)
    firsts, later, heads = [], [], []
    for group in by_key.values():
        group.sort(key=lambda r: (r[2], r[3], r[4]))
        firsts.append(group[0])
        later.extend(group[1:])
        if len(group) > 1:
            heads.append(group[0])
    return sorted(firsts), sorted(later), sorted(heads)


def _tuples(frame: pl.DataFrame | pl.LazyFrame) -> list[tuple]:
    return sorted(frame.lazy().collect().select(*KEYS, *ORDER, "net_minor").iter_rows())


@settings(max_examples=60, deadline=None)
@given(rows, st.booleans())
def test_first_rows_is_its_definition_in_any_order(data, hashes_given):
    frame = pl.DataFrame(data, schema=SCHEMA)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=len(data)).with_row_index("_l")
    hashes = shuffled.select(pl.struct(KEYS).hash()).to_series() if hashes_given else None
    firsts, later, heads = first_rows(shuffled.lazy(), KEYS, ORDER, hashes)
    assert (_tuples(firsts), _tuples(later), _tuples(heads)) == _plain(frame)
    # the caller's row numbers ride along: a later row is never also a first
    assert set(later["_l"]).isdisjoint(firsts.collect()["_l"])
