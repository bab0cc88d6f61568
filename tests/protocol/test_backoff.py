"""The backoff helper: doubling pauses with a cap, optionally jittered."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from protocol.backoff import delay, delays


def first(n: int, pauses: Iterator[float]) -> list[float]:
    return list(itertools.islice(pauses, n))


def test_pauses_double_from_the_first_up_to_the_cap() -> None:
    assert first(8, delays(0.05, 1.0)) == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert first(5, delays(0.02, 0.1)) == [0.02, 0.04, 0.08, 0.1, 0.1]


def test_the_nth_pause_is_the_nth_of_the_sequence() -> None:
    assert [delay(0.05, 5.0, n) for n in range(1, 11)] == list(
        itertools.islice(delays(0.05, 5.0), 10)
    )
    assert delay(0.1, 2.0, 10_000) == 2.0  # no overflow after many failures


def test_jitter_spreads_each_pause_over_its_upper_half() -> None:
    low = first(6, delays(0.1, 2.0, jitter=True, rand=lambda: 0.0))
    assert low == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    top = first(6, delays(0.1, 2.0, jitter=True, rand=lambda: 0.999999))
    assert all(
        abs(got - want) < 1e-5
        for got, want in zip(top, [0.1, 0.2, 0.4, 0.8, 1.6, 2.0], strict=True)
    )
    waits = {delay(0.1, 2.0, 3, jitter=True) for _ in range(100)}
    assert all(0.2 <= w <= 0.4 for w in waits) and len(waits) > 50
