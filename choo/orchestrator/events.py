"""The in-process event bus: what happens during a run, as it happens.

The scheduler and workers ``emit``; handlers (the console, the history
recorder) receive every event synchronously and must not block. The types
that may be emitted are those of the catalogue, ``protocol.events``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from protocol.events import BY_NAME
from protocol.times import utc_now


class Event(NamedTuple):
    """One event, as every handler receives it.

    Immutable, and a NamedTuple rather than a frozen dataclass: one is made
    per event (per tool call of every agent), and a frozen dataclass takes
    four times as long to make. Handlers must not change ``payload``.
    """

    type: str
    time: str
    unit: str | None = None
    task: int | None = None
    payload: dict[str, Any] = {}  # noqa: RUF012 (read, never changed: see above)
    error: str | None = None


Handler = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def emit(
        self,
        type: str,
        *,
        unit: str | None = None,
        task: int | None = None,
        error: str | None = None,
        **payload: Any,
    ) -> Event:
        if type not in BY_NAME:
            raise ValueError(f"unknown event type {type!r}")
        event = Event(type, utc_now(), unit, task, payload, error)
        for handler in self._handlers:
            handler(event)
        return event
