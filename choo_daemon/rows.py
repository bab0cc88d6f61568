"""Event messages as store rows: the one place where payloads become JSON text,
scrubbed of secrets. No trio here: the database process imports it."""

from __future__ import annotations

from typing import Any

from choo_daemon.store import EventRow
from protocol.redact import payload_json_redacted, redact_text

__all__ = ["EventRow", "add_rows"]


def add_rows(rows: list[EventRow], msg: dict[str, Any]) -> None:
    """Append an event message's events to ``rows``, as the store takes them.

    Every payload and error is scrubbed of secret shapes on the way (a second
    line behind the orchestrator's own redaction); unit and type are names
    and stay as they are. Raises BadField for a payload JSON cannot hold.
    """
    run = msg["run"]
    if msg["t"] == "events":
        for seq, time, type_, unit, task, pr, payload, error in msg["items"]:
            rows.append(
                (
                    run,
                    seq,
                    time,
                    type_,
                    unit,
                    task,
                    pr,
                    None if payload is None else payload_json_redacted(payload),
                    None if error is None else redact_text(error),
                )
            )
        return
    get = msg.get
    payload = get("payload")
    rows.append(
        (
            run,
            msg["seq"],
            msg["time"],
            msg["type"],
            get("unit"),
            get("task"),
            get("pr"),
            None if payload is None else payload_json_redacted(payload),
            None if (error := get("error")) is None else redact_text(error),
        )
    )
