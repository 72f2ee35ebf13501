"""A Bytewax source over Kafka partitions whose resume state is only ever a real offset.

Bytewax's own KafkaSource, with errors passed through instead of raised, records the
"offset" of an error report (librdkafka gives those -1001) as its position, so a transport
error during a broker restart could leave a snapshot that resumes from the wrong place.
This source advances only past messages it actually emits, treats transport errors as
what they are (librdkafka reconnects and refetches by itself), and in `once` mode stops a
partition when it reaches the end that partition had.

With `align=True` the partitions of one process are read in step by broker timestamp:
a partition hands on only messages no newer than the oldest unread message of any other
partition. Why: a flow working in event time (the risk flow's features) sees a backlog
read one poll batch per partition at a time as huge lateness — a buyer's events from one
merchant's partition arrive weeks before those from another's. Reading in timestamp
order reproduces the order the producer wrote in. It costs nothing when caught up: a
partition with nothing to read does not hold the others back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

IDLE = timedelta(milliseconds=10)  # how long a partition with nothing fetched rests before it looks again

# Set to end every partition at its next poll: the graceful stop (SIGTERM). The dataflow
# then completes like a --once run: the sink commits what it has and closes.
STOP = threading.Event()


class _Alignment:
    """Per partition of one process, the broker timestamp (ms) of its oldest message not
    yet handed on: -inf before its first poll, +inf when it has nothing to read."""

    def __init__(self):
        self._lock = threading.Lock()
        self._frontier: dict[int, float] = {}

    def join(self, partition: int) -> None:
        with self._lock:
            self._frontier[partition] = -math.inf

    def set(self, partition: int, ts: float) -> float:
        """Record a partition's frontier; returns the newest timestamp it may hand on."""
        with self._lock:
            self._frontier[partition] = ts
            return min(self._frontier.values())

    def leave(self, partition: int) -> None:
        with self._lock:
            self._frontier.pop(partition, None)


class _Partition(StatefulSourcePartition[list[Message], int]):
    def __init__(self, config: dict, topic: str, partition: int, offset: int, batch_size: int,
                 alignment: _Alignment | None = None):
        self._consumer = Consumer(config)
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        self._tp = TopicPartition(topic, partition)
        self._partition = partition
        self._offset = offset
        self._batch_size = batch_size
        self._eof = False
        self._align = alignment
        self._held: deque[Message] = deque()  # read, not handed on yet (alignment only)
        self._asked_at = -math.inf
        self._awake: datetime | None = None   # when Bytewax should ask again (None: at once)
        if alignment is not None:
            alignment.join(partition)

    def next_batch(self) -> list[list[Message]]:
        """One poll's messages as ONE item: the flow works per poll batch, so Bytewax's
        per-item cost is paid once per batch instead of once per message."""
        if STOP.is_set() or (self._eof and not self._held):
            raise StopIteration()
        self._awake = None
        if self._align is None:
            batch = self._poll()
        else:
            batch = self._aligned()
        if batch:
            self._offset = batch[-1].offset() + 1
        return [batch] if batch else []

    def next_awake(self) -> datetime | None:
        return self._awake

    def _poll(self) -> list[Message]:
        """What the client has fetched, without waiting: a poll that waits for a full batch
        blocks the worker, and with it every other partition and step of the flow, for the
        whole wait whenever messages trickle in. With nothing fetched, Bytewax is asked to
        come back in `IDLE` instead of spinning."""
        batch = []
        msgs = self._consumer.consume(self._batch_size, 0)
        if not msgs:
            self._awake = datetime.now(timezone.utc) + IDLE
        for msg in msgs:
            err = msg.error()
            if err is None:
                batch.append(msg)
            elif err.code() == KafkaError._PARTITION_EOF:
                self._eof = True
                break
            elif err.fatal():
                raise RuntimeError(f"kafka: fatal consumer error: {err.str()}")
            else:
                log.warning("kafka: %s (the client retries by itself)", err.str())
        return batch

    def _aligned(self) -> list[Message]:
        """Read when nothing is held; hand on the held messages no newer than every other
        partition's frontier."""
        fetched = not self._held and not self._eof
        if fetched:
            self._held.extend(self._poll())
        if self._held:
            frontier = float(self._held[0].timestamp()[1])
        elif self._eof or self._caught_up():  # nothing to read: hold nobody back
            frontier = math.inf
        else:  # an empty poll behind the end (the fetch has not come back yet): keep waiting
            return []
        limit = self._align.set(self._partition, frontier)
        batch = []
        while self._held and self._held[0].timestamp()[1] <= limit:
            batch.append(self._held.popleft())
        if batch and not self._held:  # until the next read, nothing newer than this may pass elsewhere
            self._align.set(self._partition, math.inf if self._eof else float(batch[-1].timestamp()[1]))
        return batch

    def _caught_up(self) -> bool:
        """Whether this partition has read up to the end the broker last reported. The
        client learns the end from fetched messages; a partition with none yet (an empty
        one) asks the broker, at most once a second."""
        low, high = self._consumer.get_watermark_offsets(self._tp, cached=True)
        if (high < 0 or (self._offset < 0 and low < 0)) and time.monotonic() >= self._asked_at + 1.0:
            self._asked_at = time.monotonic()
            try:
                low, high = self._consumer.get_watermark_offsets(self._tp, timeout=5)
            except KafkaException as exc:
                log.warning("kafka: end of partition %s unknown: %s", self._partition, exc.args[0].str())
        position = self._offset if self._offset >= 0 else low  # nothing read yet: the partition's start
        return high >= 0 and position >= high

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        if self._align is not None:
            self._align.leave(self._partition)
        self._consumer.close()


class PartitionSource(FixedPartitionedSource[list[Message], int]):
    """Every partition of `topic`, one list of messages per poll; state is the next
    offset to read in each."""

    def __init__(self, bootstrap: str, topic: str, once: bool, batch_size: int = 2000, align: bool = False):
        self._bootstrap, self._topic, self._once, self._batch_size = bootstrap, topic, once, batch_size
        self._alignment = _Alignment() if align else None

    def list_parts(self) -> list[str]:
        try:
            meta = AdminClient({"bootstrap.servers": self._bootstrap}).list_topics(self._topic, timeout=30)
        except KafkaException as exc:
            raise RuntimeError(f"no Kafka broker answers at {self._bootstrap}: {exc.args[0].str()}") from None
        topic = meta.topics.get(self._topic)
        if topic is None or topic.error is not None:
            raise RuntimeError(f"topic {self._topic!r} not found on {self._bootstrap}: run `clearline kafka up`")
        return [str(p) for p in sorted(topic.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        config = {
            "bootstrap.servers": self._bootstrap, "group.id": "clearline-unused",  # offsets live in recovery
            "enable.auto.commit": False, "enable.partition.eof": self._once,
            "fetch.max.bytes": 8 * 1024 * 1024, "reconnect.backoff.max.ms": 2000,
            # librdkafka prefetches up to 64 MiB per consumer by default, one consumer per
            # partition: bound it, or memory grows with the backlog instead of the batch
            "queued.max.messages.kbytes": 16 * 1024,
        }
        offset = OFFSET_BEGINNING if resume_state is None else resume_state
        return _Partition(config, self._topic, int(for_part), offset, self._batch_size, self._alignment)

