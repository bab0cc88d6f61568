"""Answers of finished runs kept as the bytes sent: roll-ups computed once.

A run's roll-up routes (``/units``, and ``/tasks`` without ``task``) read
thousands of rows and write megabytes of JSON for a big run. Once the run
has ended and its events are all added up, that answer cannot change until
the run is resumed, imported again or deleted, and each of those changes
the run's stamp (``store.settled_stamp``: its id, last seq, event count and
resume count). So the answer is kept under its stamp and given again while
the stamp holds. A running run has no stamp and is always read afresh.

At most ``max_bytes`` are kept, the least recently used going first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Final

MAX_BYTES: Final = 32 * 1024 * 1024


class Memo:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._kept: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self.hits = 0

    async def answer(self, key: Hashable | None, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        """The answer kept under ``key``, else ``compute()``'s (kept if ``key``)."""
        if key is not None and (kept := self._kept.get(key)) is not None:
            self._kept.move_to_end(key)
            self.hits += 1
            return kept
        body = await compute()
        if key is not None and len(body) <= self.max_bytes:
            self._keep(key, body)
        return body

    def _keep(self, key: Hashable, body: bytes) -> None:
        old = self._kept.pop(key, None)
        self._size += len(body) - (len(old) if old is not None else 0)
        self._kept[key] = body
        while self._size > self.max_bytes:
            _, dropped = self._kept.popitem(last=False)
            self._size -= len(dropped)

    def statistics(self) -> dict[str, int]:
        return {"answers": len(self._kept), "bytes": self._size, "hits": self.hits}
