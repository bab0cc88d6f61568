"""Event messages as store rows: the one place where payloads become JSON text,
scrubbed of secrets. No trio here: the database process imports it."""

from __future__ import annotations

from typing import Any

from choo_daemon.store import EventRow
from protocol.redact import (
    event_may_hold_secret,
    payload_json_redacted,
    payload_json_text,
    redact_text,
)

__all__ = ["EventRow", "add_rows", "may_hold_secrets"]


def may_hold_secrets(msg: dict[str, Any]) -> bool:
    """False when no payload or error of an event message can hold a secret.

    The daemon asks this of each message as it arrives (its first process
    has time to spare; the database process has none), and tells
    ``add_rows``. Raises BadField for a payload JSON cannot hold.
    """
    if msg["t"] == "events":
        return any(event_may_hold_secret(item[6], item[7]) for item in msg["items"])
    return event_may_hold_secret(msg.get("payload"), msg.get("error"))


def add_rows(rows: list[EventRow], msg: dict[str, Any], *, clean: bool = False) -> None:
    """Append an event message's events to ``rows``, as the store takes them.

    Every payload and error is scrubbed of secret shapes on the way (a second
    line behind the orchestrator's own redaction), unless ``clean`` says
    ``may_hold_secrets`` found none; unit and type are names and stay as
    they are. Raises BadField for a payload JSON cannot hold.
    """
    run = msg["run"]
    if clean and msg["t"] == "events":
        # The hottest loop of ingest.
        text = payload_json_text
        rows += [
            (run, seq, time, kind, unit, task, pr, None if p is None else text(p), e)
            for seq, time, kind, unit, task, pr, p, e in msg["items"]
        ]
        return
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
