"""Who is in the world: resellers (the tenants) → merchants → business buyers.

Each buyer carries a latent risk `z` (standard normal). It is never written into an event;
it only shapes behaviour — how often the buyer orders, how large, how late it pays, how
often it disputes — and its true default probability. A model can therefore only learn it
from behaviour, and the true probability is the ceiling it can reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class Entities:
    merchants: pl.DataFrame  # merchant_id, reseller_id, currency, card_processor, ach_processor
    buyers: pl.DataFrame  # buyer_id, home_merchant, z


def _mix(rng: np.random.Generator, shares: dict[str, float], n: int) -> np.ndarray:
    names = list(shares)
    p = np.array([shares[k] for k in names], dtype=float)
    return np.array(names)[rng.choice(len(names), size=n, p=p / p.sum())]


def make_entities(rng: np.random.Generator, cfg: dict, tenants: list[str], merchants: int) -> Entities:
    processors = cfg["processors"]
    card = [p for p, spec in processors.items() if "card" in spec["methods"]]
    ach = [p for p, spec in processors.items() if "ach" in spec["methods"]]
    m_ids = np.char.add("m_", np.char.zfill(np.arange(1, merchants + 1).astype(str), 5))
    merchant_df = pl.DataFrame(
        {
            "merchant_id": m_ids,
            "reseller_id": np.array(tenants)[rng.integers(0, len(tenants), merchants)],
            "currency": _mix(rng, cfg["currencies"], merchants),
            "card_processor": np.array(card)[rng.integers(0, len(card), merchants)],
            "ach_processor": np.array(ach)[rng.integers(0, len(ach), merchants)],
        }
    )
    per_merchant = rng.poisson(cfg["buyers_per_merchant"], merchants) + 1
    n = int(per_merchant.sum())
    buyer_df = pl.DataFrame(
        {
            "buyer_id": np.char.add("b_", np.char.zfill(np.arange(1, n + 1).astype(str), 7)),
            "home_merchant": np.repeat(np.arange(merchants), per_merchant),
            "z": rng.standard_normal(n),
        }
    )
    return Entities(merchant_df, buyer_df)
