"""The Feast repository's objects: the buyer and merchant entities and one feature view
each, fed by a push source over a Parquet file source (the offline history).

They are built by a function because the data folder is configuration (default
`var/feast`): the file sources must name absolute paths in it. The views' schemas come
from the feature names of `clearline.features.definitions`, so a feature added there is a column
here too. `currency` travels with each row: it is the currency the amount features
are in (the currency of the request they were read for). The merchant's view also keeps
the ticket aggregates behind its z-score (`merchant_ticket_names`), so the decision API
can compute the z-score of its own request's amount; the sum of squared tickets is a
String of decimal digits, because it can pass 64 bits and Feast has no wider integer.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64, String

from clearline.features.definitions import (
    DEFAULT_SPEC,
    Spec,
    buyer_feature_names,
    float_features,
    merchant_row_names,
    wide_integers,
)

ENTITIES = ("buyer", "merchant")
TIMESTAMP, CREATED = "event_timestamp", "created"


def feature_names(entity: str, spec: Spec = DEFAULT_SPEC) -> tuple[str, ...]:
    """The columns the entity's view keeps (after `currency`)."""
    return {"buyer": buyer_feature_names, "merchant": merchant_row_names}[entity](spec)


def view_name(entity: str) -> str:
    return f"{entity}_features"


def push_source_name(entity: str) -> str:
    return f"{entity}_push"


def history_path(data_dir: Path, entity: str) -> Path:
    return data_dir / "offline" / f"{entity}_history.parquet"


def repo_objects(data_dir: Path, spec: Spec = DEFAULT_SPEC) -> list:
    """Entities, push sources and feature views for `FeatureStore.apply`."""
    floats, wide = float_features(spec), wide_integers(spec)
    objects: list = []
    for entity in ENTITIES:
        ent = Entity(
            name=entity,
            join_keys=[f"{entity}_id"],
            value_type=ValueType.STRING,
            description=f"a {entity}, by its id in the event contract",
        )
        batch = FileSource(
            name=f"{entity}_history",
            path=str(history_path(data_dir, entity).resolve()),
            timestamp_field=TIMESTAMP,
            created_timestamp_column=CREATED,
        )
        push = PushSource(name=push_source_name(entity), batch_source=batch)
        schema = [Field(name="currency", dtype=String)] + [
            Field(name=n, dtype=Float64 if n in floats else String if n in wide else Int64)
            for n in feature_names(entity, spec)
        ]
        view = FeatureView(
            name=view_name(entity),
            entities=[ent],
            ttl=timedelta(0),
            schema=schema,
            online=True,
            source=push,
            description=f"{entity} risk features as of each underwriting request",
        )
        objects += [ent, push, view]
    return objects
