"""A Bytewax source that reads every partition of a topic with one consumer, as ONE
Bytewax partition, and hands messages on merged in broker-timestamp order.

Why: a flow that works in event time (the risk flow's features) must see the topic
about in the order it was written. Read partition by partition, a backlog arrives weeks
out of step — a buyer's events from one merchant's partition long before those from
another's — and looks like huge lateness. Merging restores the producer's order.

Why one partition and not one per Kafka partition kept in step: in step, each
partition may hand on only what is no newer than every other partition's oldest unread
message, so with live traffic they take turns a message or two at a time, and the flow
pays its per-item cost per message. Merged, one poll hands on everything that is ready
across the topic as one list.

What is ready: every read message older than the *limit*, the oldest of each
partition's frontier — nothing (+inf) if it has read everything up to the end the client
last learned, else the newest message it has read (what it has not read yet is no
older), or, when it holds none, the last timestamp it handed on (a backlog whose fetch
has not come back yet must not be overtaken). Strictly older: the limit's millisecond
may have more messages unread, so a millisecond's messages go out together, in event
time order, and the order handed on is the same whatever the polls, batch sizes and
restarts (a replayed backlog decides the same way every time). A partition holding a
full batch is paused, so memory stays one batch per partition. Offsets in the snapshot
are those handed on; what was read but held is read again after a resume.

A partition's fetch can go quiet in librdkafka around a pause (no message, no end of
partition reported: confluentinc/librdkafka#1435), and then the limit never moves and
nothing is handed on. So when nothing has moved for `STALL`, the source asks the broker
for the ends of the partitions holding it back: one that has handed on up to its end is
caught up; one that has not is told to fetch again from its next offset (a seek).
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from datetime import datetime, timezone

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Message, TopicPartition

from clearline.pipelines.connectors.kafka_source import (
    IDLE,
    STALL,
    STOP,
    consumer_config,
    sorted_out,
    topic_partitions,
)
from clearline.pipelines.connectors.kafka_watch import WatchedConsumer

Offsets = dict[int, int]  # Kafka partition -> next offset to hand on


def _ts(msg: Message) -> int:
    return msg.timestamp()[1]


_OCCURRED_AT = re.compile(rb'"occurred_at"\s*:\s*"([^"]{0,40})"')


def _order(msg: Message) -> tuple[int, bytes, int, int]:
    """Broker timestamp, then the event's own time as written: Kafka orders nothing across
    partitions within one millisecond, and a producer writing fast (a replayed backlog)
    puts many events in each — in event-time order is the best guess among them. Then
    partition and offset, so the order is total."""
    found = _OCCURRED_AT.search(msg.value() or b"")
    return _ts(msg), found.group(1) if found else b"", msg.partition(), msg.offset()


class _Merged(StatefulSourcePartition[list[Message], Offsets]):
    def __init__(self, config: dict, topic: str, partitions: list[int], offsets: Offsets, batch_size: int):
        self._topic, self._batch_size, self._once = topic, batch_size, bool(config.get("enable.partition.eof"))
        self._offsets = {p: offsets.get(p, OFFSET_BEGINNING) for p in partitions}
        self._client = WatchedConsumer(config, self._assignment())
        self._held: dict[int, deque[Message]] = {p: deque() for p in partitions}
        self._handed: dict[int, float] = {p: -math.inf for p in partitions}  # last timestamp handed on
        self._ended: set[int] = set()
        self._paused: set[int] = set()
        self._awake: datetime | None = None
        self._ends: dict[int, int] = {}  # the end the broker last gave when asked (see `_unstall`)
        self._moved = time.monotonic()  # when something was last read or handed on

    def next_batch(self) -> list[list[Message]]:
        if STOP.is_set() or (len(self._ended) == len(self._held) and not any(self._held.values())):
            raise StopIteration()
        if self._client.rebuild_if_lost(self._assignment):
            self._held = {p: deque() for p in self._held}  # read again by the new consumer
            self._paused = set()
        msgs = self._client.consumer.consume(self._batch_size, 0)
        self._awake = None if msgs else datetime.now(timezone.utc) + IDLE
        read, ended = sorted_out(msgs, {p: self._reading_at(p) for p in self._held})
        self._ended |= ended
        for msg in read:
            self._held[msg.partition()].append(msg)
        batch = self._ready()
        self._pace()
        if msgs or batch:
            self._moved = time.monotonic()
        elif time.monotonic() - self._moved > STALL.total_seconds():
            self._unstall()
        return [batch] if batch else []

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> Offsets:
        return dict(self._offsets)

    def close(self) -> None:
        self._client.close()

    def _assignment(self) -> list[TopicPartition]:
        """Every partition from the next offset to hand on (what is held is read again)."""
        return [TopicPartition(self._topic, p, offset) for p, offset in self._offsets.items()]

    def _ready(self) -> list[Message]:
        limit = min(self._frontier(p) for p in self._held)
        out: list[Message] = []
        for p, held in self._held.items():
            while held and _ts(held[0]) < limit:  # strictly: more of the limit's millisecond may be unread
                out.append(held.popleft())
            if out and out[-1].partition() == p:
                self._offsets[p] = out[-1].offset() + 1
                self._handed[p] = float(_ts(out[-1]))
        out.sort(key=_order)
        return out

    def _frontier(self, p: int) -> float:
        """No message of this partition still unread is older than this: its newest read
        one (a partition's timestamps do not go back), or see the module doc."""
        if p in self._ended or self._caught_up(p):
            return math.inf
        if self._held[p]:
            return float(_ts(self._held[p][-1]))
        return self._handed[p]

    def _caught_up(self, p: int) -> bool:
        """Whether this partition has read everything up to the end the client last learned
        (False while unknown: nothing fetched yet). What comes after was produced after
        that fetch, so it is newer than what the others hold, give or take a fetch."""
        low, high = self._client.consumer.get_watermark_offsets(TopicPartition(self._topic, p), cached=True)
        high = max(high, self._ends.get(p, -1))
        position = self._reading_at(p)
        return high >= 0 and (position if position >= 0 else low) >= high

    def _reading_at(self, p: int) -> int:
        """The next offset this partition reads: after what it holds, else after what it
        handed on (negative: from its start)."""
        held = self._held[p]
        return held[-1].offset() + 1 if held else self._offsets[p]

    def _unstall(self) -> None:
        """Nothing read and nothing handed on for `STALL`: each partition that may hold the
        limit back (no end reported, not known caught up, not paused for a full batch) is
        checked with the broker: caught up (and, in `once` mode, ended), or fetched again
        from the next offset it reads. One holding messages counts too: what it holds may
        all be in the limit's millisecond, which goes out only once it reads on."""
        self._moved = time.monotonic()
        for p in self._held:
            if p in self._ended or p in self._paused or self._caught_up(p):
                continue
            end = self._client.caught_up_or_refetch(self._topic, p, self._reading_at(p))
            if end is not None:
                self._ends[p] = end
                if self._once:
                    self._ended.add(p)

    def _pace(self) -> None:
        """Pause a partition holding a full batch (the others must catch up to it first);
        resume it once it has handed on. Not one whose messages all share a millisecond:
        it must read on to learn that millisecond is complete, or nothing would move."""
        full = {p for p, held in self._held.items() if len(held) >= self._batch_size and _ts(held[0]) < _ts(held[-1])}
        if full - self._paused:
            self._client.consumer.pause([TopicPartition(self._topic, p) for p in full - self._paused])
        if self._paused - full:
            self._client.consumer.resume([TopicPartition(self._topic, p) for p in self._paused - full])
        self._paused = full


class MergedSource(FixedPartitionedSource[list[Message], Offsets]):
    """Every partition of `topic` merged in broker-timestamp order, one list per poll;
    state is the next offset to hand on in each. `once`: stop when every partition has
    reached the end it had."""

    def __init__(self, bootstrap: str, topic: str, once: bool, batch_size: int = 2000):
        self._bootstrap, self._topic, self._once, self._batch_size = bootstrap, topic, once, batch_size

    def list_parts(self) -> list[str]:
        return ["merged"]

    def build_part(self, step_id: str, for_part: str, resume_state: Offsets | None) -> _Merged:
        return _Merged(
            consumer_config(self._bootstrap, self._once),
            self._topic,
            topic_partitions(self._bootstrap, self._topic),
            resume_state or {},
            self._batch_size,
        )
