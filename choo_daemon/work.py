"""What sessions hand the writer, and whom the writer answers.

A session (or a spool file being imported) reads frames and passes the
work in them, in arrival order, to the single writer through a bounded
channel: one ``Inbound`` per read, holding ``Events`` and write requests.
The writer answers each through its ``Sender``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import protocol
from choo_daemon.rows import EventRow, add_rows, may_hold_secrets
from protocol import Message


@dataclass(eq=False, slots=True)
class Events:
    """Consecutive event messages of one read, checked, with the top seq per run.

    Only their frame bodies are kept, as they came: the database process
    turns them into rows itself (``add_rows``), and here they are decoded
    again only if someone watches live (``rows``).
    """

    bodies: list[bytes] = field(default_factory=list)
    clean: list[bool] = field(default_factory=list)  # no secret shape in the body's events
    top: dict[str, int] = field(default_factory=dict)
    count: int = 0

    def add(self, msg: Message) -> None:
        """Take an event message; raises BadField for a payload JSON cannot hold."""
        clean = not may_hold_secrets(msg)
        run = msg["run"]
        if msg["t"] == "events":
            items = msg["items"]
            seq = max(item[0] for item in items)
            self.count += len(items)
        else:
            seq = msg["seq"]
            self.count += 1
        if seq > self.top.get(run, 0):
            self.top[run] = seq
        self.bodies.append(msg[protocol.BODY])
        self.clean.append(clean)

    def rows(self) -> list[EventRow]:
        rows: list[EventRow] = []
        for body, clean in zip(self.bodies, self.clean, strict=True):
            add_rows(rows, protocol.unpack_body(body), clean=clean)
        return rows


Work = Events | Message


class Sender(Protocol):
    """Whoever the writer answers: a connection, or a spool file being imported."""

    def send_nowait(self, message: Message) -> None: ...
    def fail(self, code: str, message: str) -> None: ...
    def done(self, count: int = 1) -> None: ...


@dataclass(eq=False, slots=True)
class Inbound:
    """What one read of a session hands to the writer, in arrival order."""

    session: Sender
    items: list[Work] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(i.count if type(i) is Events else 1 for i in self.items)
