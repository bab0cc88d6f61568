"""Telling the daemon when a crowd of streams has left (it gives their memory
back: ``choo_daemon.memory``).

It is told twice. Once as soon as the crowd has gone: that frees most of
what the streams held. Once more ``STALE_S`` later: each stream waited with
a deadline (its next heartbeat), and trio keeps a deadline that no longer
matters in its heap until the time it names, so for up to ``HEARTBEAT_S``
a thousand small objects of the crowd's (cancel scopes and their deadlines)
stay, scattered over the pages the crowd's connections used, and keep those
pages from going back. Measured by ``scripts/bench/live.py`` after 1,000
viewers: +8 to +13 MB against the baseline after the first give-back in
about half the runs, -3 to +4 MB after the second (16 runs).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing

import trio

from choo_web.streams import HEARTBEAT_S

log = logging.getLogger("choo.web")

CROWD = 100  # streams fewer than at their peak
LOOK_EVERY_S = 2.0
STALE_S = HEARTBEAT_S + LOOK_EVERY_S  # a stream's last deadline has passed by then


class Crowds:
    """The streams open now, and the most open at once since the last crowd left."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0
        self.left = 0  # crowds that have left and whose memory went back (twice)

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
        not only begun to); and once more ``STALE_S`` after."""
        seen = self.open
        again_at = math.inf
        leaving = 0  # crowds told once, waiting for the second time
        while True:
            await trio.sleep(LOOK_EVERY_S)
            now = trio.current_time()
            if now >= again_at:
                left()
                self.left += leaving
                again_at, leaving = math.inf, 0
            settled, seen = self.open == seen, self.open
            if settled and self.peak - self.open >= CROWD:
                log.info(
                    "%d streams closed; their memory goes back to the system",
                    self.peak - self.open,
                )
                left()
                self.peak = self.open
                again_at, leaving = now + STALE_S, leaving + 1

    def statistics(self) -> dict[str, int]:
        return {"streams_open": self.open, "crowds_left": self.left}
