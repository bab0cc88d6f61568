"""Continuous export: the daemon sends each run that ends to an OTLP backend.

Configured by ``export.otlp.endpoint`` and ``export.otlp.headers`` (user
scope), which reach the daemon in its environment, as
``CHOO_EXPORT_OTLP_ENDPOINT`` and ``CHOO_EXPORT_OTLP_HEADERS`` (a JSON
object): ``choo daemon start`` (and the start a run makes) sets them from
the configuration. The environment and not the command line, because a
header may hold an API key: a process's arguments are readable by every
user of the machine, its environment by its own user only.

When a run ends, the database process puts it in the outbox table in the
same transaction (``store/outbox.py``); ``Outbox.serve``, a task of the
daemon's, reads the oldest row, loads the run and its events as the HTTP
API serves them, and sends them with ``protocol.otlp.send_run`` in a worker
thread. A row is deleted once sent; a failure is recorded on it (attempts,
the error) and the sender waits, twice as long after each failure in a row
(``protocol.backoff``, up to ``retry_max``), before it tries again. Rows
outlive the daemon: the next one sends them.

Nothing of OpenTelemetry is imported until there is a run to send and an
endpoint to send it to: a daemon without export never loads it.

    ExportConfigError (ValueError)   the export settings in the environment
                                     cannot be used; names the variable
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import apsw
import trio

from choo_daemon.dblink import DbProcessError
from choo_daemon.store import iso_utc
from choo_daemon.store.outbox import (
    OutboxRow,
    OutboxState,
    export_failed,
    export_sent,
    export_snapshot,
    outbox_state,
)
from protocol.backoff import delay
from protocol.errors import Refusal

if TYPE_CHECKING:
    from choo_daemon.reader import Reader
    from choo_daemon.writer import Committed, Writer

log = logging.getLogger("choo.daemon")

ENDPOINT_ENV = "CHOO_EXPORT_OTLP_ENDPOINT"
HEADERS_ENV = "CHOO_EXPORT_OTLP_HEADERS"
RETRY_FIRST = 1.0  # seconds after the first failure in a row
RETRY_MAX = 300.0  # the longest pause between two tries
IDLE_POLL = 5.0  # seconds between looks at an empty outbox (a stop the daemon wrote)
SEND_TIMEOUT = 10.0  # seconds one send may take

# send_run's signature (protocol.otlp): the network, what tests replace.
Send = Callable[..., int]


class ExportConfigError(ValueError):
    """The export settings in the daemon's environment cannot be used."""


@dataclass(frozen=True)
class OtlpTarget:
    """Where continuous export sends runs."""

    endpoint: str
    headers: Mapping[str, str] = field(default_factory=dict)


def target_from_env(env: Mapping[str, str]) -> OtlpTarget | None:
    """The export target set in ``env``, or None when export is not configured.

    Raises ExportConfigError naming the variable when a value cannot be used.
    """
    endpoint = env.get(ENDPOINT_ENV, "").strip()
    if not endpoint:
        return None
    if not endpoint.startswith(("http://", "https://")):
        raise ExportConfigError(
            f"{ENDPOINT_ENV}={endpoint!r} is not an http:// or https:// URL; set "
            "export.otlp.endpoint in the user config to the backend's OTLP/HTTP address"
        )
    text = env.get(HEADERS_ENV, "").strip()
    try:
        headers = json.loads(text) if text else {}
    except ValueError as exc:
        raise ExportConfigError(f"{HEADERS_ENV} is not JSON: {exc}") from None
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ExportConfigError(
            f"{HEADERS_ENV} must be a JSON object of header names to text values"
        )
    return OtlpTarget(endpoint, headers)


def otel_loaded() -> bool:
    """Whether OpenTelemetry is in this process's memory (for status and the bench)."""
    return "opentelemetry" in sys.modules


