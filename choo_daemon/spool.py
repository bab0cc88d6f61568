"""Importing spool files: history an orchestrator could not deliver.

When no daemon could be reached, an orchestrator writes what it could not
send to ``CHOO_HOME/spool/*.frames`` (named as ``protocol.home`` says): the
very frames it would have sent, in order. At start the daemon feeds each
file through the writer as if a client had sent it, then deletes it. Replay
is idempotent (the store keeps one event per run and seq), so a file
imported twice, after a crash in the middle, still leaves every event
stored exactly once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import trio

import protocol
from choo_daemon.work import Events, Inbound, Work
from protocol import Message
from protocol.home import spool_files

log = logging.getLogger("choo.daemon")

_IMPORTED = frozenset({"run.start", "run.resume", "run.graph", "run.complete"})


class SpoolFile:
    """Stands in for a connection: collects the writer's answers for one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[str] = []
        self.events = 0
        self._answered = trio.Event()

    def send_nowait(self, message: Message) -> None:
        if message["t"] == "error":
            self.errors.append(f"{message['code']}: {message['message']}")

    def fail(self, code: str, message: str) -> None:
        self.errors.append(f"{code}: {message}")

    def done(self, count: int = 1) -> None:
        self._answered.set()

    async def wait_answered(self) -> None:
        await self._answered.wait()


def read_work(path: Path) -> list[Work]:
    """A spool file as writer work, in its original order."""
    decoder = protocol.FrameDecoder(keep_event_bodies=True)
    messages = decoder.feed(path.read_bytes())
    decoder.eof()
    items: list[Work] = []
    events: Events | None = None
    for msg in messages:
        if msg["t"] in ("event", "events"):
            if events is None:
                events = Events()
                items.append(events)
            events.add(msg)
        elif msg["t"] in _IMPORTED:
            events = None
            items.append(msg)
    return items


async def import_spool(
    spool: Path,
    send: trio.MemorySendChannel[Inbound],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Import every pending spool file, one after the other."""
    task_status.started()
    async with send:
        for path in spool_files(spool):
            await _import_one(path, send)


async def _import_one(path: Path, send: trio.MemorySendChannel[Inbound]) -> None:
    try:
        items = await trio.to_thread.run_sync(read_work, path)
    except (OSError, protocol.ProtocolError) as exc:
        _set_aside(path, f"cannot be read: {exc}")
        return
    events = sum(i.count for i in items if isinstance(i, Events))
    if items:
        file = SpoolFile(path)
        await send.send(Inbound(file, items))
        await file.wait_answered()
        if file.errors:
            _set_aside(path, "; ".join(file.errors[:3]))
            return
    await trio.to_thread.run_sync(path.unlink)
    log.info("imported spool file %s: %d events", path.name, events)


def _set_aside(path: Path, why: str) -> None:
    failed = path.parent / "failed"
    failed.mkdir(exist_ok=True)
    os.replace(path, failed / path.name)
    log.error("spool file %s %s; moved to %s", path.name, why, failed)
