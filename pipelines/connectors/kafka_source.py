"""A Bytewax source over Kafka partitions whose resume state is only ever a real offset.

Bytewax's own KafkaSource, with errors passed through instead of raised, records the
"offset" of an error report (librdkafka gives those -1001) as its position, so a transport
error during a broker restart could leave a snapshot that resumes from the wrong place.
This source advances only past messages it actually emits, treats transport errors as
what they are (librdkafka reconnects and refetches by itself, unless it has lost every
broker: then `clearline.pipelines.connectors.kafka_watch` starts a new consumer), and in `once` mode stops a
partition when it reaches the end that partition had.

A flow that works in event time over several partitions reads them merged in broker
timestamp order instead: `clearline.pipelines.connectors.merged_source`.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from clearline.pipelines.connectors.kafka_bounded import metadata
from clearline.pipelines.connectors.kafka_watch import WatchedConsumer

log = logging.getLogger(__name__)

IDLE = timedelta(milliseconds=10)  # how long a partition with nothing fetched rests before it looks again
STALL = timedelta(seconds=2)  # nothing read for this long: ask the broker whether the fetch has gone quiet

# Set to end every partition at its next poll: the graceful stop (SIGTERM). The dataflow
# then completes like a --once run: the sink commits what it has and closes.
STOP = threading.Event()


class _Partition(StatefulSourcePartition[list[Message], int]):
    def __init__(self, config: dict, topic: str, partition: int, offset: int, batch_size: int):
        self._topic, self._partition, self._once = topic, partition, bool(config.get("enable.partition.eof"))
        self._offset = offset
        self._client = WatchedConsumer(config, self._assignment())
        self._batch_size = batch_size
        self._eof = False
        self._awake: datetime | None = None  # when Bytewax should ask again (None: at once)
        self._moved = time.monotonic()  # when a message was last read

    def next_batch(self) -> list[list[Message]]:
        """One poll's messages as ONE item: the flow works per poll batch, so Bytewax's
        per-item cost is paid once per batch instead of once per message."""
        if STOP.is_set() or self._eof:
            raise StopIteration()
        self._awake = None
        self._client.rebuild_if_lost(self._assignment)
        batch = self._poll()
        if batch:
            self._offset = batch[-1].offset() + 1
            self._moved = time.monotonic()
        elif not self._eof and time.monotonic() - self._moved > STALL.total_seconds():
            self._unstall()
        return [batch] if batch else []

    def _unstall(self) -> None:
        """Nothing read for `STALL`: caught up with the broker (in `once` mode: ended, the
        end of partition having gone unsaid), or the client's fetch went quiet and is
        started again (`WatchedConsumer.caught_up_or_refetch`)."""
        self._moved = time.monotonic()
        end = self._client.caught_up_or_refetch(self._topic, self._partition, self._offset)
        self._eof = end is not None and self._once

    def next_awake(self) -> datetime | None:
        return self._awake

    def _poll(self) -> list[Message]:
        """What the client has fetched, without waiting: a poll that waits for a full batch
        blocks the worker, and with it every other partition and step of the flow, for the
        whole wait whenever messages trickle in. With nothing fetched, Bytewax is asked to
        come back in `IDLE` instead of spinning."""
        msgs = self._client.consumer.consume(self._batch_size, 0)
        if not msgs:
            self._awake = datetime.now(timezone.utc) + IDLE
        batch, ended = sorted_out(msgs, {self._partition: self._offset})
        self._eof = bool(ended)
        return batch

    def snapshot(self) -> int:
        return self._offset

    def _assignment(self) -> list[TopicPartition]:
        return [TopicPartition(self._topic, self._partition, self._offset)]

    def close(self) -> None:
        self._client.close()


class PartitionSource(FixedPartitionedSource[list[Message], int]):
    """Every partition of `topic`, one list of messages per poll; state is the next
    offset to read in each."""

    def __init__(self, bootstrap: str, topic: str, once: bool, batch_size: int = 2000):
        self._bootstrap, self._topic, self._once, self._batch_size = bootstrap, topic, once, batch_size

    def list_parts(self) -> list[str]:
        return [str(p) for p in topic_partitions(self._bootstrap, self._topic)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        offset = OFFSET_BEGINNING if resume_state is None else resume_state
        return _Partition(
            consumer_config(self._bootstrap, self._once), self._topic, int(for_part), offset, self._batch_size
        )


def consumer_config(bootstrap: str, once: bool) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": "clearline-unused",  # offsets live in recovery
        "enable.auto.commit": False,
        "enable.partition.eof": once,
        "fetch.max.bytes": 8 * 1024 * 1024,
        "reconnect.backoff.max.ms": 2000,
        # librdkafka prefetches up to 64 MiB per consumer by default: bound it, or memory
        # grows with the backlog instead of the batch
        "queued.max.messages.kbytes": 16 * 1024,
    }


# A flow (re)started while its broker restarts waits for it rather than exit: a broker
# restart takes 10 to 40 s on a small machine. Past this, it is an outage, said as such.
BROKER_WAIT_S = 180.0
METADATA_S = 5.0  # one metadata request's timeout


def topic_partitions(bootstrap: str, topic: str, wait_s: float = BROKER_WAIT_S) -> list[int]:
    """`topic`'s partitions, asked again until a broker answers, for `wait_s` at the most.
    Each request's client is asked and closed on a thread of its own
    (`kafka_bounded.metadata`): a close that never ends does not hold the flow at start-up."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            meta = metadata(bootstrap, topic, METADATA_S)
            break
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"no Kafka broker answers at {bootstrap} (waited {wait_s:g} s): {exc.args[0].str()}"
                ) from None
            log.warning("no Kafka broker answers at %s yet (%s); waiting for it", bootstrap, exc.args[0].str())
    found = meta.topics.get(topic)
    if found is None or found.error is not None:
        raise RuntimeError(f"topic {topic!r} not found on {bootstrap}: run `clearline kafka up`")
    return sorted(found.partitions)


def sorted_out(msgs: list[Message], reading: dict[int, int]) -> tuple[list[Message], set[int]]:
    """A poll's messages, and the partitions it reported at their end (`once` mode);
    transport errors are logged (the client retries by itself), fatal ones raised.

    `reading` is each partition's next offset to read (negative: from its start), moved on
    here. librdkafka can deliver a partition's messages again after a seek or a resume
    (the stall check's refetch, under load: offsets 0-49 twice in one run), so a message
    behind it is dropped, said once per poll. (An offset past it is kept: retention or a
    transaction marker leaves gaps.)"""
    batch, ended = [], set()
    again: dict[int, list[int]] = {}
    for msg in msgs:
        err, p = msg.error(), msg.partition()
        if err is None:
            if msg.offset() < reading.get(p, -1):
                again.setdefault(p, []).append(msg.offset())
                continue
            batch.append(msg)
            reading[p] = msg.offset() + 1
        elif err.code() == KafkaError._PARTITION_EOF:
            ended.add(p)
        elif err.fatal():
            raise RuntimeError(f"kafka: fatal consumer error: {err.str()}")
        else:
            log.warning("kafka: %s (the client retries by itself)", err.str())
    for p, offsets in again.items():
        log.warning(
            "kafka: partition %d delivered %d message(s) again (offsets %d-%d; it reads from %d): dropped",
            p,
            len(offsets),
            min(offsets),
            max(offsets),
            reading[p],
        )
    return batch, ended
