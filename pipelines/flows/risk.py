"""The risk dataflow: payments.events → features → Feast → one decision per underwriting request.

    MergedSource (every partition by one consumer, merged in broker-timestamp order; offsets
             in Bytewax recovery; one item per poll)
      → map admit: the ledger's admission (signature, tenant, contract, PAN) of every message
             that may carry an event a feature reads (`passed_over`: the rest, half of a
             day's traffic, are not decoded); refused messages are counted and skipped —
             dead-lettering them is the ledger flow's job
      → clearline.features.streaming.advance_steps: per batch, what became final — feature rows per
             buyer and merchant, one answer per request (its order row, or none when it
             came late), late events
      → Feast (clearline.features.feast_sink): feature rows made push frames once per batch,
             gathered and pushed online every 250 ms and to the offline history every 30 s,
             one push per entity each time
      → answers gathered for up to 100 ms (clearline.pipelines.connectors.gather), then map decide: all of
             them through `clearline.models.decision.decide_many` — champion score, challenger
             shadow, policy (inputs: clearline.models.request_inputs), and the workbench's
             emergency freezes as published when the batch is decided
      → sink DecisionSink: journal (exactly once), decision log, payments.decisions
      → sink LateSink: the late-event log

Every item is a batch (a list), from the poll to the sinks: a dataflow hop per event costs
more than the features and the scoring of that event.

The champion and challenger are loaded from MLflow once, at start; the policy (and its
kill switch) is read from configs/policy.yaml at start; the freezes snapshot it names is
stat'ed at every decided batch and re-read when the workbench replaced it, so a freeze or
a lift applies from the next batch without a restart. Exactly once comes from the
journal (clearline.models.decision_journal), not from Kafka.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bytewax import operators as op
from bytewax.dataflow import Dataflow, Stream
from confluent_kafka import Message

from clearline import config
from clearline.admission import admit
from clearline.events import EVENT_TYPES, Event
from clearline.features import (
    FEATURE_EVENTS,
    Answer,
    FeastWriter,
    FeatureRow,
    Spec,
    advance_steps,
    feast_frames,
    push_frames,
    spec_from_config,
)
from clearline.features import store as feast
from clearline.freezes import Reader, reader_from_config
from clearline.models import Decision, Policy, Scorer, UnderwritingRequest, decide_many, request_features
from clearline.pipelines.connectors.decision_sink import DecisionSink, LateSink, RunCounts
from clearline.pipelines.connectors.gather import gathered
from clearline.pipelines.connectors.merged_source import MergedSource
from clearline.pipelines.flows.runner import Recovery, execute, prepare
from clearline.signing import TenantKeys


@dataclass(frozen=True)
class RiskSettings:
    """Everything the flow needs, from configs/risk.yaml (and features.yaml) unless overridden."""

    bootstrap: str
    topic: str
    decisions_topic: str
    state_dir: Path
    batch_size: int
    feast: feast.FeastSettings
    feast_offline: bool = True
    online_push_ms: int = 250
    offline_push_s: float = 30.0
    decide_every_ms: int = 100
    once: bool = False

    @classmethod
    def from_config(
        cls, state_dir: Path | None = None, topic: str | None = None, once: bool = False, feast_dir: Path | None = None
    ) -> "RiskSettings":
        cfg = config.load("risk")
        return cls(
            bootstrap=config.bootstrap_servers(),
            topic=topic or cfg["topic"],
            decisions_topic=cfg["decisions_topic"],
            state_dir=Path(state_dir) if state_dir else config.state_path(cfg["state_dir"]),
            batch_size=config.typed(cfg, "batch_size", int),
            feast=feast.settings_from_config(config.load("features"), config.home(), feast_dir),
            feast_offline=bool(cfg["feast"]["offline"]),
            online_push_ms=int(cfg["feast"]["online_push_ms"]),
            offline_push_s=float(cfg["feast"]["offline_push_s"]),
            decide_every_ms=config.typed(cfg, "decide_every_ms", int),
            once=once,
        )


@dataclass(frozen=True)
class Models:
    """What decides: the models and the policy loaded once at start, the same for every
    request of the run; the emergency freezes as they stand when a batch is decided."""

    champion: Scorer | None
    challenger: Scorer | None
    policy: Policy
    freezes: Reader = field(default_factory=reader_from_config)  # read as of each batch, not once


# contract event types no feature reads (captures, settlements, fees, payouts, …)
_PASSED_OVER = frozenset(t.encode() for t in EVENT_TYPES if t not in FEATURE_EVENTS)
_EVENT_TYPE_KEY = b'"event_type"'
_EVENT_TYPE = re.compile(rb'"event_type"[ \t\n\r]*:[ \t\n\r]*"([^"]*)"')


def passed_over(raw: bytes | None) -> bool:
    """Whether a message is certainly an event of a type no feature reads, from its bytes
    alone: decoding and checking it (two fifths of the flow's CPU when every message was
    admitted) could change no feature and no decision.

    Certain because the bytes hold no backslash (so no escape can spell a key or a value
    other than as written, and no string can hold a quote) and name "event_type" exactly
    once: that one key is the event's type if the message is valid at all. Anything else
    (an escape, a second "event_type", a type no event has) is admitted as before. What
    is passed over is neither admitted nor refused here; the ledger flow judges it."""
    if not raw or b"\\" in raw or raw.count(_EVENT_TYPE_KEY) != 1:
        return False
    found = _EVENT_TYPE.search(raw)
    return found is not None and found.group(1) in _PASSED_OVER


def admitted(msgs: list[Message], keys: TenantKeys, counts: RunCounts) -> list[Event]:
    """The poll batch's events that a feature reads and that pass admission; the refused
    ones are counted (the ledger flow dead-letters them), those of types no feature reads
    are passed over undecoded (`passed_over`)."""
    if msgs:
        counts.first_event()
    read = [m for m in msgs if not passed_over(m.value())]
    events = [e for e in (admit(m.value(), m.headers() or [], keys) for m in read) if isinstance(e, Event)]
    counts.add(
        consumed=len(msgs),
        passed_over=len(msgs) - len(read),
        refused=len(read) - len(events),
        requests=sum(1 for e in events if UnderwritingRequest.asks(e)),
    )
    return events


def decided(answers: list[Answer], models: Models, spec: Spec) -> list[Decision]:
    """One decision per answered request (answers come from order.created events on
    terms, so each is a request)."""
    asked = [(UnderwritingRequest.from_fact(request), request_features(row, spec)) for request, row in answers]
    return decide_many(asked, models.champion, models.challenger, models.policy, models.freezes.current())


def build_flow(settings: RiskSettings, models: Models, spec: Spec, counts: RunCounts) -> Dataflow:
    keys = TenantKeys.from_config()
    flow = Dataflow("risk")
    # merged: the features are in event time, and a backlog read partition by partition looks late
    source = MergedSource(settings.bootstrap, settings.topic, once=settings.once, batch_size=settings.batch_size)
    events = op.map("admit", op.input("read_merged", flow, source), lambda msgs: admitted(msgs, keys, counts))
    advanced = advance_steps(events, spec)
    rows = op.map("rows", advanced, lambda a: a.rows)
    op.inspect("count_rows", rows, lambda _step, batch: counts.add(feature_rows=len(batch)))
    _push_to_feast(rows, settings, spec)
    # a live poll holds a handful of requests: decide (one model call) and write
    # (one flush to Kafka) for all those of the last few milliseconds at once
    answers = gathered(
        "gather_answers",
        op.map("answers", advanced, lambda a: a.answers),
        timedelta(milliseconds=settings.decide_every_ms),
    )
    decisions = op.map("decide", answers, lambda batch: decided(batch, models, spec))
    op.output(
        "decisions", decisions, DecisionSink(settings.state_dir, settings.bootstrap, settings.decisions_topic, counts)
    )
    late = gathered(
        "gather_late", op.map("late", advanced, lambda a: a.late), timedelta(milliseconds=settings.decide_every_ms)
    )
    op.output("late_log", late, LateSink(settings.state_dir, counts))
    return flow


def _push_to_feast(rows: Stream[list[FeatureRow]], settings: RiskSettings, spec: Spec) -> None:
    """Online often (freshness), the offline history seldom: Feast appends to it by
    rewriting the whole file. Each push costs tens of milliseconds whatever its size, so
    rows are gathered between pushes — as push frames, made once for both stores."""
    frames = feast_frames("feast_frames", rows, spec)
    online = gathered("gather_online", frames, timedelta(milliseconds=settings.online_push_ms))
    if settings.feast_offline:
        offline = gathered("gather_offline", frames, timedelta(seconds=settings.offline_push_s))
        push_frames(offline, settings.feast, online_frames=online)
    else:
        push_frames(online, settings.feast, offline=False)


def load_models() -> Models:
    from clearline.models import ArrayScorer, Registry, RegistrySettings

    registry = Registry(RegistrySettings.from_config(config.load("models"), config.home()))
    threads = int(config.load("models").get("threads", 1))
    return Models(
        ArrayScorer.of(registry.load("champion", threads)),
        ArrayScorer.of(registry.load("challenger", threads)),
        Policy.from_config(config.load("policy")),
    )


def run(
    settings: RiskSettings,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    models: Models | None = None,
) -> tuple[bool, RunCounts]:
    """Run the flow in this process until it is caught up (`once`) or told to stop;
    returns whether a signal stopped it, and what this process did.

    SIGTERM (and SIGINT) end every input partition at its next poll, so the flow drains
    like a --once run. Whatever was read but not snapshotted is read again on resume,
    and the journal drops the decisions it already has."""
    recovery = Recovery.from_config(config.load("risk")["recovery"])
    topics = (settings.topic, settings.decisions_topic)
    folder = prepare(settings.state_dir, recovery, settings.bootstrap, topics, process_id, addresses)
    spec = spec_from_config(config.load("features"))
    if not process_id:
        # Only the first process applies the views (two at once would race on Feast's
        # registry); the others build their sinks once the cluster has connected, after it.
        if not settings.feast.yaml_path.exists():
            feast.apply(settings.feast, spec)
        # where the Feast sinks' one partition each is expected: writers start while the models load
        FeastWriter.start(settings.feast, online=True)
        if settings.feast_offline:
            FeastWriter.start(settings.feast, online=False)
    models = models or load_models()
    counts = RunCounts()
    flow = build_flow(settings, models, spec, counts)
    start = time.monotonic()
    stopped = execute(flow, folder, recovery, process_id, addresses)
    counts.seconds = time.monotonic() - start
    counts.finished()
    return stopped, counts
