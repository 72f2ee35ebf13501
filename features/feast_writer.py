"""A child process that owns a Feast store and pushes the frames it is handed, in order.

Why a process: a push is Feast's Python end to end (a pandas frame, arrow, one protobuf
per value, one SQLite upsert per feature), and in the streaming flow's process it would
compete for the one core the flow's Python runs on. The parent hands over Polars frames
(pickled as Arrow IPC) and goes on; `unacknowledged` says, without waiting, what it handed
over that the child has not yet pushed (what a snapshot must keep), `wait` blocks until
everything handed over is pushed; both raise the child's error, naming the push that
failed, if one did. `close` stops the child once everything is pushed, and the child then
exits at once (`os._exit`).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
from collections import deque
from pathlib import Path
from typing import Any

import polars as pl

from clearline.features import store

_STOP = None


class FeastWriter:
    """One writer process. `start` spawns it ahead of use (importing Feast takes the
    child seconds, which the parent can spend loading its models); `of` hands the
    writer started for these settings to its user, or starts one."""

    _started: dict[tuple[Path, bool], FeastWriter] = {}

    def __init__(self, settings: store.FeastSettings, online: bool):
        if not settings.yaml_path.exists():
            raise store.FeatureStoreError(
                f"no feature store in {settings.data_dir}: run `clearline features apply` first"
            )
        ctx = multiprocessing.get_context("spawn")  # the parent has Kafka and Bytewax threads: never fork it
        self._todo: Any = ctx.Queue()
        self._done: Any = ctx.Queue()
        self._handed: deque[tuple[str, pl.DataFrame]] = deque()  # pushes not yet acknowledged, in order
        self._process = ctx.Process(
            target=_serve,
            args=(settings, online, self._todo, self._done, os.getpid()),
            daemon=True,
            name=f"feast-{'online' if online else 'offline'}-writer",
        )
        self._process.start()

    @classmethod
    def start(cls, settings: store.FeastSettings, online: bool) -> None:
        if (settings.data_dir, online) not in cls._started:
            cls._started[(settings.data_dir, online)] = cls(settings, online)

    @classmethod
    def of(cls, settings: store.FeastSettings, online: bool) -> FeastWriter:
        return cls._started.pop((settings.data_dir, online), None) or cls(settings, online)

    def push(self, entity: str, frame: pl.DataFrame) -> None:
        self._todo.put((entity, frame))
        self._handed.append((entity, frame))

    def unacknowledged(self) -> list[tuple[str, pl.DataFrame]]:
        """What was handed over and is not pushed yet, in the order handed over, taking
        the acknowledgements that have come back without waiting for more."""
        while self._handed:
            try:
                error = self._done.get_nowait()
            except queue.Empty:
                break
            self._acknowledged(error)
        if self._handed and not self._process.is_alive():
            self.wait()  # takes what it answered before it ended, then names the pushes it never did
        return list(self._handed)

    def wait(self, most: int = 0) -> None:
        """Block until at most `most` pushes handed over are not yet pushed."""
        while len(self._handed) > most:
            try:
                error = self._done.get(timeout=5)
            except queue.Empty:
                if not self._process.is_alive():
                    raise store.FeatureStoreError(
                        f"the Feast writer process exited (code {self._process.exitcode}) with "
                        f"{len(self._handed)} push(es) not done"
                    ) from None
                continue
            self._acknowledged(error)

    def _acknowledged(self, error: str | None) -> None:
        """The child pushes in the order handed over and answers each push once."""
        self._handed.popleft()
        if error is not None:
            raise store.FeatureStoreError(error)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._todo.put(_STOP)
            self._process.join(60)


def _serve(settings: store.FeastSettings, online: bool, todo: Any, done: Any, parent: int) -> None:
    fs = store.open_store(settings)
    if not online:
        import feast.infra.offline_stores.duckdb  # noqa: F401  (imported on the first push otherwise: seconds)
    while True:
        try:
            job = todo.get(timeout=1)
        except queue.Empty:
            if os.getppid() != parent:  # the flow was killed (SIGKILL leaves no time to stop us)
                return
            continue
        if job is _STOP:
            # The parent sends this only after every push it handed over is acknowledged,
            # so nothing is left to write or send: end here, without the interpreter's
            # teardown of Feast, pandas and ibis (1 to 2.5 s a writer at load 7, which the
            # flow's close waited out, once per writer, at the end of every run).
            os._exit(0)
        entity, frame = job
        try:
            if online:
                store.write_online(fs, frame, entity)
            else:
                store.push(fs, frame, entity, online=False, offline=True)
            done.put(None)
        except Exception as e:  # handed back to the flow, which fails with it
            done.put(f"pushing {frame.height} {entity} rows {'online' if online else 'offline'} failed: {e}")
