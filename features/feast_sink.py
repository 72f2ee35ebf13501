"""Bytewax sinks that push the streaming runtime's feature rows into Feast: online as
they change (every worker writes), and to the offline history (one writer).

Online: every worker pushes its own rows, so more than one worker needs the Redis
online store; the sink refuses to start on SQLite with several workers rather than lose
writes. Offline: Feast appends by reading and rewriting the whole history file, so two
writers would lose each other's rows; the history sink has a single partition, which
Bytewax routes to one worker. Both push once per batch, per entity.

After a resume Bytewax re-emits rows since its last snapshot; pushing them again is
harmless online (same values) and offline (the same row twice, identical timestamps and
values, which a point-in-time join reads once).
"""

from __future__ import annotations

from bytewax import operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition

from features import store
from features.definitions import DEFAULT_SPEC, Spec
from features.event_time import FeatureRow
from features.feast_repo import ENTITIES

_HISTORY = "history"


class _Pusher(StatelessSinkPartition[FeatureRow], StatefulSinkPartition[FeatureRow, None]):
    """Pushes a batch of rows, one push per entity, online or offline."""

    def __init__(self, settings: store.FeastSettings, spec: Spec, online: bool):
        self.fs, self.spec, self.online = store.open_store(settings), spec, online

    def write_batch(self, items: list[FeatureRow]) -> None:
        for entity in ENTITIES:
            store.push(self.fs, store.rows_frame(items, entity, self.spec), entity,
                       online=self.online, offline=not self.online)

    def snapshot(self) -> None:
        return None  # nothing to resume: a re-pushed row is harmless (see module doc)


class FeastOnlineSink(DynamicSink[FeatureRow]):
    def __init__(self, settings: store.FeastSettings, spec: Spec = DEFAULT_SPEC):
        self.settings, self.spec = settings, spec

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Pusher:
        if worker_count > 1 and self.settings.online_store == "sqlite":
            raise store.FeatureStoreError(
                f"{worker_count} workers would write the SQLite online store, which takes one writer: "
                "set feast.online_store: redis in configs/features.yaml")
        return _Pusher(self.settings, self.spec, online=True)


class FeastHistorySink(FixedPartitionedSink[FeatureRow, None]):
    """One partition, so one worker appends to the offline history files."""

    def __init__(self, settings: store.FeastSettings, spec: Spec = DEFAULT_SPEC):
        self.settings, self.spec = settings, spec

    def list_parts(self) -> list[str]:
        return [_HISTORY]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Pusher:
        return _Pusher(self.settings, self.spec, online=False)


def push_steps(rows: Stream[FeatureRow], settings: store.FeastSettings, spec: Spec = DEFAULT_SPEC,
               offline: bool = True) -> None:
    """Add the Feast outputs for the feature rows of `features.streaming.feature_steps`."""
    op.output("feast_online", rows, FeastOnlineSink(settings, spec))
    if offline:
        op.output("feast_history", op.key_on("history_key", rows, lambda _: _HISTORY), FeastHistorySink(settings, spec))
