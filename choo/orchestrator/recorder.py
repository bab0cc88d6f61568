"""HistoryRecorder: the bus handler that sends a run's events to the daemon.

It numbers events (seq), keeps only the payload fields allowed for each
event type (by the catalogue, ``protocol.events``), and redacts strings
that look like secrets before anything leaves the process. Sending never
blocks; if the daemon refuses us, one warning is printed and the run goes
on unrecorded. A run that is not recorded (``--no-history``) goes through
it too, for the live view (``recorded=False``): the same events, and at
most one warning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from choo.client import DaemonClient, DaemonError
from choo.orchestrator.events import Event
from protocol.events import allowed_payload_keys
from protocol.redact import redact_text, redact_values


def allowed_payload(event: Event) -> dict[str, Any]:
    keep = allowed_payload_keys(event.type)
    payload = event.payload
    if not keep.issuperset(payload):  # most events hold only allowed fields: no copy then
        payload = {k: v for k, v in payload.items() if k in keep}
    return redact_values(payload)


class HistoryRecorder:
    def __init__(
        self,
        client: DaemonClient,
        run_id: str,
        *,
        first_seq: int = 1,
        warn: Callable[[str], None],
        recorded: bool = True,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.recorded = recorded
        self.next_seq = first_seq
        self._warn = warn
        self.failed: str | None = None

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    def handle(self, event: Event) -> None:
        if self.failed is not None:
            return
        seq = self.next_seq
        self.next_seq += 1
        try:
            self.client.send_event(
                self.run_id,
                seq,
                event.type,
                time=event.time,
                unit=event.unit,
                task=event.task,
                payload=allowed_payload(event) or None,
                error=redact_text(event.error) if event.error else None,
            )
        except DaemonError as exc:
            if self.recorded:
                self.fail(f"the daemon refused this run's events ({exc})")
            else:
                self.fail(exc.message)  # the daemon went away

    def fail(self, why: str, *, then: str = "the run goes on without recording") -> None:
        """Stop recording, with one warning; the run itself goes on."""
        if self.failed is None:
            self.failed = why
            if not self.recorded:  # nothing was to be kept: no word about recording
                self._warn(f"live view: {why}; the run goes on (it is not recorded)")
                return
            self._warn(f"history: {why}" + (f"; {then}" if then else ""))
