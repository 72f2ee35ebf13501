"""What the risk flow hands `clearline.models.decision.decide` for one request: the request, and the
features the feature store would have for it.

A pure rule, kept out of the dataflow: a buyer with no events before the request has no
features in the store (Feast answers nulls for an entity it has never seen, and the HTTP
decision API then decides by policy, `features_unavailable`). The stream computes
zero-valued features for such a buyer; it drops them, so both decide a first order the
same way. A request that came late has no features at all.
"""

from __future__ import annotations

from typing import Any, Mapping

from clearline.features import ORDER_COLUMNS, BuyerState, Spec, buyer_feature_names, read_buyer


def has_history(row: Mapping[str, Any], spec: Spec) -> bool:
    """Whether the buyer's features differ from those of a buyer with no events at all."""
    empty = read_buyer(BuyerState(), row["decision_time"], row["currency"], spec)
    return any(row[name] != empty[name] for name in buyer_feature_names(spec))


def request_features(row: Mapping[str, Any] | None, spec: Spec) -> dict[str, Any] | None:
    """The feature values of an order row (its request columns left out); without the
    buyer's when the buyer has no history; None when there is no row."""
    if row is None:
        return None
    features = {k: v for k, v in row.items() if k not in ORDER_COLUMNS}
    if not has_history(row, spec):
        for name in buyer_feature_names(spec):
            features.pop(name)
    return features
