"""Identifiers for generated records, vectorised.

Ids are a prefix plus a counter spelt in letters only ("pay_aaabqz"). Letters matter: the
contract refuses any Luhn-valid run of 13–19 digits, and a digit-based id would, once in a
few million, look like a card number.
"""

from __future__ import annotations

import numpy as np


def letter_ids(prefix: str, start: int, count: int, width: int = 7) -> np.ndarray:
    """`count` ids `prefix` + base-26 letters of start, start+1, …, left-padded with 'a'."""
    n = np.arange(start, start + count, dtype=np.int64)
    if count and n[-1] >= 26**width:
        raise ValueError(f"{count} ids do not fit in {width} letters")
    digits = np.empty((count, width), dtype=np.uint8)
    for k in range(width - 1, -1, -1):
        digits[:, k] = n % 26 + ord("a")
        n //= 26
    letters = digits.view(f"S{width}").ravel().astype(str)
    return np.char.add(prefix, letters)
