"""Reading a request's buyer and merchant rows straight from the SQLite online store that
Feast writes, with one prepared query, instead of through `get_online_features`.

Why: on the decision API's path Feast's Python layer (request objects, entity-key
protos, per-view grouping, response building) costs about ten times the SQLite lookup
itself, and the API makes one such read per decision. The table, its key and its values
are Feast's own: the table is named by Feast's `compute_table_id`, the key is Feast's
entity-key serialization (version 3, one string join key), each value is Feast's
ValueProto, turned into Python by Feast's own `feast_value_type_to_python_type`.
tests/features/test_online_read.py holds the answer to equality with `get_online_features` on
the same store, for entities present, absent and half-filled.

Only what this covers gets the direct path (`SqliteOnlineRead.of` returns None
otherwise, and the caller keeps Feast's): a SQLite online store, views keyed by one
string entity, no TTL (a TTL makes Feast hide stale rows by the clock; ours are 0 =
never stale), no feature-view versioning. A Redis online store keeps Feast's path.
"""

from __future__ import annotations

import sqlite3
import struct
from typing import Any, Mapping

import msgspec
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.protos.feast.types.Value_pb2 import ValueType as ProtoValueType
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType

_STRING = struct.pack("<I", ProtoValueType.STRING)  # the proto enum, as Feast's serializer packs it


def entity_key(join_key: str, value: str) -> bytes:
    """Feast's serialized entity key (version 3) for one string join key, as
    `feast.infra.key_encoding_utils.serialize_entity_key` writes it: key count, then
    each key's type, length and UTF-8 bytes, then each value's type, length and bytes."""
    k, v = join_key.encode(), value.encode()
    return b"".join(
        (struct.pack("<I", 1), _STRING, struct.pack("<I", len(k)), k, _STRING, struct.pack("<I", len(v)), v)
    )


# ValueProto kinds Feast's conversion hands back as they are (no list, map, time, UUID or
# decimal handling): these skip its chain of checks, the rest go through it.
_PLAIN = frozenset({"double_val", "float_val", "int64_val", "int32_val", "string_val", "bool_val", "bytes_val"})


def python_value(blob: bytes) -> Any:
    """A stored ValueProto as Feast's response gives it (None for a null value).

    A plain value (a number, a string, ...) is immutable and a pure function of its
    bytes, so it is remembered by its bytes: features repeat the same few values (counts,
    rates, a currency), and a dictionary look-up costs a fraction of a proto parse. The
    memory is bounded (`_REMEMBERED`), emptied when full."""
    got = _known.get(blob, _UNKNOWN)
    if got is not _UNKNOWN:
        return got
    proto = ValueProto.FromString(blob)
    kind = proto.WhichOneof("val")
    if kind not in _PLAIN:
        return feast_value_type_to_python_type(proto)
    got = getattr(proto, kind)
    if len(_known) >= _REMEMBERED:
        _known.clear()
    _known[blob] = got
    return got


_REMEMBERED = 100_000
_known: dict[bytes, Any] = {}
_UNKNOWN = object()
_objects = msgspec.json.Decoder(dict[str, str | None])  # a view's {feature: hex value or null}


class SqliteOnlineRead:
    """Rows of several single-key views in one query: `read({view: key})`.

    The connection is opened on the first read, in the process that reads (uvicorn
    workers are separate processes), read-only; a failed open is retried on the next
    read, so the caller's fallback for an unreachable store applies to each request."""

    def __init__(self, db_path: str, tables: Mapping[str, tuple[str, str]], names: Mapping[str, tuple[str, ...]]):
        self.db_path = db_path
        self.join_keys = {view: join_key for view, (_, join_key) in tables.items()}
        self.names = {view: tuple(n) for view, n in names.items()}
        self.views = tuple(tables)
        # One row: per view, its entity's {feature name: value as hex, or null} (SQLite's
        # JSON1). Why not a row per feature: the sqlite3 module lets go of the GIL and takes
        # it back at every row it steps to, ~26 a request, and on the API's server each take
        # can be a hand-over with the decision store's writer thread; and building ~26 row
        # tuples cost more than decoding two small JSON texts.
        self.sql = "SELECT " + ", ".join(
            f"(SELECT json_group_object(feature_name, iif(value IS NULL, NULL, hex(value))) "
            f'FROM "{table.replace(chr(34), chr(34) * 2)}" WHERE entity_key = ?)'
            for table, _ in tables.values()
        )
        self.db: sqlite3.Connection | None = None

    @classmethod
    def of(cls, store: Any, names: Mapping[str, tuple[str, ...]]) -> SqliteOnlineRead | None:
        """For a Feast `FeatureStore` and {view name: feature names}: the direct reader,
        or None when the store or a view is not one this reads exactly as Feast does."""
        config = store.config
        if (
            config.online_store.type != "sqlite"
            or config.entity_key_serialization_version != 3
            or getattr(config.registry, "enable_online_feature_view_versioning", False)
        ):
            return None
        tables = {}
        for view_name in names:
            view = store.get_feature_view(view_name)
            if (
                view.ttl
                or len(view.entity_columns) != 1
                or view.entity_columns[0].dtype.to_value_type() != ValueType.STRING
            ):
                return None
            tables[view_name] = (compute_table_id(config.project, view), view.entity_columns[0].name)
        return cls(SqliteOnlineStore._get_db_path(config), tables, names)

    def _connection(self) -> sqlite3.Connection:
        if self.db is None:
            self.db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, check_same_thread=False, timeout=5.0)
        return self.db

    def read(self, keys: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """{view: {feature: value}} for {view: entity id}; every named feature is there,
        None when the store has no value for it (as Feast answers an unknown key)."""
        args = [entity_key(self.join_keys[view], keys[view]) for view in self.views]
        row = self._connection().execute(self.sql, args).fetchone()
        return {
            view: {
                n: None if (value := got.get(n)) is None else python_value(bytes.fromhex(value))
                for n in self.names[view]
            }
            for view, got in zip(self.views, map(_objects.decode, row))
        }

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
