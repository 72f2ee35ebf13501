"""The event contract for services written in other languages: JSON Schema (draft
2020-12) per message and an AsyncAPI 3.0 document of the topics, generated from code.

A Go or Java service cannot import `clearline.events`; it needs the contract as data.
Schemas written by hand beside the code would drift from it the first time someone
adds a field, so every schema here is *generated*: the event schemas from the frozen
dataclasses in `clearline.events` (their annotations are the contract), with the rules
the validator enforces beyond the annotations stated as JSON Schema keywords (integer
minor units, ISO 4217 codes, identifier and RFC 3339 UTC patterns, one `event_type`
per schema, the known schema versions, no unknown fields). The messages Clearline
publishes (decisions, variances, dead letters) are owned by the areas and the shell;
they hand their record types in (`struct_of`, `wire_fields`) and this module turns
them into documents the same way, so there is one mapping from Python types to JSON
Schema for all of them.

What JSON Schema cannot say is left to the reader's own code and stated in the
schema's description: no card number anywhere (Luhn-valid 13–19 digits), the 64 KiB
size limit, and that `12.0` is not an integer count of minor units (JSON Schema's
data model treats it as 12; Clearline refuses it).

Ground module: the standard library, msgspec, yaml and other ground modules only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from clearline import config, events, signing
from clearline.currency import EXPONENT

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_FILE = "asyncapi.yaml"
MANIFEST_FILE = "contract.json"
SCHEMA_DIR = "schemas"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
KAFKA_BINDING_VERSION = "0.5.0"

# The validator's own regexes (private in events, read here so the two cannot differ),
# anchored for JSON Schema, where a pattern matches anywhere unless anchored.
ID_PATTERN = f"^{events._ID.pattern}$"
DATE_PATTERN = f"^{events._DATE.pattern}$"
RATE_PATTERN = f"^{events._DECIMAL.pattern}$"
# events._RFC3339 followed by the validator's UTC check: the offset must be zero.
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]00:00)$"
CURRENCY_PATTERN = "^[A-Z]{3}$"


def _signature_pattern() -> str:
    """The signature header's shape, read off `signing.sign` itself: scheme prefix, then
    the hex digest (so a new scheme changes the schema with the code)."""
    sample = signing.sign(b"", b"")
    digest = sample.rsplit("=", 1)[1]
    return f"^{re.escape(sample[: -len(digest)])}[0-9a-f]{{{len(digest)}}}$"


# ------------------------------------------------------------- wire types (msgspec)

Identifier = Annotated[
    str,
    msgspec.Meta(
        pattern=ID_PATTERN, description="An identifier: 1–64 of A-Z a-z 0-9 _ . : -, starting with a letter or digit."
    ),
]
Text = Annotated[str, msgspec.Meta(min_length=1)]
Timestamp = Annotated[
    str,
    msgspec.Meta(
        pattern=TIMESTAMP_PATTERN,
        description="An RFC 3339 timestamp in UTC (ends in Z or +00:00), at most microseconds.",
        extra_json_schema={"format": "date-time"},
    ),
]
CalendarDate = Annotated[
    str,
    msgspec.Meta(
        pattern=DATE_PATTERN, description="A calendar date, YYYY-MM-DD.", extra_json_schema={"format": "date"}
    ),
]
Rate = Annotated[
    str,
    msgspec.Meta(
        pattern=RATE_PATTERN,
        description="A positive decimal rate as text (never a binary float), e.g. '1.0834'.",
        extra_json_schema={"not": {"pattern": "^[0.]*$"}},
    ),
]
Currency = Annotated[
    str,
    msgspec.Meta(
        pattern=CURRENCY_PATTERN,
        description="An active ISO 4217 currency code.",
        extra_json_schema={"enum": sorted(EXPONENT)},
    ),
]
MinorUnits = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=events.MAX_MINOR,
        description="A magnitude in integer minor units of the currency (1999 USD = $19.99); never a fraction. "
        "The event or record type gives the direction. At most 2^63 - 1: the ledger stores a signed 64-bit integer.",
    ),
]
Integer = Annotated[
    int, msgspec.Meta(ge=events.MIN_INT, le=events.MAX_INT, description="A 32-bit integer (counts, days).")
]


class Money(msgspec.Struct, forbid_unknown_fields=True):
    """An amount: integer minor units of an ISO 4217 currency, never a float."""

    minor: MinorUnits
    currency: Currency


class LegMoney(msgspec.Struct, forbid_unknown_fields=True):
    """An adjusting entry's leg amount: at least one minor unit of an ISO 4217 currency."""

    minor: Annotated[int, msgspec.Meta(ge=1, le=events.MAX_MINOR)]
    currency: Currency


