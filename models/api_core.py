"""What the decision API needs besides HTTP: who is calling (tenant API keys), which
tenant owns which merchant, and a request's features from the online store (the fast
scorer both the API and the stream use is `clearline.models.fast_scoring`).

Kept apart from `clearline.models.api` (the FastAPI wiring) so each piece is a plain object that
tests and the benchmark can use without a server.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from clearline.events import Money
from clearline.features import (
    DEFAULT_SPEC,
    Spec,
    SqliteOnlineRead,
    feature_names,
    merchant_ticket_names,
    view_name,
    zscore_for,
)


class ApiSetupError(Exception):
    """The API cannot start as configured (keys, merchant directory); the message says what."""


# --------------------------------------------------------------------------- tenant keys


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_env(tenant: str) -> str:
    """The environment variable that overrides a tenant's dev API key (like the HMAC keys)."""
    return "CLEARLINE_API_KEY_" + re.sub(r"[^A-Za-z0-9]", "_", tenant).upper()


@dataclass(frozen=True)
class ApiKeys:
    """SHA-256 hashes of each tenant's API key. Only hashes are held, so a leaked config
    or memory dump does not give a key away; a presented key is hashed and compared with
    every tenant's hash in constant time (no early exit), so timing tells nothing."""

    hashes: Mapping[str, bytes]

    @classmethod
    def from_config(cls, tenants_cfg: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> ApiKeys:
        """From the loaded configs/tenants.yaml: `api_key_sha256` per tenant, unless
        CLEARLINE_API_KEY_<TENANT> holds the key itself (production). A tenant with
        neither cannot call the API."""
        hashes = {}
        for tenant, spec in (tenants_cfg.get("tenants") or {}).items():
            raw = environ.get(key_env(tenant))
            digest = key_hash(raw) if raw else (spec or {}).get("api_key_sha256")
            if digest is None:
                continue
            if not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
                raise ApiSetupError(f"configs/tenants.yaml: tenants.{tenant}.api_key_sha256 is not 64 hex digits")
            hashes[tenant] = bytes.fromhex(str(digest))
        if not hashes:
            raise ApiSetupError(
                "no tenant has an API key: set tenants.<id>.api_key_sha256 in configs/tenants.yaml "
                "or CLEARLINE_API_KEY_<TENANT>"
            )
        return cls(hashes)

    def tenant_of(self, presented: str | None) -> str | None:
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for tenant, expected in self.hashes.items():
            if hmac.compare_digest(digest, expected):
                found = tenant
        return found


# --------------------------------------------------------------------------- merchants


@dataclass(frozen=True)
class MerchantDirectory:
    """merchant_id -> the tenant (reseller) that owns it. Built from any table with
    `merchant_id` and `reseller_id` columns: the generated world's
    entities/merchants.parquet, or the event archive itself (every event's envelope
    names both), so the API needs no directory of its own to keep in step."""

    owners: Mapping[str, str]

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> MerchantDirectory:
        owners: dict[str, str] = {}
        for merchant, reseller in pairs:
            if owners.setdefault(merchant, reseller) != reseller:
                raise ApiSetupError(
                    f"merchant {merchant!r} is listed under two tenants: {owners[merchant]!r} and {reseller!r}"
                )
        return cls(owners)

    def owner(self, merchant_id: str) -> str | None:
        return self.owners.get(merchant_id)


# --------------------------------------------------------------------------- features

# Feature names (by part) whose values are only valid in the currency their row was read
# in: sums of amounts, and the merchant's ticket count and sum of squares in that currency.
MONEY_FEATURES = ("_amount_", "_exposure_", "_volume_", "_avg_ticket_", "_zscore", "_tickets_", "_sumsq_")


def is_money_feature(name: str) -> bool:
    """Features summing amounts, which are only valid in the currency they were read in."""
    return any(part in f"{name}_" for part in MONEY_FEATURES)


class OnlineFeatures:
    """One request's buyer and merchant rows from Feast's online store.

    On a SQLite online store they are read straight from Feast's tables with one query
    (`clearline.features.online_read`, proven equal to Feast's answer in tests/features/test_online_read.py):
    Feast's Python layer costs several times the lookup. Any other store (Redis) goes
    through Feast's `get_online_features`, one call for both entities."""

    def __init__(self, feast_store: Any, spec: Spec = DEFAULT_SPEC):
        self.store = feast_store
        self.names = {e: ("currency", *feature_names(e, spec)) for e in ("buyer", "merchant")}
        self.refs = [f"{view_name(e)}:{n}" for e, names in self.names.items() for n in names]
        self.direct = SqliteOnlineRead.of(feast_store, {view_name(e): names for e, names in self.names.items()})

    def read(self, buyer_id: str, merchant_id: str) -> dict[str, dict[str, Any]]:
        if self.direct is None:
            return self.read_through_feast(buyer_id, merchant_id)
        got = self.direct.read({view_name("buyer"): buyer_id, view_name("merchant"): merchant_id})
        return {e: got[view_name(e)] for e in self.names}

    def read_through_feast(self, buyer_id: str, merchant_id: str) -> dict[str, dict[str, Any]]:
        got = self.store.get_online_features(
            features=self.refs,
            entity_rows=[{"buyer_id": buyer_id, "merchant_id": merchant_id}],
            full_feature_names=True,
        ).to_dict()
        return {e: {n: got[f"{view_name(e)}__{n}"][0] for n in names} for e, names in self.names.items()}


def request_features(
    rows: Mapping[str, Mapping[str, Any]], amount: Money, spec: Spec = DEFAULT_SPEC
) -> dict[str, Any] | None:
    """The feature values `decide` gets for a request of `amount`, from the online rows.

    None when neither entity has a row (Feast answers all None for an unknown key): the
    request is decided without features. An entity row read for another currency keeps
    its counts and rates; its money features are left out (their sums are in that other
    currency), so `decide` names them missing instead of scoring wrong amounts.

    The merchant's ticket z-score depends on the request itself: the row holds the
    z-score of the amount it was read for (the merchant's last request), so it is computed
    again for this amount from the row's ticket count, volume and sum of squares, by the
    function the stream's `read_merchant` uses (`clearline.features.definitions.zscore_for`)."""
    out: dict[str, Any] = {}
    for values in rows.values():
        if all(v is None for v in values.values()):
            continue
        other_currency = values.get("currency") not in (None, amount.currency)
        out.update(
            {k: v for k, v in values.items() if k != "currency" and not (other_currency and is_money_feature(k))}
        )
    if not out:
        return None
    if "merchant_ticket_zscore" in out:  # the merchant's row, read in this currency
        tickets, sumsq = merchant_ticket_names(spec)
        if out.get(tickets) is None or out.get(sumsq) is None:  # a row pushed before the aggregates existed
            out["merchant_ticket_zscore"] = None
        else:
            out[sumsq] = int(out[sumsq])  # the store keeps it as decimal text (clearline.features.store)
            out["merchant_ticket_zscore"] = zscore_for(out, amount.minor, spec)
    return out
