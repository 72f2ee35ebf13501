"""`settlements.unpaired`, which finds the few ledger/processor rows whose digests have no
partner among ten million, against its definition: a full join of the two sides on the
field hash `_c` that keeps every row left without a partner or paired with a partner of
another second hash `_c2`.

Rows are drawn as (hash, content): the first hash is a small number, so the two sides'
hashes meet often, and the second is a hash of both, so two rows that share the first
hash but not the content collide on the first hash alone, as a 64-bit collision would.
Such a collision pairs two rows that differ; `unpaired` must still name them (its sorted
pairing is then overruled by the second hashes), as it must name every lone row."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.recon.matching.settlements import unpaired

# one side: first hash -> content (a side's first hashes are unique, as its keys are)
side = st.dictionaries(st.integers(0, 12), st.integers(0, 2), max_size=12)


def _digest(rows: dict[int, int], index: str, start: int) -> pl.DataFrame:
    frame = pl.DataFrame(
        {"_c": list(rows), "content": list(rows.values())}, schema={"_c": pl.UInt64, "content": pl.Int64}
    )
    return frame.select(
        pl.int_range(start, start + pl.len(), dtype=pl.UInt32).alias(index),
        "_c",
        _c2=pl.struct("_c", "content").hash(seed=1),
    )


def _by_definition(left: pl.DataFrame, right: pl.DataFrame) -> tuple[set[int], set[int]]:
    odd = left.join(right, on="_c", how="full", coalesce=True, suffix="_right").filter(
        pl.col("_e").is_null() | pl.col("_l").is_null() | (pl.col("_c2") != pl.col("_c2_right"))
    )
    return set(odd["_e"].drop_nulls()), set(odd["_l"].drop_nulls())


@settings(max_examples=300, deadline=None)
@given(side, side)
def test_unpaired_names_exactly_the_rows_a_join_leaves_alone_or_pairs_unlike(left_rows, right_rows):
    left, right = _digest(left_rows, "_e", 0), _digest(right_rows, "_l", 100)
    left_odd, right_odd = unpaired(left, right, "_e", "_l")
    assert (set(left_odd["_e"]), set(right_odd["_l"])) == _by_definition(left, right)
    assert left_odd.columns == left.columns and right_odd.columns == right.columns


def test_a_first_hash_shared_by_rows_that_differ_is_not_taken_for_a_pair():
    """Two pairs whose first hashes meet while their contents differ: the sorted pairing
    alone would take both for partners."""
    left, right = _digest({1: 0, 2: 0, 3: 0}, "_e", 0), _digest({1: 1, 2: 0, 4: 0}, "_l", 100)
    left_odd, right_odd = unpaired(left, right, "_e", "_l")
    assert sorted(left_odd["_e"]) == [0, 2]  # hash 1 (contents differ) and hash 3 (no partner)
    assert sorted(right_odd["_l"]) == [100, 102]
