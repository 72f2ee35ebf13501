"""The direct SQLite online-store read (`clearline.features.online_read`) against Feast's own
`get_online_features`, on a real Feast repo applied in a tmp folder: rows pushed through
Feast, read back both ways, for entities present, absent, overwritten and with null
values; the entity key against Feast's serializer; a Redis store keeps Feast's path."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearline.features import store as fstore
from clearline.features.online_read import SqliteOnlineRead, entity_key
from clearline.models.api_core import OnlineFeatures

_ids = itertools.count()
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def feast(tmp_path_factory):
    settings_ = fstore.FeastSettings("clearline", tmp_path_factory.mktemp("feast"))
    fstore.apply(settings_)
    fs = fstore.open_store(settings_)
    return fs, OnlineFeatures(fs)


def _value(dtype: pl.DataType) -> st.SearchStrategy:
    if dtype == pl.Float64():
        return st.one_of(st.none(), st.floats(allow_infinity=False), st.just(float("nan")))
    if dtype == pl.Int64():
        return st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
    return st.one_of(st.none(), st.text(max_size=12))


def _row(entity: str) -> st.SearchStrategy:
    schema = fstore.history_schema(entity)
    values = {n: _value(t) for n, t in schema.items() if n not in (f"{entity}_id", "event_timestamp", "created")}
    values["currency"] = st.sampled_from(["EUR", "GBP", "SEK"])  # a pushed row always names its currency
    return st.fixed_dictionaries(values)


def _push(fs, entity: str, entity_id: str, values: dict, at: datetime) -> None:
    schema = fstore.history_schema(entity)
    row = {f"{entity}_id": entity_id, "event_timestamp": at, "created": at, **values}
    fstore.push(fs, pl.DataFrame([row], schema=schema, orient="row"), entity, offline=False)


def _same(a: dict, b: dict) -> bool:
    """Equal, with NaN equal to NaN (a stored NaN comes back as NaN both ways)."""
    return a.keys() == b.keys() and all(
        _same(a[k], b[k])
        if isinstance(a[k], dict)
        else (isinstance(a[k], float) and isinstance(b[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
        or (a[k] == b[k] and type(a[k]) is type(b[k]))
        for k in a
    )


def test_the_sqlite_store_is_read_directly(feast):
    _, online = feast
    assert online.direct is not None and set(online.direct.views) == {"buyer_features", "merchant_features"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(buyer=_row("buyer"), merchant=_row("merchant"), later=_row("buyer"), unicode_id=st.text(min_size=1, max_size=8))
def test_the_direct_read_is_feasts_answer(feast, buyer, merchant, later, unicode_id):
    fs, online = feast
    n = next(_ids)
    b, m = f"b{n}-{unicode_id}", f"m{n}"
    _push(fs, "buyer", b, buyer, T0)
    _push(fs, "merchant", m, merchant, T0)
    for pair in ((b, m), (b, "never-seen"), ("never-seen", m), ("never-seen", "never-seen")):
        direct, through_feast = online.read(*pair), online.read_through_feast(*pair)
        assert _same(direct, through_feast), (pair, direct, through_feast)
    assert online.read("never-seen", m)["buyer"] == dict.fromkeys(online.names["buyer"])
    _push(fs, "buyer", b, later, T0 + timedelta(hours=1))  # the newer row replaces the older one
    again = online.read(b, m)
    assert _same(again, online.read_through_feast(b, m)) and again["buyer"]["currency"] == later["currency"]


@settings(max_examples=200)
@given(join_key=st.sampled_from(["buyer_id", "merchant_id"]), value=st.text())
def test_the_entity_key_is_feasts_serialization(join_key, value):
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    proto = EntityKey(join_keys=[join_key], entity_values=[Value(string_val=value)])
    assert entity_key(join_key, value) == serialize_entity_key(proto, entity_key_serialization_version=3)


def test_a_redis_online_store_keeps_feasts_path(tmp_path):
    import yaml

    s = fstore.FeastSettings("clearline", tmp_path / "feast", online_store="redis")
    s.data_dir.mkdir(parents=True)
    s.yaml_path.write_text(yaml.safe_dump(fstore.repo_yaml(s)))  # no redis-server needed: nothing is read
    fs = fstore.open_store(s)
    assert SqliteOnlineRead.of(fs, {"buyer_features": ("currency",)}) is None
