"""`record`: the frozen, slotted dataclass the feature state is made of, pickled as
(class, field values), and changed by `replaced`.

Why: the streaming features snapshot their whole state every Bytewax epoch, and the
state is thousands of small records (clocks, buyer states, open orders, pending facts).
A slotted dataclass pickles through `dataclasses`' generic `__getstate__`, which calls
`fields()` for every object — a fifth of a second and more per snapshot on a modest
world, during which the flow stands still. A `__reduce__` that reads the fields with one
`attrgetter` pickles the same values in a fraction of that, and unpickling calls the
class as its constructor would be called.

`replaced` is `dataclasses.replace` for records, which the feature updates call for
nearly every event: `dataclasses.replace` walks `fields()` and checks each one's init
flag on every call, where a record knows its field names once.

A record is built by `clearline.events.quick_init`'s `__init__` (each field set through its
slot's descriptor, not `object.__setattr__` by name): the streaming features build a fact
per event and replace a state record or two per event, and this halves each build.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import TypeVar

from clearline.events import quick_init

T = TypeVar("T")


def record(cls: type[T]) -> type[T]:
    cls = quick_init(dataclasses.dataclass(frozen=True, slots=True)(cls))
    names = tuple(f.name for f in dataclasses.fields(cls))
    values = operator.attrgetter(*names) if len(names) > 1 else (lambda obj: (getattr(obj, names[0]),))

    def __reduce__(self):
        return cls, values(self)

    cls.__reduce__ = __reduce__
    cls._record_fields = names
    cls._record_values = values
    return cls


def replaced(obj: T, **changes) -> T:
    """A copy of the record `obj` with `changes` (field name -> value): what
    `dataclasses.replace` gives, for a class made by `record`."""
    cls = type(obj)
    values = dict(zip(cls._record_fields, cls._record_values(obj)))
    values.update(changes)
    return cls(**values)