# Fields whose rule the validator keys on the field's name rather than its type.
_BY_NAME: dict[str, Any] = {"fx_rate": Rate} | {
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=limit)] for name, limit in events.MAX_CHARS.items()
}
# Fields of a nested record whose wire type the validator sets apart from its type.
_NESTED_OVERRIDES: dict[type, dict[str, Any]] = {events.AdjustmentLeg: {"amount": LegMoney}}


def wire_type(hint: Any, name: str = "", *, absent_ok: bool = True) -> Any:
    """The msgspec type a record field has on the wire: what `clearline.events` encodes
    it as (money as {minor, currency}, times and dates as text, tuples as arrays), with
    the validator's constraints attached. `name` carries the validator's naming rules: a
    `…_id` text is an identifier. `absent_ok` is passed on to nested records."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = tuple(wire_type(a, name, absent_ok=absent_ok) for a in args if a is not type(None))
        union = inner[0] if len(inner) == 1 else typing.Union[inner]
        return union | None if type(None) in args else union
    if name in _BY_NAME:
        return _BY_NAME[name]
    if hint is events.Money:
        return Money
    if hint is str:
        return Identifier if name.endswith(("_id", "_ids")) else Text
    if hint is datetime:
        return Timestamp
    if hint is date:
        return CalendarDate
    if hint is int:
        return Integer
    if hint in (float, bool) or origin is Literal:
        return hint
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        items = list[wire_type(args[0], name, absent_ok=absent_ok)]
        if name in events.MAX_ITEMS:
            return Annotated[items, msgspec.Meta(min_length=1, max_length=events.MAX_ITEMS[name])]
        return items
    if dataclasses.is_dataclass(hint):
        return _nested_struct(hint, absent_ok)
    raise TypeError(f"no wire type for {hint!r} (field {name!r}); teach clearline.contract.wire_type")


def wire_fields(
    cls: type,
    *,
    absent_ok: bool,
    rename: dict[str, str] | None = None,
    override: dict[str, Any] | None = None,
    exclude: tuple[str, ...] = (),
) -> list[tuple]:
    """msgspec field specs for a dataclass's fields, in order. `absent_ok`: an optional
    (nullable) field may also be left out, as in event payloads; otherwise every key is
    always written (null when empty), as in the records Clearline publishes. `rename`
    maps field names to wire keys, `override` gives a field's wire type outright, and
    `exclude` leaves fields out (a record that flattens one writes its fields itself)."""
    hints = typing.get_type_hints(cls)
    specs: list[tuple] = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        typ = (override or {}).get(f.name) or wire_type(hints[f.name], f.name, absent_ok=absent_ok)
        key = (rename or {}).get(f.name, f.name)
        nullable = type(None) in typing.get_args(typ)
        specs.append((key, typ, None) if nullable and absent_ok else (key, typ))
    return specs


def struct_of(
    cls: type,
    *,
    name: str | None = None,
    absent_ok: bool = True,
    rename: dict[str, str] | None = None,
    override: dict[str, Any] | None = None,
) -> type:
    """The wire form of a dataclass as a msgspec Struct (unknown fields forbidden), whose
    JSON Schema msgspec generates."""
    return msgspec.defstruct(
        name or cls.__name__,
        wire_fields(cls, absent_ok=absent_ok, rename=rename, override=override),
        forbid_unknown_fields=True,
        namespace={"__doc__": _doc(cls)},
    )


@functools.cache
def _nested_struct(cls: type, absent_ok: bool) -> type:
    """One Struct per nested record type, so a type used twice (a model reference in a
    decision and in its challenger) is one schema component, not two."""
    return struct_of(cls, absent_ok=absent_ok, override=_NESTED_OVERRIDES.get(cls))


def _doc(cls: type) -> str | None:
    """A dataclass's own docstring (not the generated signature dataclasses puts there)."""
    text = cls.__doc__ or ""
    return None if text.startswith(cls.__name__ + "(") else " ".join(text.split())


def schema_document(root: type, *, title: str, description: str) -> dict[str, Any]:
    """A self-contained JSON Schema document for one msgspec type: the root inline, the
    types it uses under `$defs`."""
    (ref,), defs = msgspec.json.schema_components([root], ref_template="#/$defs/{name}")
    body = defs.pop(ref["$ref"].rsplit("/", 1)[1])
    body = {k: v for k, v in body.items() if k not in ("title", "description")}
    doc = {"$schema": DIALECT, "title": title, "description": description, **body}
    if defs:
        doc["$defs"] = dict(sorted(defs.items()))
    return doc


