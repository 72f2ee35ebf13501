"""Bytewax sinks that push the streaming runtime's feature rows into Feast: online as they
change, and to the offline history.

Each sink has one partition, so one worker writes each store, whatever the number of
workers: SQLite's online store takes one writer, and Feast appends to the offline history
by reading and rewriting the whole file, so two writers would lose each other's rows.

The pushing itself happens in a child process (`clearline.features.feast_writer`), one per sink:
a push is mostly Feast's Python (frames to protobufs, one SQLite upsert per feature) and
would otherwise hold the flow's only busy core; in a child it runs on the other one. The
sink hands over each entity's frame and goes on; at every snapshot (the end of a Bytewax
epoch) and at close it waits until the child has pushed everything handed over, so an
epoch is never recorded as done while its rows are not in the store.

Rows come in lists (the streaming runtime's one item per arrival batch), each made into
push frames once (`feast_frames`) before anything holds them; whatever frames reach a sink
in one go are pushed in one go, one push per entity — online only each entity's newest
row of them, since that is all the online store keeps.

After a resume Bytewax re-emits rows since its last snapshot; pushing them again is
harmless online (same values) and offline (the same row twice, identical timestamps and
values, which a point-in-time join reads once).
"""

from __future__ import annotations

import polars as pl
from bytewax import operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from clearline.features import store
from clearline.features.definitions import DEFAULT_SPEC, Spec
from clearline.features.event_time import FeatureRow
from clearline.features.feast_repo import ENTITIES
from clearline.features.feast_writer import FeastWriter

EntityFrame = tuple[str, pl.DataFrame]  # an entity's rows of one batch, as a push frame


def _frames(rows: list[FeatureRow], spec: Spec) -> list[EntityFrame]:
    return [(entity, frame) for entity in ENTITIES if not (frame := store.rows_frame(rows, entity, spec)).is_empty()]


class _Pusher(StatefulSinkPartition[list[EntityFrame], None]):
    def __init__(self, settings: store.FeastSettings, online: bool):
        self.online = online
        self.writer = FeastWriter.of(settings, online)

    def write_batch(self, items: list[list[EntityFrame]]) -> None:
        for entity in ENTITIES:
            frames = [frame for batch in items for name, frame in batch if name == entity]
            if frames:
                frame = pl.concat(frames, rechunk=False)
                self.writer.push(entity, store.latest_rows(frame, entity) if self.online else frame)

    def snapshot(self) -> None:
        self.writer.wait()  # the epoch ends only once its rows are in the store
        return None  # nothing to resume: a re-pushed row is harmless (see module doc)

    def close(self) -> None:
        self.writer.close()


class FeastSink(FixedPartitionedSink[list[EntityFrame], None]):
    """Push frames to Feast's online store (`online=True`) or offline history, from one
    partition: one writer."""

    def __init__(self, settings: store.FeastSettings, online: bool = True):
        self.settings, self.online = settings, online

    def list_parts(self) -> list[str]:
        return ["online" if self.online else "history"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Pusher:
        return _Pusher(self.settings, self.online)


def feast_frames(step_id: str, rows: Stream[list[FeatureRow]], spec: Spec = DEFAULT_SPEC) -> Stream[list[EntityFrame]]:
    """Each list of feature rows as push frames, one per entity it has rows of: made once
    for both stores, and what a gathering step holds and snapshots (a frame pickles as
    Arrow, some thirty times cheaper than the rows it holds)."""
    return op.map(step_id, rows, lambda batch: _frames(batch, spec) if batch else [])


def push_frames(
    frames: Stream[list[EntityFrame]],
    settings: store.FeastSettings,
    offline: bool = True,
    online_frames: Stream[list[EntityFrame]] | None = None,
) -> None:
    """Add the Feast outputs for lists of push frames (`feast_frames`); the online store
    may take its own stream (`online_frames`: e.g. gathered more often)."""
    online = online_frames if online_frames is not None else frames
    op.output("feast_online", op.key_on("online_key", online, lambda _: "online"), FeastSink(settings, online=True))
    if offline:
        op.output(
            "feast_history", op.key_on("history_key", frames, lambda _: "history"), FeastSink(settings, online=False)
        )


def push_steps(
    rows: Stream[list[FeatureRow]], settings: store.FeastSettings, spec: Spec = DEFAULT_SPEC, offline: bool = True
) -> None:
    """Add the Feast outputs for lists of feature rows (`clearline.features.streaming.feature_steps`)."""
    push_frames(feast_frames("feast_frames", rows, spec), settings, offline)
