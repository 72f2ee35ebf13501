"""librdkafka calls that have no bound of their own, made on a thread of their own so that
their caller waits for them a bounded time.

Why: a client is closed (rd_kafka_destroy) where its last reference goes, and that close
has no timeout: it joins librdkafka's threads, and is reported to wait for good on a
metadata request still in flight (confluentinc/librdkafka#1640, open; a silent CI hang fits
it, not proven: 810827c). A consumer's `close` (rd_kafka_consumer_close, then the destroy)
has none either. Made on a flow's own thread, such a call would hold the flow, nothing said.

So a throwaway client is made, asked and dropped on a daemon thread, and its caller waits
for the answer alone (`metadata`); a close is waited for a bounded time (`on_own_thread`).
A call past its bound is said in the log and left to end, or not, on its thread, and the
caller gets `Unfinished`: a `KafkaException`, so a caller that takes a broker's silence in
its stride takes this too.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

log = logging.getLogger(__name__)

GRACE_S = 5.0  # past a request's own timeout, how long its answer is still waited for

C = TypeVar("C")
T = TypeVar("T")


class Unfinished(KafkaException):
    """A call given up after its bound; it goes on, or hangs, on its own thread."""


def on_own_thread(what: str, wait_s: float, client: Callable[[], C], use: Callable[[C], T]) -> T:
    """`use(client())` on a daemon thread, waited for `wait_s` at the most: its result, or
    its exception raised here, or `Unfinished` (said in the log). The thread drops its
    reference to the client after handing the answer over, so the close that drop may do
    never holds the caller."""
    answers: queue.Queue[tuple[bool, object]] = queue.Queue()

    def run() -> None:
        try:
            held = client()
            answers.put((True, use(held)))
        except Exception as exc:  # handed over without its traceback: that holds this frame, and so the client
            answers.put((False, exc.with_traceback(None)))

    threading.Thread(target=run, name=f"kafka: {what}", daemon=True).start()
    try:
        ok, answer = answers.get(timeout=wait_s)
    except queue.Empty:
        log.warning("kafka: %s did not return within %g s: given up, left to end on a thread of its own", what, wait_s)
        raise Unfinished(KafkaError(KafkaError._TIMED_OUT, f"{what} did not return within {wait_s:g} s")) from None
    if not ok:
        raise answer
    return answer


def metadata(bootstrap: str, topic: str | None, timeout: float) -> ClusterMetadata:
    """The cluster's metadata (`topic`'s alone, if named) from a new client, asked and
    closed on a thread of its own: `timeout` plus `GRACE_S` at the most, a request that has
    not returned by then failing like a broker's silence (`Unfinished`)."""
    return on_own_thread(
        "the metadata request",
        timeout + GRACE_S,
        lambda: AdminClient({"bootstrap.servers": bootstrap}),
        lambda admin: admin.list_topics(topic, timeout=timeout),
    )
