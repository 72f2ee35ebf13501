"""Hold a stream's lists and let them go as one, at most a set time after the first
arrived: a step whose cost is per call (a Feast push, a model call, a flush to Kafka)
then pays it a few times a second instead of once per poll batch, at the price of that
much latency.

Bytewax's `collect` does this too, but its snapshot deep-copies what it holds; what
flows here is frozen records (or rows never changed after they are made), so a shallow
copy is as safe and far cheaper on every epoch. What is held when the flow snapshots is
in the snapshot, so a resume lets it go instead of losing it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Generic, Iterable, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulLogic

T = TypeVar("T")


class _Gather(StatefulLogic[list[T], list[T], list[T]], Generic[T]):
    def __init__(self, every: timedelta, most: int, resumed: list[T] | None):
        self.every, self.most = every, most
        self.held: list[T] = list(resumed or [])
        self.due: datetime | None = datetime.now(timezone.utc) if self.held else None

    def on_item(self, value: list[T]) -> tuple[Iterable[list[T]], bool]:
        if not value:  # most live polls make no rows, answers or late events: nothing to wait for
            return [], StatefulLogic.RETAIN
        if not self.held:
            self.due = datetime.now(timezone.utc) + self.every
        self.held.extend(value)
        return (self._release() if len(self.held) >= self.most else []), StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[list[T]], bool]:
        return self._release(), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[list[T]], bool]:
        return self._release(), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self.due

    def snapshot(self) -> list[T]:
        return list(self.held)

    def _release(self) -> list[list[T]]:
        out, self.held, self.due = self.held, [], None
        return [out] if out else []


def gathered(step_id: str, lists: Stream[list[T]], every: timedelta, most: int = 100_000) -> Stream[list[T]]:
    """The lists' items again, as lists let go at most `every` after their first item
    arrived (sooner once `most` items are held). One key: what follows sees one list at
    a time, on one worker."""
    keyed = op.key_on(f"{step_id}_key", lists, lambda _: step_id)
    return op.key_rm(f"{step_id}_unkey", op.stateful(step_id, keyed, lambda resumed: _Gather(every, most, resumed)))
