"""`clearline contract export DIR`: the event contract and the messages Clearline
publishes, as JSON Schema and AsyncAPI, for services written in other languages.

The ground package (`clearline.contract`) turns record types into schemas but may not
import the areas; the decision and variance records live in `models` and `recon`, and
their message envelopes (the decision id, the variance message kind, the dead-letter
headers) in the shell's sinks. So this module, which may import them all, hands their
types to the ground generator: every schema still comes from the one definition in
code, and `tests/contract` checks real messages against what it generates.

Areas are imported inside the functions, so `clearline --help` stays fast.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import click
import msgspec

import clearline.contract as spec
from clearline import config, events
from clearline.pipelines.cli.options import emit, friendly, json_option, kv_table, user_errors

user_errors("clearline.contract:ExportTargetNotOurs")

# What `variance_sink.variance_message` puts in "message": a variance found or changed,
# or one the matcher withdrew (its missing record arrived after all).
VARIANCE_KINDS = ("variance", "withdrawn")


def decision_message() -> spec.Message:
    """payments.decisions: the record `decision_sink.decision_record` publishes — the
    decision id, `Decision.to_dict()` (the request's fields flattened, the outcome as
    "decision", feature inputs as an object) and when it was decided."""
    from clearline.models import Decision
    from clearline.pipelines.connectors.decision_sink import DECISION_ID_HEADER, decision_id

    # The records a decision holds, reached through its annotations (the area's surface
    # names only Decision; the request, the challenger's shadow and the rest hang off it).
    hints = typing.get_type_hints(Decision)
    request = hints["request"]
    shadow = next(t for t in typing.get_args(hints["challenger"]) if t is not type(None))
    decision_id_type = Annotated[
        str,
        msgspec.Meta(
            pattern=f"^{re.escape(decision_id(''))}{spec.ID_PATTERN[1:]}",
            description="The decision's id, derived from its request's event_id: replays give the same id.",
        ),
    ]
    challenger = spec.struct_of(shadow, name="Challenger", absent_ok=False, rename={"outcome": "decision"})
    decided = spec.wire_fields(
        Decision,
        absent_ok=False,
        rename={"outcome": "decision"},
        override={"inputs": dict[str, float | str | bool | None], "challenger": challenger | None},
        exclude=("request",),
    )
    fields = [
        ("decision_id", decision_id_type),
        *spec.wire_fields(request, absent_ok=False),
        *decided,
        ("decided_at", spec.Timestamp),
    ]
    record = msgspec.defstruct("Decision", fields, forbid_unknown_fields=True)
    headers = msgspec.defstruct(
        "DecisionHeaders",
        [("decision_id", decision_id_type)],
        rename={"decision_id": DECISION_ID_HEADER},
        namespace={"__doc__": "Kafka headers of a decision: its id, so a reader deduplicates without parsing."},
    )
    return spec.Message(
        name="decision",
        summary="One underwriting decision per order on terms (model, score, reasons, challenger in the shadow).",
        key="merchant_id",
        payload=spec.schema_document(
            record,
            title="decision",
            description="An underwriting decision on payments.decisions. Money is integer minor units. "
            "A replayed request gets the same decision_id: keep the first per id.",
        ),
        headers_name="decision-headers",
        headers=spec.schema_document(headers, title="decision headers", description=headers.__doc__),
    )


def variance_message() -> spec.Message:
    """payments.variances: `variance_sink.variance_message` — the message kind, then
    the variance row (the columns of `clearline.recon.VARIANCE_SCHEMA`, typed by the
    `Variance` record; its money flattened to amount_minor and currency)."""
    from clearline.recon import VARIANCE_CATEGORIES, VARIANCE_SCHEMA, Variance, variance_id

    hints = typing.get_type_hints(Variance)
    sample = variance_id("category", "key")
    prefix = sample[: sample.index("_") + 1]
    special: dict[str, Any] = {
        "variance_id": Annotated[
            str, msgspec.Meta(pattern=f"^{re.escape(prefix)}[0-9a-f]{{{len(sample) - len(prefix)}}}$")
        ],
        "category": Literal[VARIANCE_CATEGORIES],
        "amount_minor": spec.MinorUnits,  # Variance.amount, flattened
        "currency": spec.Currency,
    }
    fields: list[tuple] = [("message", Literal[VARIANCE_KINDS])]
    for column in VARIANCE_SCHEMA:
        typ = special.get(column) or spec.wire_type(hints[column], column, absent_ok=False)
        if type(None) in typing.get_args(hints.get(column)) and type(None) not in typing.get_args(typ):
            typ = typ | None
        fields.append((column, typ))
    record = msgspec.defstruct("Variance", fields, forbid_unknown_fields=True)
    return spec.Message(
        name="variance",
        summary="A reconciliation break (or its withdrawal): category, amount, both values, evidence.",
        key='merchant_id, else processor, else "platform"',
        payload=spec.schema_document(
            record,
            title="variance",
            description=" ".join((Variance.__doc__ or "").split())
            + ' A variance id may come again with new facts: keep the latest per variance_id; "withdrawn" '
            "removes it.",
        ),
    )


DeadLetterHeaders = msgspec.defstruct(
    "DeadLetterHeaders",
    [
        ("origin_topic", spec.Text),
        ("origin_partition", Annotated[str, msgspec.Meta(pattern="^[0-9]+$")]),
        ("origin_offset", Annotated[str, msgspec.Meta(pattern="^[0-9]+$")]),
        ("reason", Annotated[str, msgspec.Meta(min_length=1, description="signature, tenant, contract:<kind>, …")]),
        ("detail", Annotated[str, msgspec.Meta(description="What a person needs to act on it.")]),
        ("event_id", Annotated[str, msgspec.Meta(pattern=f"^({events._ID.pattern})?$", description="Empty: unknown.")]),
        (
            "value_length",
            Annotated[str, msgspec.Meta(pattern="^[0-9]+$", description="Bytes in the whole refused message.")],
        ),
        (
            "value_sha256",
            Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$", description="SHA-256 of the whole, hex.")],
        ),
        ("truncated", Annotated[Literal["true", "false"], msgspec.Meta(description="true: the value is a prefix.")]),
    ],
    rename="kebab",
    namespace={
        "__doc__": "Kafka headers of a dead letter (`ledger_sink`): where the refused message was read and why. "
        "The value is the refused message's bytes with every card number masked, whatever the reason; a long "
        "message is cut to a prefix (truncated: true), and value-length and value-sha256 describe the whole "
        "(as masked)."
    },
)


def deadletter_message() -> spec.Message:
    return spec.Message(
        name="deadletter",
        summary="A message the ledger refused: the original bytes, with reason and origin in the headers.",
        key="merchant_id found in the original bytes, else none",
        payload=None,
        headers_name="deadletter-headers",
        headers=spec.schema_document(
            DeadLetterHeaders, title="dead-letter headers", description=DeadLetterHeaders.__doc__
        ),
        content_type="application/octet-stream",
        undescribed="The refused message's bytes as they were read (card numbers masked, a long one cut to a "
        "prefix): maybe not JSON at all.",
    )


def settlement_message() -> spec.Message:
    return spec.Message(
        name="settlement-line",
        summary="Internal (intake to the recon flow): one validated settlement or bank line as JSON, "
        "its kind, format and file_sha256 beside the columns of clearline.recon.lines; not a public contract.",
        key="payout_id (processor lines) or account (bank lines)",
        payload=None,
        undescribed="A JSON object: kind, format, file_sha256 and the line's columns; internal to Clearline.",
    )


def channels() -> list[spec.Channel]:
    """Every topic the configuration names, with its role and messages."""
    ledger, risk, recon = config.load("ledger"), config.load("risk"), config.load("recon")
    event_topics = dict.fromkeys([ledger["topic"], risk["topic"], recon["flow"]["events_topic"]])
    found = [
        spec.Channel(
            topic,
            "The events: the source of truth. Signed, keyed by merchant_id, one schema per event_type.",
            "receive",
            spec.event_messages(),
        )
        for topic in event_topics
    ]
    return found + [
        spec.Channel(
            risk["decisions_topic"], "Underwriting decisions of the risk flow.", "send", (decision_message(),)
        ),
        spec.Channel(
            recon["flow"]["variances_topic"], "Variances of the reconciliation flow.", "send", (variance_message(),)
        ),
        spec.Channel(
            ledger["deadletter_topic"], "Messages the ledger refused, with why.", "send", (deadletter_message(),)
        ),
        spec.Channel(recon["intake"]["topic"], "Validated lines of intake.", "send", (settlement_message(),)),
    ]


def documents() -> dict[str, str]:
    """Every file `export` writes, by relative path, as text (what the drift test compares)."""
    return spec.documents(channels())


@click.group()
def contract() -> None:
    """The event contract as JSON Schema and AsyncAPI, for services in other languages."""


@contract.command("export")
@click.argument("directory", type=click.Path(path_type=Path))
@json_option
@friendly
def export(directory: Path, as_json: bool) -> None:
    """Write a JSON Schema per event type and per published message, and the AsyncAPI
    document of every topic, into DIRECTORY. Rerunning replaces only files an export
    wrote; a folder with other files is refused."""
    files = documents()
    spec.write(directory, files)
    schemas = sorted(Path(p).name.removesuffix(".schema.json") for p in files if p.startswith(spec.SCHEMA_DIR + "/"))
    report = {
        "directory": str(directory.absolute()),
        "asyncapi": str((directory / spec.ASYNCAPI_FILE).absolute()),
        "event_types": len(events.PAYLOADS),
        "schemas": schemas,
        "files": sorted(files),
    }
    emit(as_json, report, kv_table("clearline contract export", {**report, "files": len(files)}))
