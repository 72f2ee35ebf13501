"""The Feast adapter: write the repository's `feature_store.yaml` into the data folder,
apply the objects of `clearline.features.feast_repo`, push feature rows (online, offline or both)
and read a buyer's or merchant's online features back.

The online store is SQLite by default: one file, one writer. Several workers writing
at once need Redis (`online_store: redis` in configs/features.yaml), which takes
concurrent writers and skips a write older than what it holds. The offline store is
DuckDB over the Parquet history files, for point-in-time training sets.

Feast's offline push appends by rewriting the whole history file, so the risk flow
should push offline in batches, not row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import polars as pl
import yaml

from clearline.features.definitions import DEFAULT_SPEC, Spec, float_features, wide_integers
from clearline.features.event_time import FeatureRow
from clearline.features.feast_repo import (
    CREATED,
    ENTITIES,
    TIMESTAMP,
    feature_names,
    history_path,
    push_source_name,
    repo_objects,
    view_name,
)

ONLINE_STORES = ("sqlite", "redis")


class FeatureStoreError(Exception):
    """The feature store cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class FeastSettings:
    project: str
    data_dir: Path
    online_store: str = "sqlite"
    redis_connection: str = "127.0.0.1:6379"

    @property
    def yaml_path(self) -> Path:
        return self.data_dir / "feature_store.yaml"


def settings_from_config(
    cfg: Mapping[str, Any], base: Path, data_dir: Path | None = None, online_store: str | None = None
) -> FeastSettings:
    """Settings from the `feast` section of a loaded configs/features.yaml; a relative
    data folder is taken from `base` (the repository root)."""
    feast = cfg.get("feast")
    if not isinstance(feast, dict):
        raise FeatureStoreError("configs/features.yaml: missing the `feast` section")
    online = online_store or str(feast.get("online_store", "sqlite"))
    if online not in ONLINE_STORES:
        raise FeatureStoreError(
            f"configs/features.yaml: feast.online_store must be one of {ONLINE_STORES}, got {online!r}"
        )
    folder = Path(data_dir or feast.get("path", "var/feast"))
    return FeastSettings(
        project=str(feast.get("project", "clearline")),
        data_dir=(folder if folder.is_absolute() else base / folder).resolve(),
        online_store=online,
        redis_connection=str((feast.get("redis") or {}).get("connection_string", "127.0.0.1:6379")),
    )


def repo_yaml(s: FeastSettings) -> dict[str, Any]:
    online: dict[str, Any] = (
        {"type": "sqlite", "path": str(s.data_dir / "online.db")}
        if s.online_store == "sqlite"
        else {"type": "redis", "connection_string": s.redis_connection}
    )
    return {
        "project": s.project,
        "provider": "local",
        "registry": str(s.data_dir / "registry.db"),
        "online_store": online,
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3,
    }


def history_schema(entity: str, spec: Spec = DEFAULT_SPEC) -> dict[str, pl.DataType]:
    """The columns of a pushed row and of the offline history file, in Feast's order.
    Integers that can pass 64 bits (`wide_integers`) are decimal text: exact, and a type
    Feast's online and offline stores both keep."""
    floats, wide = float_features(spec), wide_integers(spec)
    ts = pl.Datetime("us", "UTC")
    return {
        f"{entity}_id": pl.String(),
        TIMESTAMP: ts,
        CREATED: ts,
        "currency": pl.String(),
        **{
            n: pl.Float64() if n in floats else pl.String() if n in wide else pl.Int64()
            for n in feature_names(entity, spec)
        },
    }


def apply(s: FeastSettings, spec: Spec = DEFAULT_SPEC) -> dict[str, Any]:
    """Write feature_store.yaml and empty history files (if missing) and apply the repo."""
    s.data_dir.mkdir(parents=True, exist_ok=True)
    s.yaml_path.write_text(yaml.safe_dump(repo_yaml(s), sort_keys=False))
    for entity in ENTITIES:
        path = history_path(s.data_dir, entity)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pl.DataFrame(schema=history_schema(entity, spec)).write_parquet(path)
    store = open_store(s)
    objects = repo_objects(s.data_dir, spec)
    try:
        store.apply(objects)
    except Exception as exc:  # Feast raises many kinds; the person needs the message
        raise FeatureStoreError(f"feast apply failed in {s.data_dir}: {exc}") from exc
    return {
        "project": s.project,
        "data_dir": str(s.data_dir),
        "online_store": s.online_store,
        "entities": list(ENTITIES),
        "feature_views": [view_name(e) for e in ENTITIES],
        "features": sum(len(feature_names(e, spec)) for e in ENTITIES),
    }


