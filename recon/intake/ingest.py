"""The shell around the pure intake: files in; Parquet, Kafka, quarantine and ledger out.

For each file: hash it; a hash the intake ledger has seen is a no-op (received again,
said so with the first outcome). Otherwise parse it (a file that cannot be read is
quarantined with the error and its line), run its format's suite (all files of one call
together, one GX run per format), and then either quarantine it with its report, or sort
its items (processor lines, bank statements) against what the ledger holds
(`identity`): a file whose every item is held with the same content is received again,
whatever its bytes or name, and nothing is done; otherwise its new and changed items'
lines go to the Parquet store and `payments.settlements` and it is recorded as accepted,
saying how many lines were already held. The ledger records a file and its items only
when all of that is done, so a crash or a broker that does not acknowledge leaves the
file to be tried again (at least once, never half).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from clearline import config
from clearline.recon.intake import identity
from clearline.recon.intake import quarantine as q
from clearline.recon.intake.model import ParsedFile, ParseError
from clearline.recon.intake.parse import parse_path
from clearline.recon.intake.publish import publish
from clearline.recon.intake.reading import scan
from clearline.recon.intake.registry import FILE_NAME, Registry
from clearline.recon.intake.store import write_lines
from clearline.recon.intake.suites import validate_many

log = logging.getLogger(__name__)

STATUSES = ("accepted", "received_again", "quarantined", "failed")


class IntakeConfigError(ValueError):
    """configs/recon.yaml has no usable `intake:` section."""


@dataclass(frozen=True)
class IntakeSettings:
    state_dir: Path
    topic: str
    poll_seconds: float
    settle_seconds: float
    delivery_timeout_seconds: float

    @classmethod
    def from_config(cls, recon_cfg: dict[str, Any], state_dir: Path | None = None) -> IntakeSettings:
        section = recon_cfg.get("intake")
        if not isinstance(section, dict):
            raise IntakeConfigError("configs/recon.yaml has no intake: section")
        try:
            return cls(
                Path(state_dir) if state_dir else config.state_path(section["state_dir"]),
                config.typed(section, "topic", str),
                config.typed(section, "poll_seconds", float),
                config.typed(section, "settle_seconds", float),
                config.typed(section, "delivery_timeout_seconds", float),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntakeConfigError(f"configs/recon.yaml intake: {exc!r} is missing or not a number") from None

    @property
    def quarantine_dir(self) -> Path:
        return self.state_dir / "quarantine"

    @property
    def registry_path(self) -> Path:
        return self.state_dir / FILE_NAME


@dataclass(frozen=True)
class Outcome:
    path: str
    sha256: str
    status: str
    format: str | None = None
    lines: int = 0
    reason: str | None = None
    kept_as: str | None = None
    already_held: int = 0  # lines of the file intake held already, with the same content
    changed: int = 0  # lines taken in that differ from what is held under the same identity

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Intake:
    """`producer`: a `clearline.pipelines.connectors.produce.producer`, or None to keep lines out of Kafka (the
    Parquet store still gets them; said in every outcome's reason)."""

    def __init__(self, settings: IntakeSettings, producer=None) -> None:
        self.settings, self.producer = settings, producer
        self.registry = Registry(settings.registry_path)

    def ingest(
        self,
        paths: Sequence[Path],
        processed_dir: Path | None = None,
        on_done: Callable[[Outcome], None] = lambda o: None,
    ) -> list[Outcome]:
        """Outcomes in the order of `paths`. With `processed_dir` (an inbox), every file
        leaves its folder: accepted files and ones received again into `processed_dir`, bad ones into
        the quarantine; without it the files stay where they are (bad ones are copied)."""
        move = processed_dir is not None
        outcomes: dict[int, Outcome] = {}
        pending: list[tuple[int, Path, str, ParsedFile]] = []
        first_in_call: dict[str, str] = {}

        def done(i: int, outcome: Outcome) -> None:
            outcomes[i] = outcome
            on_done(outcome)

        try:
            for i, path in enumerate(paths):
                try:
                    scanned = scan(path)
                except OSError as exc:
                    done(i, Outcome(str(path), "", "failed", reason=f"cannot read the file: {exc.strerror}"))
                    continue
                sha = scanned.sha256
                earlier = self.registry.seen(sha)
                if earlier or sha in first_in_call:
                    said = (
                        f"already {earlier.outcome} as {earlier.name} on {earlier.recorded_at}"
                        if earlier
                        else f"same content as {first_in_call[sha]} in this run"
                    )
                    done(
                        i,
                        Outcome(
                            str(path),
                            sha,
                            "received_again",
                            earlier.format if earlier else None,
                            0,
                            f"{said}: nothing done",
                            _processed(path, sha, processed_dir),
                        ),
                    )
                    continue
                first_in_call[sha] = path.name
                try:
                    parsed = parse_path(path, scanned.streams, spill=self._spill(sha))
                except ParseError as exc:
                    done(i, self._quarantine(path, sha, q.parse_report(path.name, sha, exc), None, 0, move))
                    continue
                except Exception as exc:  # a parser library's own failure on a strange file: still the file's fault
                    log.exception("parser failed on %s", path)
                    error = ParseError(f"the parser failed: {type(exc).__name__}: {exc}")
                    done(i, self._quarantine(path, sha, q.parse_report(path.name, sha, error), None, 0, move))
                    continue
                pending.append((i, path, sha, parsed))

            _give_back()  # what parsing freed, before GX and pandas come in
            self._judge(pending, processed_dir, done)
        finally:  # a spill taken into the store is gone; any other (quarantined, failed) is deleted, rewrites too
            for *_, parsed in pending:
                if parsed.spill is not None:
                    for left in parsed.spill.parent.glob(parsed.spill.name + "*"):
                        left.unlink(missing_ok=True)
        return [outcomes[i] for i in range(len(paths))]

    def _spill(self, sha: str) -> Path:
        """Where a report's lines go a chunk at a time while it is read and judged: in the
        state folder (so taking it into the store is a rename), named for the file and this
        process (the inbox watcher and a person's `clearline ingest` may read one file at once)."""
        return self.settings.state_dir / "spill" / f"{sha}.{os.getpid()}.parquet"

    def _judge(
        self,
        pending: list[tuple[int, Path, str, ParsedFile]],
        processed_dir: Path | None,
        done: Callable[[int, Outcome], None],
    ) -> None:
        """The suite's verdict on every parsed file, and each file accepted or quarantined by it."""
        move = processed_dir is not None
        verdicts = validate_many([parsed for *_, parsed in pending]) if pending else []
        _give_back()  # what the suite freed, before the files are sorted and stored
        for (i, path, sha, parsed), verdict in zip(pending, verdicts):
            if verdict.errors:  # not the file's fault: leave it unrecorded, to be judged again
                done(
                    i,
                    Outcome(
                        str(path),
                        sha,
                        "failed",
                        parsed.format,
                        parsed.line_count,
                        f"the suite could not run ({'; '.join(verdict.errors)}); the file stays to be ingested again",
                    ),
                )
            elif verdict.passed:
                done(i, self._accept(path, sha, parsed, processed_dir))
            else:
                report = q.validation_report(path.name, sha, parsed.format, parsed.line_count, verdict)
                done(i, self._quarantine(path, sha, report, parsed.format, parsed.line_count, move))

    def _quarantine(self, path: Path, sha: str, report: dict, fmt: str | None, lines: int, move: bool) -> Outcome:
        kept = q.quarantine(path, sha, self.settings.quarantine_dir, report, move=move)
        self.registry.record(sha, path.name, fmt, "quarantined", lines, report["reason"], kept)
        return Outcome(str(path), sha, "quarantined", fmt, lines, report["reason"], str(kept))

    def _accept(self, path: Path, sha: str, parsed: ParsedFile, processed_dir: Path | None) -> Outcome:
        heaps = self._sorted(parsed, sha)
        held, where = heaps.held_rows, ", ".join(sorted(heaps.held_in))
        if heaps.found and not heaps.any_taken():
            reason = f"same content as {where}: all {held} lines already held; nothing done"
            kept = _processed(path, sha, processed_dir)
            return Outcome(str(path), sha, "received_again", parsed.format, 0, reason, kept, held)
        taken = heaps.only(parsed) if heaps.any_held() else parsed
        notes = []
        if heaps.any_held():
            notes.append(f"took in {taken.line_count} new lines; {held} already held (from {where})")
        changed = heaps.changed_rows
        if changed:
            notes.append(f"{changed} lines differ from the copy held under the same id: matching names what changed")
        stored = write_lines(self.settings.state_dir, taken, sha)
        if taken.spill is not None:  # renamed into the store: published from there, a chunk at a time
            taken = replace(taken, rows=stored)
        if self.producer is None:
            notes.append("not published to Kafka (publishing off)")
        else:
            delivery = publish(self.producer, self.settings.topic, taken, sha, self.settings.delivery_timeout_seconds)
            if delivery.failed:
                errors = "; ".join(f"{n}x {e}" for e, n in delivery.errors.most_common(3))
                return Outcome(
                    str(path),
                    sha,
                    "failed",
                    parsed.format,
                    taken.line_count,
                    f"{delivery.failed} of {taken.line_count} lines not acknowledged by Kafka "
                    f"({errors}); the file stays to be ingested again",
                )
        note = "; ".join(notes) or None
        lines = taken.line_count
        self.registry.record(sha, path.name, parsed.format, "accepted", lines, note, stored, heaps.records())
        kept = _processed(path, sha, processed_dir)
        return Outcome(str(path), sha, "accepted", parsed.format, lines, note, kept, held, changed)

    def _sorted(self, parsed: ParsedFile, sha: str) -> identity.Heaps:
        """The file's items against what the registry holds: a report's lines a slice at a
        time (their identities wait beside the spill, deleted with it), a bank file's
        statements whole."""
        if parsed.kind == "processor":
            beside = parsed.spill or self._spill(sha)
            beside.parent.mkdir(parents=True, exist_ok=True)
            return identity.sort_lines(parsed, self.registry.held, beside.with_name(beside.name + ".identity"))
        found = identity.items(parsed)
        return identity.sort_out(found, self.registry.held([item.identity for item in found]))


def _give_back() -> None:
    """Return freed memory to the system between the steps of a large file (glibc keeps
    what Python and pandas free in its heap otherwise: after the suite on a 50 MB report
    about 40 MiB, which the next step's peak would stack on)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc: nothing to trim
        return None


_LIBC = _libc()


def _processed(path: Path, sha: str, processed_dir: Path | None) -> str | None:
    """Where an inbox file went once taken in or received again (None outside an inbox)."""
    return str(q.place(path, sha, processed_dir, move=True)) if processed_dir is not None else None
