"""The reconciliation dataflow: payments.events ⋈ payments.settlements → variances.

    PartitionSource payments.events (offsets in Bytewax recovery; one item per poll batch)
      → map admit: the ledger's admission and posting (`clearline.recon.arrivals.from_events`); the
             refused are counted, the ledger dead-letters them
    PartitionSource payments.settlements (the lines intake validated and published)
      → map lines: back into `clearline.recon.lines` rows (`clearline.recon.arrivals.from_settlements`)
      → merge → one key → stateful match (`clearline.recon.streaming.Matcher` around
             `clearline.recon.matching.continuous`): held inputs, global event-time watermark,
             reconciled every advance_interval_s while something changed and at the end
      → sink VarianceWriter: payments.variances, the variance store, Parquet snapshots
    inbox watcher (a thread; `clearline.recon.intake.watch`): files dropped into the inbox are
             validated, stored and published to payments.settlements, which the flow reads

The batch (`clearline recon --from D1 --to D2`) calls the same `reconcile` once on the
stored inputs at their watermark; the stream's last reconciliation is that call on the
same frames, so both give the same variances.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax import operators as op
from bytewax.dataflow import Dataflow

from clearline import config
from clearline.pipelines.connectors.kafka_source import STOP, PartitionSource
from clearline.pipelines.connectors.variance_sink import SinkSettings, VarianceSink
from clearline.pipelines.flows.runner import Recovery, execute, prepare
from clearline.recon import AutofixRules, Retirement, Tolerances, bank_books, builder, from_events, from_settlements
from clearline.signing import TenantKeys


class ReconFlowConfigError(ValueError):
    """configs/recon.yaml has no usable `flow:` section; the message names what is wrong."""


@dataclass(frozen=True)
class ReconFlowSettings:
    """Everything the flow needs, from configs/recon.yaml unless overridden."""

    bootstrap: str
    events_topic: str
    settlements_topic: str
    variances_topic: str
    state_dir: Path
    inbox: Path | None
    batch_size: int
    advance_interval_s: float
    recovery: Recovery
    once: bool = False
    retire_after_days: int | None = None  # None: the matcher holds everything it has seen

    @classmethod
    def from_config(
        cls, state_dir: Path | None = None, inbox: Path | None = None, once: bool = False, **topics: str | None
    ) -> ReconFlowSettings:
        cfg = config.load("recon")
        flow, intake = cfg.get("flow"), cfg.get("intake") or {}
        if not isinstance(flow, dict):
            raise ReconFlowConfigError("configs/recon.yaml has no flow: section")
        try:
            settings = cls(
                bootstrap=config.bootstrap_servers(),
                events_topic=config.typed(flow, "events_topic", str),
                settlements_topic=config.typed(intake, "topic", str),
                variances_topic=config.typed(flow, "variances_topic", str),
                state_dir=Path(state_dir) if state_dir else config.state_path(intake["state_dir"]),
                inbox=inbox or (config.state_path(flow["inbox"]) if flow.get("inbox") else None),
                batch_size=config.typed(flow, "batch_size", int),
                advance_interval_s=config.typed(flow, "advance_interval_s", float),
                recovery=Recovery.from_config(flow["recovery"]),
                once=once,
                retire_after_days=_horizon(flow),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReconFlowConfigError(f"configs/recon.yaml flow: {exc!r} is missing or not a number") from None
        return dataclasses.replace(settings, **{f"{k}_topic": v for k, v in topics.items() if v})


def _horizon(flow: dict) -> int | None:
    days = flow.get("retire_after_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 0):
        raise ReconFlowConfigError(
            f"configs/recon.yaml flow: retire_after_days must be a whole number >= 0, got {days!r}"
        )
    return days


def build_flow(settings: ReconFlowSettings, tol: Tolerances) -> Dataflow:
    keys = TenantKeys.from_config()
    flow = Dataflow("recon")
    sources = {
        name: PartitionSource(settings.bootstrap, topic, once=settings.once, batch_size=settings.batch_size)
        for name, topic in (("events", settings.events_topic), ("settlements", settings.settlements_topic))
    }
    expected = op.map("admit", op.input("events", flow, sources["events"]), lambda msgs: from_events(msgs, keys))
    lines = op.map("lines", op.input("settlements", flow, sources["settlements"]), from_settlements)
    arrivals = op.key_on("one_matcher", op.merge("arrivals", expected, lines), lambda _: "all")
    interval = timedelta(seconds=settings.advance_interval_s)
    books = bank_books(config.load("platform"))  # the ledger's bank accounts the statements are tied to
    retire = None
    if settings.retire_after_days is not None:  # settled items leave the state for the store under state_dir
        retire = Retirement(settings.retire_after_days, settings.state_dir / "retired")
    found = op.stateful("match", arrivals, builder(tol, interval, settings.once, books, retire))
    fixes = AutofixRules.from_config(config.load("recon"))
    sink = SinkSettings(settings.state_dir, settings.bootstrap, settings.variances_topic, autofix=fixes)
    op.output("variances", found, VarianceSink(sink))
    return flow


def _intake(settings: ReconFlowSettings):
    from clearline.pipelines.connectors.produce import producer
    from clearline.recon import Intake, IntakeSettings

    intake = IntakeSettings.from_config(config.load("recon"), settings.state_dir)
    intake = dataclasses.replace(intake, topic=settings.settlements_topic)
    return Intake(intake, producer(intake.delivery_timeout_seconds))


def run(
    settings: ReconFlowSettings, tol: Tolerances, process_id: int | None = None, addresses: list[str] | None = None
) -> dict:
    """Run the flow in this process until it is caught up (`once`) or told to stop.

    With an inbox, what is in it is ingested before the flow starts (so its lines are on
    the topic before the flow reads it, as the events are); then, unless `once`, a thread
    watches the inbox until the flow is stopped. SIGTERM and SIGINT end every input partition at its next
    poll: the matcher reconciles once more, the sink publishes, the store closes."""
    from clearline.recon import watch

    topics = (settings.events_topic, settings.settlements_topic, settings.variances_topic)
    folder = prepare(settings.state_dir / "flow", settings.recovery, settings.bootstrap, topics, process_id, addresses)
    outcomes: list = []
    watcher = None
    if settings.inbox is not None and not process_id:  # one process of a cluster watches the inbox
        intake = _intake(settings)
        outcomes = watch(intake, settings.inbox, STOP, once=True)
        if not settings.once:
            watcher = threading.Thread(
                target=watch,
                args=(intake, settings.inbox, STOP),
                kwargs={"on_outcomes": outcomes.extend},
                name="inbox",
                daemon=True,
            )
            watcher.start()
    signalled = execute(build_flow(settings, tol), folder, settings.recovery, process_id, addresses)
    STOP.set()  # the inbox watcher stops with the flow
    if watcher is not None:
        watcher.join()
    return {"stopped_by_signal": signalled, "inbox_files": [o.as_dict() for o in outcomes]}