# ----------------------------------------------------------------------- events

EVENT_RULES = (
    "Beyond this schema the contract also refuses: any card-number-like digits (Luhn-valid, "
    f"13–19 digits) anywhere, a message over {events.MAX_MESSAGE_BYTES} bytes, and a number with a "
    "decimal point where an integer is due (12.0 is not 12 minor units). Each message is signed: "
    f"{signing.SIGNATURE_HEADER}: v1=<hex HMAC-SHA256 of the exact bytes with the tenant's key> and "
    f"{signing.TENANT_HEADER}: <reseller_id>."
)


def event_struct(event_type: str) -> type:
    """The wire form of one event type: the `Event` envelope with this type's payload,
    its `event_type` fixed and `schema_version` one a reader knows."""
    payload = events.PAYLOADS[event_type]
    versions = tuple(sorted(events.KNOWN_SCHEMA_VERSIONS))
    override = {
        "event_type": Annotated[Literal[event_type], msgspec.Meta(extra_json_schema={"const": event_type})],
        "schema_version": Literal[versions],
        "payload": struct_of(payload),
    }
    return struct_of(events.Event, name=_camel(event_type) + "Event", override=override)


def event_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema document per event type, keyed by event type."""
    return {
        event_type: schema_document(
            event_struct(event_type),
            title=event_type,
            description=" ".join(filter(None, [f"One {event_type} event.", _doc(cls), EVENT_RULES])),
        )
        for event_type, cls in events.PAYLOADS.items()
    }


def _camel(event_type: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", event_type))


SignedHeaders = msgspec.defstruct(
    "SignedHeaders",
    [
        (
            "signature",
            Annotated[
                str,
                msgspec.Meta(
                    pattern=_signature_pattern(),
                    description="HMAC-SHA256 over the message's exact bytes with the tenant's key, hex.",
                ),
            ],
        ),
        (
            "tenant",
            Annotated[str, msgspec.Meta(pattern=ID_PATTERN, description="The signing tenant: the reseller_id.")],
        ),
    ],
    rename={"signature": signing.SIGNATURE_HEADER, "tenant": signing.TENANT_HEADER},
    namespace={"__doc__": "Kafka headers of every event (values as UTF-8 text); other headers may be present."},
)


# ----------------------------------------------------------------- the document


@dataclass(frozen=True)
class Message:
    """One kind of message on a topic. `payload`/`headers` are JSON Schema documents
    (written to schemas/<name>.schema.json and schemas/<headers_name>.schema.json); a
    payload of None is not described by a schema file, and `undescribed` says why."""

    name: str
    summary: str
    key: str
    payload: dict[str, Any] | None
    headers_name: str | None = None
    headers: dict[str, Any] | None = None
    content_type: str = "application/json"
    undescribed: str = ""


@dataclass(frozen=True)
class Channel:
    """A topic, Clearline's side of it (send or receive) and its messages."""

    topic: str
    description: str
    action: Literal["send", "receive"]
    messages: tuple[Message, ...]


def event_messages() -> tuple[Message, ...]:
    """The messages of payments.events: one per event type, all signed."""
    headers = schema_document(SignedHeaders, title="event headers", description=_doc_text(SignedHeaders))
    return tuple(
        Message(
            name=event_type,
            summary=_doc(events.PAYLOADS[event_type]) or f"The {event_type} event.",
            key="merchant_id (the event's merchant; the platform's own events: platform)",
            payload=schema,
            headers_name="event-headers",
            headers=headers,
        )
        for event_type, schema in event_schemas().items()
    )


def _doc_text(struct: type) -> str:
    return " ".join((struct.__doc__ or "").split())


def schema_path(name: str) -> str:
    """Where the schema named `name` is written, relative to the export folder."""
    return f"{SCHEMA_DIR}/{name}.schema.json"


def topics() -> dict[str, dict[str, Any]]:
    """The topics of configs/topics.yaml (prefixed as the deployment's are)."""
    return dict(config.load("topics")["topics"])


