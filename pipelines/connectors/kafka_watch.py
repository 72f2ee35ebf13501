"""Kafka clients that notice when they have forgotten every broker, and start over
instead of waiting forever.

Why: librdkafka (2.10 on, still in 2.16) forgets a broker that a metadata response
leaves out, and a broker in controlled shutdown answers metadata listing no broker at
all. A client that asks at that moment forgets the whole cluster; with no broker left to
ask it skips every metadata refresh ("no usable brokers"), and the re-bootstrap that
should follow does not always start (confluentinc/librdkafka#5301). It then stays idle
after the broker is back, for good. The broker-restart test caught it under load: some
of a ledger flow's four consumers fetched nothing for 180 s after the restart while the
others went on; another time the test's own producer failed 15,902 of 19,784 messages.

A client's statistics list the brokers it knows. A consumer made here reports them every
`STATS_MS`; once `LOST_AFTER` reports in a row name no real broker (one it learned or was
configured with, not its internal or group-coordinator handles), the source closes it
and assigns a new one from its own offsets, so nothing is skipped or read twice. A
producer made here, found lost when a flush stalls, hands the messages it still holds to
a new client. An ordinary outage is not this: the client keeps the brokers it knows, and
reconnects by itself.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import suppress
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from clearline.pipelines.connectors.kafka_bounded import Unfinished, metadata, on_own_thread

log = logging.getLogger(__name__)

STATS_MS = 2_000
LOST_AFTER = 2  # reports in a row: a re-bootstrap in progress adds its brokers back within one
CLOSE_S = 5.0  # how long a lost consumer's close is waited for (an ordinary one takes milliseconds)


class BrokerSight:
    """A `stats_cb`: how many statistics reports in a row named no real broker."""

    def __init__(self) -> None:
        self.blind = 0

    def __call__(self, stats: str) -> None:
        brokers = json.loads(stats).get("brokers", {}).values()
        known = any(b.get("source") in ("learned", "configured") for b in brokers)
        self.blind = 0 if known else self.blind + 1

    @property
    def lost(self) -> bool:
        return self.blind >= LOST_AFTER


class WatchedConsumer:
    """A consumer over a fixed assignment, built anew by `rebuild_if_lost` from the offsets
    the caller says it has reached when its client has lost every broker. A source polls
    it every few milliseconds, so its statistics never pile up."""

    def __init__(self, config: dict, assignment: list[TopicPartition]):
        self._config = config
        self.consumer, self.sight = self._connect(assignment)
        self._unanswered = 0  # checks in a row the broker did not answer
        self._next_check = 0.0  # monotonic time before which no check is made

    def _connect(self, assignment: list[TopicPartition]) -> tuple[Consumer, BrokerSight]:
        sight = BrokerSight()
        consumer = Consumer({**self._config, "statistics.interval.ms": STATS_MS, "stats_cb": sight})
        consumer.assign(assignment)
        return consumer, sight

    def rebuild_if_lost(self, reached: Callable[[], list[TopicPartition]]) -> bool:
        """Start over at the assignment `reached()` gives if the client knows no broker any
        more; True if so (whatever the old client had fetched and not handed on is fetched
        again). A function, so the sources' every poll builds no assignment in vain.

        The old client's close has no timeout (`kafka_bounded`), and this one knows no
        broker: it is closed on a thread of its own and waited for `CLOSE_S` at the most,
        then left to end there, said in the log. Nothing the flow needs waits on it: the
        sources' consumers commit nothing (their offsets live in Bytewax's recovery, and the
        new client starts from `reached()`) and join no group (an assignment, no
        subscription), so a close left behind holds only the old client's own memory and
        threads, once per loss."""
        if not self.sight.lost:
            return False
        assignment = reached()
        where = ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in assignment)
        log.warning(
            "kafka: the consumer of %s knows no broker any more (librdkafka#5301); starting a new one from there", where
        )
        old = self.consumer
        with suppress(Unfinished):  # said in the log; the new client reads on regardless
            on_own_thread(f"the close of the lost consumer of {where}", CLOSE_S, lambda: old, lambda c: c.close())
        self.consumer, self.sight = self._connect(assignment)
        return True

    def caught_up_or_refetch(self, topic: str, partition: int, offset: int) -> int | None:
        """Asked when a partition has fetched nothing for a while: the end the broker gives
        for it if the caller, standing at `offset` (negative: the partition's start), has
        reached it. If not, the client's fetch has gone quiet without a word (librdkafka
        can stop fetching a partition around a pause or a broker restart: no message, no
        end of partition; confluentinc/librdkafka#1435), so it is resumed and sought to
        `offset`, which starts it again; None then, and when the broker does not answer
        (an outage: the client reconnects by itself).

        A check waits up to `PROBE_S` for the broker, holding the worker and every step of
        the flow. So while the broker does not answer, the checks back off (2, 4, 8, 16 s
        apart, for any partition), and an outage costs the flow one wait in so many seconds
        rather than one per idle partition every `STALL`."""
        if time.monotonic() < self._next_check:
            return None
        tp = TopicPartition(topic, partition)
        try:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=PROBE_S, cached=False)
        except KafkaException as exc:
            self._unanswered += 1
            wait = min(CHECK_BACKOFF_MAX_S, PROBE_S * 2**self._unanswered)
            self._next_check = time.monotonic() + wait
            log.warning(
                "kafka: %s [%d] could not be checked: %s; next check in %.0f s",
                topic,
                partition,
                exc.args[0].str(),
                wait,
            )
            return None
        self._unanswered = 0
        position = offset if offset >= 0 else low
        if position >= high:
            return high
        log.warning("kafka: %s [%d] fetched nothing at %d of %d: fetching again", topic, partition, position, high)
        self.consumer.resume([tp])  # harmless if not paused
        self.consumer.seek(TopicPartition(topic, partition, position))
        return None

    def close(self) -> None:
        self.consumer.close()


_PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}  # only ever from a hand-over: nothing else purges
PROBE_S = 1.0
CHECK_BACKOFF_MAX_S = 16.0  # the longest a quiet fetch can go unnoticed after an outage ends


class WatchedProducer:
    """A producer (`produce`, `poll`, `flush`, `len`) that, when its client has lost every
    broker, starts a new client and hands it every message the lost one still holds; each
    message's delivery callback fires once, from whichever client delivered it.

    Not told by statistics, as a consumer is: a producer may sit unpolled for hours (a
    dead-letter producer in a clean run, an inbox watcher), and an unpolled client's
    reports pile up in its queue, 6.5 KB every `STATS_MS`. A flush is where it matters:
    one that makes no progress for `PROBE_S` asks whether the cluster answers this client
    and a new one. Only a client that cannot reach a cluster a new client reaches is lost
    (in an ordinary outage neither answers, and the client waits it out by itself); it
    holds its messages for want of a broker, none in flight, so none is sent twice."""

    def __init__(self, config: dict):
        self._config = config
        self.producer = Producer(config)
        self._moved = 0  # messages handed over by the last hand-over

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        on_delivery: Callable[[Any, Any], None] | None = None,
        **kwargs: Any,
    ) -> None:
        def delivered(err, msg) -> None:
            if err is not None and err.code() in _PURGED:
                self._moved += 1
                self.produce(topic, value, key, on_delivery, **kwargs)
            elif on_delivery is not None:
                on_delivery(err, msg)

        self.producer.produce(topic, value, key, on_delivery=delivered, **kwargs)

    def poll(self, timeout: float = 0) -> int:
        return self.producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        """Like `Producer.flush`, in `PROBE_S` slices, handing over to a new client when
        this one is lost."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.producer.flush(max(0.0, min(PROBE_S, deadline - time.monotonic())))
            if left == 0 or time.monotonic() >= deadline:
                return left
            if self.lost():
                self.hand_over()

    def __len__(self) -> int:
        return len(self.producer)

    def lost(self) -> bool:
        """Whether the cluster answers a new client but not this one. The new client is
        asked and closed on a thread of its own (`kafka_bounded.metadata`), so a flush never
        waits on its close, which has no timeout; one that has not answered within `PROBE_S`
        plus `kafka_bounded.GRACE_S` counts as a silent cluster."""
        return not _answers(lambda: self.producer.list_topics(timeout=PROBE_S)) and _answers(
            lambda: metadata(self._config["bootstrap.servers"], None, PROBE_S)
        )

    def hand_over(self) -> None:
        """Move every message this client holds to a new client, which sends it."""
        lost, self.producer, self._moved = self.producer, Producer(self._config), 0
        lost.purge()
        lost.flush(5)  # serves the purged messages' callbacks: each is produced again on the new client
        log.warning(
            "kafka: a producer knew no broker any more (librdkafka#5301); its %d waiting message(s) went to a new one",
            self._moved,
        )


def _answers(ask: Callable[[], object]) -> bool:
    """Whether `ask()`, a metadata request, is answered."""
    try:
        ask()
        return True
    except KafkaException:
        return False
