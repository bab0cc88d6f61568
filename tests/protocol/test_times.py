"""utc_now: the stored shape, read from the clock (its second formatted once)."""

from __future__ import annotations

from datetime import UTC, datetime

from protocol.times import is_iso_utc, iso_utc, utc_now


def test_utc_now_has_the_stored_shape_and_the_time_of_the_clock() -> None:
    for _ in range(2000):  # across a few millisecond (and maybe second) boundaries
        before = iso_utc(datetime.now(UTC))
        now = utc_now()
        after = iso_utc(datetime.now(UTC))
        assert is_iso_utc(now), now
        assert before <= now <= after
