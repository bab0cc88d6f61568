"""Exponential backoff, sans-IO: the pauses between tries, not the sleeping.

``delays(first, cap)`` yields ``first``, then twice the last pause each
time, never more than ``cap``; ``delay`` gives the pause after the n-th
failure in a row directly. With ``jitter``, each pause is instead a random
time between half and all of that value, so that peers refused together do
not all come back together (PROTOCOL.md section 8). The caller sleeps, with
whatever clock it has (trio, or ``time.sleep`` in a plain process), and
starts a new iterator when the failures in a row are over.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def delay(
    first: float,
    cap: float,
    tries: int,
    *,
    jitter: bool = False,
    rand: Callable[[], float] = random.random,
) -> float:
    """The pause after the ``tries``-th failure in a row (1, 2, ...).

    min(first × 2^(tries-1), cap); with ``jitter``, a random time between half
    and all of it. ``rand`` returns a float in [0, 1); tests pass their own.
    """
    top = min(first * (1 << min(tries - 1, 64)), cap)
    return top / 2 + top / 2 * rand() if jitter else top


def delays(
    first: float,
    cap: float,
    *,
    jitter: bool = False,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """The pauses after one failure, two failures in a row, and so on, endlessly."""
    tries = 0
    while True:
        tries += 1
        yield delay(first, cap, tries, jitter=jitter, rand=rand)