def asyncapi(channels: list[Channel]) -> dict[str, Any]:
    """The AsyncAPI 3.0 document: every topic of configs/topics.yaml as a channel (with
    its Kafka settings), Clearline's operation on it, and each message's key, headers
    and payload as references to the exported schema files."""
    configured = topics()
    named = {c.topic for c in channels}
    channels = channels + [
        Channel(t, "Configured in topics.yaml; no message of Clearline's own is described.", "receive", ())
        for t in configured
        if t not in named
    ]
    doc: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Clearline payments topics",
            "version": f"schema_version {max(events.KNOWN_SCHEMA_VERSIONS)}",
            "description": "Generated by `clearline contract export` from the code; do not edit. "
            "Money is always integer minor units plus an ISO 4217 code. Readers accept every "
            "schema_version they know; a new version only adds.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": config.bootstrap_servers().split(",")[0],
                "protocol": "kafka",
                "description": "KAFKA_BOOTSTRAP_SERVERS in a deployment.",
            }
        },
        "channels": {},
        "operations": {},
        "components": {"messages": {}},
    }
    for channel in channels:
        _add_channel(doc, channel, configured.get(channel.topic, {}))
    return doc


def _add_channel(doc: dict[str, Any], channel: Channel, settings: dict[str, Any]) -> None:
    cid = channel.topic
    doc["channels"][cid] = {
        "address": channel.topic,
        "description": channel.description,
        "messages": {m.name: {"$ref": f"#/components/messages/{m.name}"} for m in channel.messages},
        "bindings": {"kafka": _topic_binding(channel.topic, settings)},
    }
    doc["operations"][f"{channel.action}-{cid}"] = {
        "action": channel.action,
        "channel": {"$ref": f"#/channels/{cid}"},
        "summary": f"Clearline {'publishes to' if channel.action == 'send' else 'reads'} {channel.topic}.",
        "messages": [{"$ref": f"#/channels/{cid}/messages/{m.name}"} for m in channel.messages],
    }
    for m in channel.messages:
        doc["components"]["messages"][m.name] = _message(m)


def _topic_binding(topic: str, settings: dict[str, Any]) -> dict[str, Any]:
    binding: dict[str, Any] = {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}
    if "partitions" in settings:
        binding["partitions"] = int(settings["partitions"])
    if "replication_factor" in settings:
        binding["replicas"] = int(settings["replication_factor"])
    if "retention_ms" in settings:
        binding["topicConfiguration"] = {"retention.ms": int(settings["retention_ms"])}
    return binding


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"name": m.name, "summary": m.summary, "contentType": m.content_type}
    if m.headers_name is not None:
        out["headers"] = {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": schema_path(m.headers_name)}}
    payload = {"$ref": schema_path(m.name)} if m.payload is not None else {"description": m.undescribed}
    out["payload"] = {"schemaFormat": SCHEMA_FORMAT, "schema": payload}
    out["bindings"] = {
        "kafka": {"key": {"type": "string", "description": m.key}, "bindingVersion": KAFKA_BINDING_VERSION}
    }
    return out


def documents(channels: list[Channel]) -> dict[str, str]:
    """Every file of an export, by path relative to the export folder, as text: the
    schemas, the AsyncAPI document and a manifest naming them (so a later export knows
    which files are its own)."""
    files: dict[str, str] = {}
    for channel in channels:
        for m in channel.messages:
            if m.payload is not None:
                files[schema_path(m.name)] = _json(m.payload)
            if m.headers is not None:
                files[schema_path(m.headers_name)] = _json(m.headers)
    files[ASYNCAPI_FILE] = yaml.safe_dump(asyncapi(channels), sort_keys=False, allow_unicode=True, width=100)
    files = dict(sorted(files.items()))
    files[MANIFEST_FILE] = _json({"generated_by": "clearline contract export", "files": sorted(files)})
    return files


def _json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------ export


class ExportTargetNotOurs(Exception):
    """The export folder holds files an export did not write; export never touches them."""


def write(directory: Path, files: dict[str, str]) -> list[Path]:
    """Write `files` under `directory`, replacing only files an export wrote (named in
    its manifest, or about to be written) and removing ones a previous export wrote that
    are no longer generated. Anything else in the folder stops the export, untouched."""
    if directory.exists() and not directory.is_dir():
        raise ExportTargetNotOurs(f"{directory} is a file; export needs a folder")
    previous = _previous_files(directory)
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    foreign = sorted(present - set(files) - previous - {MANIFEST_FILE})
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ExportTargetNotOurs(
            f"{directory} holds files no export wrote ({shown}); export into an empty folder or one it wrote before"
        )
    written = []
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    for rel in sorted(previous - set(files)):
        (directory / rel).unlink(missing_ok=True)
    return written


def _previous_files(directory: Path) -> set[str]:
    """The files a previous export's manifest names (none if there is no readable one)."""
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
        return {str(f) for f in manifest["files"] if ".." not in Path(str(f)).parts}
    except (OSError, ValueError, KeyError, TypeError):
        return set()
