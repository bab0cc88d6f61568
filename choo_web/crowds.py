"""Telling the daemon when a crowd of streams has left (it gives their memory
back: ``choo_daemon.memory``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing

import trio

log = logging.getLogger("choo.web")

CROWD = 100  # streams fewer than at their peak
LOOK_EVERY_S = 2.0


class Crowds:
    """The streams open now, and the most open at once since the last crowd left."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0
        self.left = 0  # crowds that have left (and ``left`` was called for)

    async def counted(self, stream: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """``stream``, counted open from its first chunk until it ends."""
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            async with aclosing(aiter(stream)) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    yield chunk
        finally:
            self.open -= 1

    async def watch(self, left: Callable[[], None]) -> None:
        """Forever: call ``left`` whenever ``CROWD`` streams fewer are open than at
        the peak, and their number has not changed for a look (the crowd has left,
        not only begun to)."""
        seen = self.open
        while True:
            await trio.sleep(LOOK_EVERY_S)
            settled, seen = self.open == seen, self.open
            if settled and self.peak - self.open >= CROWD:
                log.info(
                    "%d streams closed; their memory goes back to the system",
                    self.peak - self.open,
                )
                left()
                self.left += 1
                self.peak = self.open

    def statistics(self) -> dict[str, int]:
        return {"streams_open": self.open, "crowds_left": self.left}
