"""Identifiers for generated records, vectorised.

Ids are a prefix plus a counter spelt in letters only ("pay_aaabqz"). Letters matter: the
contract refuses any Luhn-valid run of 13–19 digits, and a digit-based id would, once in a
few million, look like a card number.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def letter_ids(prefix: str, start: int, count: int, width: int = 7) -> pl.Series:
    """`count` ids `prefix` + base-26 letters of start, start+1, …, left-padded with 'a'.

    The bytes of all ids are laid out in one numpy array (prefix, then the letters) and
    handed to Polars as one column: no Python string per id."""
    n = np.arange(start, start + count, dtype=np.int64)
    if count and n[-1] >= 26**width:
        raise ValueError(f"{count} ids do not fit in {width} letters")
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    ids = np.empty((count, head.size + width), dtype=np.uint8)
    ids[:, : head.size] = head
    for k in range(head.size + width - 1, head.size - 1, -1):
        ids[:, k] = n % 26 + ord("a")
        n //= 26
    return pl.Series(ids.view(f"S{head.size + width}").ravel(), dtype=pl.Binary).cast(pl.String)
