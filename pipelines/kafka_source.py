"""A Bytewax source over Kafka partitions whose resume state is only ever a real offset.

Bytewax's own KafkaSource, with errors passed through instead of raised, records the
"offset" of an error report (librdkafka gives those -1001) as its position, so a transport
error during a broker restart could leave a snapshot that resumes from the wrong place.
This source advances only past messages it actually emits, treats transport errors as
what they are (librdkafka reconnects and refetches by itself), and in `once` mode stops a
partition when it reaches the end that partition had.
"""

from __future__ import annotations

import logging
import threading
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

# Set to end every partition at its next poll: the graceful stop (SIGTERM). The dataflow
# then completes like a --once run: the sink commits what it has and closes.
STOP = threading.Event()


class _Partition(StatefulSourcePartition[list[Message], int]):
    def __init__(self, config: dict, topic: str, partition: int, offset: int, batch_size: int):
        self._consumer = Consumer(config)
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        self._offset = offset
        self._batch_size = batch_size
        self._eof = False

    def next_batch(self) -> list[list[Message]]:
        """One poll's messages as ONE item: the flow works per poll batch, so Bytewax's
        per-item cost is paid once per batch instead of once per message."""
        if self._eof or STOP.is_set():
            raise StopIteration()
        batch = []
        for msg in self._consumer.consume(self._batch_size, 0.05):
            err = msg.error()
            if err is None:
                batch.append(msg)
                self._offset = msg.offset() + 1
            elif err.code() == KafkaError._PARTITION_EOF:
                self._eof = True
                break
            elif err.fatal():
                raise RuntimeError(f"kafka: fatal consumer error: {err.str()}")
            else:
                log.warning("kafka: %s (the client retries by itself)", err.str())
        return [batch] if batch else []

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()


class PartitionSource(FixedPartitionedSource[list[Message], int]):
    """Every partition of `topic`, one list of messages per poll; state is the next
    offset to read in each."""

    def __init__(self, bootstrap: str, topic: str, once: bool, batch_size: int = 2000):
        self._bootstrap, self._topic, self._once, self._batch_size = bootstrap, topic, once, batch_size

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
        return _Partition(config, self._topic, int(for_part), offset, self._batch_size)