def open_store(s: FeastSettings):
    from feast import FeatureStore

    if not s.yaml_path.exists():
        raise FeatureStoreError(f"no feature store in {s.data_dir}: run `clearline features apply` first")
    return FeatureStore(repo_path=str(s.data_dir), fs_yaml_file=s.yaml_path)


def rows_frame(rows: Iterable[FeatureRow], entity: str, spec: Spec = DEFAULT_SPEC) -> pl.DataFrame:
    """The streaming runtime's rows of one entity as a push frame."""
    schema = history_schema(entity, spec)
    wide = wide_integers(spec)
    data = [
        {
            f"{entity}_id": r.entity_id,
            TIMESTAMP: r.request.occurred_at,
            CREATED: r.request.occurred_at,
            "currency": r.request.currency,
            **r.values,
            **{k: str(r.values[k]) for k in wide if k in r.values},
        }
        for r in rows
        if r.entity == entity
    ]
    return pl.DataFrame(data, schema=schema, orient="row")


def push(store, frame: pl.DataFrame, entity: str, online: bool = True, offline: bool = True) -> int:
    """Push rows (columns of `history_schema`) to the online store, the offline history,
    or both; returns the number of rows. A row older than the one online still lands in
    the offline history; on SQLite it also overwrites the online row (see module doc)."""
    from feast.data_source import PushMode

    if not (online or offline) or frame.is_empty():
        return 0
    mode = PushMode.ONLINE_AND_OFFLINE if online and offline else PushMode.ONLINE if online else PushMode.OFFLINE
    _check_columns(frame, entity, "push")
    store.push(push_source_name(entity), frame.to_pandas(use_pyarrow_extension_array=True), to=mode)
    return frame.height


def write_online(store, frame: pl.DataFrame, entity: str) -> int:
    """What `push(..., offline=False)` does, for a streaming writer that pushes a few
    times a second: the same conversion (Feast's own, from an Arrow table of the frame)
    and the same store call (`online_write_batch`, which every Feast online store
    implements), without the push's pandas round trip and per-call registry and schema
    checks — over half of each push's cost. tests/features/test_feast.py holds the two to the same
    stored rows. Returns the number of rows."""
    from feast.utils import _convert_arrow_fv_to_proto
    from feast.value_type import ValueType

    if frame.is_empty():
        return 0
    _check_columns(frame, entity, "write")
    view = store.get_feature_view(view_name(entity))
    rows = _convert_arrow_fv_to_proto(frame.to_arrow(), view, {f"{entity}_id": ValueType.STRING})
    store.provider.online_write_batch(store.config, view, rows, None)
    return frame.height


def _check_columns(frame: pl.DataFrame, entity: str, what: str) -> None:
    expected = list(history_schema(entity))
    if frame.columns != expected:
        raise FeatureStoreError(f"{what} {entity}: expected columns {expected}, got {frame.columns}")


def latest_rows(frame: pl.DataFrame, entity: str) -> pl.DataFrame:
    """Each entity's newest row: all the online store keeps, so all a backfill need push."""
    return frame.sort(TIMESTAMP, CREATED, maintain_order=True).unique(f"{entity}_id", keep="last", maintain_order=True)


def online_features(store, entity: str, entity_id: str, spec: Spec = DEFAULT_SPEC) -> dict[str, Any]:
    """The entity's latest online features (all None when nothing was pushed for it)."""
    refs = [f"{view_name(entity)}:{n}" for n in ("currency", *feature_names(entity, spec))]
    got = store.get_online_features(features=refs, entity_rows=[{f"{entity}_id": entity_id}]).to_dict()
    return {k: got[k][0] for k in (f"{entity}_id", "currency", *feature_names(entity, spec))}


def point_in_time(store, entity: str, entity_rows: pl.DataFrame, spec: Spec = DEFAULT_SPEC) -> pl.DataFrame:
    """The offline history joined point-in-time to `entity_rows` (`<entity>_id`,
    `event_timestamp`): each row gets the features of the latest history row at or
    before its timestamp (ties broken by `created`, and only rows created by then)."""
    refs = [f"{view_name(entity)}:{n}" for n in ("currency", *feature_names(entity, spec))]
    job = store.get_historical_features(
        entity_df=entity_rows.to_pandas(), features=refs, filter_by_created_timestamp=True
    )
    return pl.from_pandas(job.to_df())