class Outbox:
    """The sender of the OTLP outbox, and what ``status`` says of it.

    Without a target it only counts the rows left by an earlier configuration
    (once, at start), and sends nothing.
    """

    def __init__(
        self,
        writer: Writer,
        reader: Reader,
        target: OtlpTarget | None,
        *,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
        timeout: float = SEND_TIMEOUT,
        send: Send | None = None,
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.target = target
        self.retry_first, self.retry_max = retry_first, retry_max
        self.timeout = timeout  # seconds one send may take, its exporter's retries included
        self._send = send
        self.pending: int | None = None  # runs waiting; None until first counted
        self.sent = 0  # runs sent by this daemon
        self.last_error: str | None = None  # cleared by the next success
        self.last_error_at: str | None = None
        self.next_try_at: str | None = None  # set while waiting after a failure
        self._failures = 0  # in a row
        self._pause = 0.0  # seconds to wait after the latest failure
        self._wake = trio.Event()

    def status(self) -> dict[str, Any]:
        return {
            "endpoint": self.target.endpoint if self.target else None,
            "outbox": self.pending,
            "sent": self.sent,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "next_try_at": self.next_try_at,
            "otel_loaded": otel_loaded(),
        }

    def committed(self, commit: Committed) -> None:
        """A writer listener: a run ended, so there is something to send now."""
        if any(kind == "run.complete" for _run, kind in commit.runs_changed):
            self._wake.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send what the outbox holds, for as long as the daemon runs."""
        task_status.started()
        await self.writer.ready.wait()  # the file is open and migrated
        state = await self._state()
        if state is not None and state["last_error"] is not None:
            # A previous daemon's failure: shown until a send works.
            self.last_error, self.last_error_at = state["last_error"], state["last_try_at"]
        if self.target is None:
            if state is not None and state["pending"]:
                log.info(
                    "%d run(s) wait in the OTLP outbox; export.otlp.endpoint is not set, "
                    "so they are not sent",
                    state["pending"],
                )
            return
        log.info("exporting runs that end to %s (OTLP/HTTP)", self.target.endpoint)
        while True:
            row = state["next"] if state is not None else None
            if row is None:
                await self._wait_for_work(IDLE_POLL)
            elif not await self._send_one(self.target, row):
                await trio.sleep(self._pause)
                self.next_try_at = None
            state = await self._state()

    async def _state(self) -> OutboxState | None:
        """The outbox as stored (None, logged, if it cannot be read now)."""
        try:
            state = await self.reader.read(outbox_state)
        except (Refusal, apsw.Error) as exc:
            log.warning("cannot read the OTLP outbox: %s", exc)
            return None
        self.pending = state["pending"]
        return state

    async def _wait_for_work(self, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await self._wake.wait()
        self._wake = trio.Event()

    async def _send_one(self, target: OtlpTarget, row: OutboxRow) -> bool:
        """Send the row's run; True if it is sent (or gone), False if that failed."""
        run_id, generation = row["run_id"], row["generation"]
        try:
            snapshot = await self.reader.read(export_snapshot, run_id)
            if snapshot is not None:
                spans = await trio.to_thread.run_sync(
                    partial(self._call_send, target, *snapshot), abandon_on_cancel=True
                )
            # Sent, or pruned meanwhile (nothing to send): done with this generation.
            await self.writer.run_in_writer(export_sent, run_id, generation)
        except Exception as exc:
            await self._failed(run_id, exc)
            return False
        self._failures = 0
        if snapshot is None:
            return True
        self.sent += 1
        if self.last_error is not None:
            log.info("OTLP export to %s works again", target.endpoint)
        self.last_error = self.last_error_at = None
        log.info("run %s sent to %s (%d spans)", run_id, target.endpoint, spans)
        return True

    def _call_send(
        self, target: OtlpTarget, run: Mapping[str, Any], events: Sequence[Mapping[str, Any]]
    ) -> int:
        """In a worker thread: the first send imports OpenTelemetry, here."""
        send = self._send
        if send is None:
            from protocol.otlp import send_run

            send = send_run
        return send(
            run, events, endpoint=target.endpoint, headers=target.headers, timeout=self.timeout
        )

    async def _failed(self, run_id: str, exc: Exception) -> None:
        """Record the failure on the row, and how long to wait (``_pause``)."""
        from protocol.otlp import OtlpError  # loaded already by the send that failed

        why = str(exc) if isinstance(exc, OtlpError) else f"{type(exc).__name__}: {exc}"
        self._failures += 1
        self._pause = delay(self.retry_first, self.retry_max, self._failures, jitter=True)
        now = datetime.now(UTC)
        retry = iso_utc(now + timedelta(seconds=self._pause))
        try:
            await self.writer.run_in_writer(export_failed, run_id, why, iso_utc(now), retry)
        except DbProcessError as record:  # the disk, say: the row stays as it was
            log.warning("cannot record the failed export of run %s: %s", run_id, record.why)
        if self.last_error is None:  # once per streak of failures, not at every try
            log.warning(
                "cannot export run %s: %s; it stays in the OTLP outbox, tried again after "
                "growing pauses (up to %g s)",
                run_id,
                why,
                self.retry_max,
            )
        self.last_error, self.last_error_at, self.next_try_at = why, iso_utc(now), retry
