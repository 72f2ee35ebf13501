"""Bytewax sinks that push the streaming runtime's feature rows into Feast: online as they
change, and to the offline history.

Each sink has one partition, so one worker writes each store, whatever the number of
workers: SQLite's online store takes one writer, and Feast appends to the offline history
by reading and rewriting the whole file, so two writers would lose each other's rows.

The pushing itself happens in a child process (`clearline.features.feast_writer`), one per sink:
a push is mostly Feast's Python (frames to protobufs, one SQLite upsert per feature) and
would otherwise hold the flow's only busy core; in a child it runs on the other one. The
sink hands over each entity's frame and goes on. An epoch is never recorded as done while
its rows are neither in the store nor in the snapshot: a snapshot (the end of a Bytewax
epoch) holds the frames handed over that the child has not yet pushed, and a resumed sink
pushes those first; at close the sink waits until everything is pushed. Why not wait at the
snapshot: an offline push rewrites the whole history file (hundreds of milliseconds), and
a wait for it stopped the whole flow, every feature and decision behind it, once per epoch.
What a writer owes stays bounded all the same: a sink whose writer is more than
`MOST_OWED` pushes behind waits there until it is not (memory and snapshots stay small,
and a writer starved of CPU gets it back).

Rows come in lists (the streaming runtime's one item per arrival batch), each made into
push frames once (`feast_frames`) before anything holds them; whatever frames reach a sink
in one go are pushed in one go, one push per entity — online only each entity's newest
row of them, since that is all the online store keeps.

After a resume Bytewax re-emits rows since its last snapshot, after the snapshot's
unpushed frames; pushing a row again is harmless online (same values, pushed in the same
order as before) and offline (the same row twice, identical timestamps and values, which a
point-in-time join reads once).
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
MOST_OWED = 4  # pushes a writer may be behind before its sink waits for it (see module doc)


def _frames(rows: list[FeatureRow], spec: Spec) -> list[EntityFrame]:
    return [(entity, frame) for entity in ENTITIES if not (frame := store.rows_frame(rows, entity, spec)).is_empty()]


class _Pusher(StatefulSinkPartition[list[EntityFrame], list[EntityFrame]]):
    def __init__(self, settings: store.FeastSettings, online: bool, unpushed: list[EntityFrame] | None = None):
        self.online = online
        self.writer = FeastWriter.of(settings, online)
        for entity, frame in unpushed or []:  # handed over before the last snapshot, never acknowledged
            self.writer.push(entity, frame)

    def write_batch(self, items: list[list[EntityFrame]]) -> None:
        for entity in ENTITIES:
            frames = [frame for batch in items for name, frame in batch if name == entity]
            if frames:
                frame = pl.concat(frames, rechunk=False)
                self.writer.push(entity, store.latest_rows(frame, entity) if self.online else frame)
        self.writer.wait(most=MOST_OWED)

    def snapshot(self) -> list[EntityFrame]:
        return self.writer.unacknowledged()  # in the store, or in the snapshot: see the module doc

    def close(self) -> None:
        self.writer.close()


class FeastSink(FixedPartitionedSink[list[EntityFrame], list[EntityFrame]]):
    """Push frames to Feast's online store (`online=True`) or offline history, from one
    partition: one writer."""

    def __init__(self, settings: store.FeastSettings, online: bool = True):
        self.settings, self.online = settings, online

    def list_parts(self) -> list[str]:
        return ["online" if self.online else "history"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: list[EntityFrame] | None) -> _Pusher:
        return _Pusher(self.settings, self.online, resume_state)


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
