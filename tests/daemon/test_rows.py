"""Event messages as rows: the scrub is skipped only where it would change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from choo_daemon.rows import add_rows, may_hold_secrets
from protocol.errors import BadField

NOW = "2026-01-20T14:30:52.123Z"


def events(*items: tuple[Any, str | None]) -> dict[str, Any]:
    return {
        "t": "events",
        "run": "run_r",
        "items": [
            [n, NOW, "task.validation.ok", "u", None, None, payload, error]
            for n, (payload, error) in enumerate(items, 1)
        ],
    }


def test_a_message_without_secret_shapes_is_stored_the_same_without_the_scrub() -> None:
    msg = events(({"output": "ok: 42 tests passed\n" * 3, "n": 1}, None), (None, "exit code 2"))
    assert not may_hold_secrets(msg)
    scrubbed: list[Any] = []
    add_rows(scrubbed, msg)
    plain: list[Any] = []
    add_rows(plain, msg, clean=True)
    assert plain == scrubbed


@pytest.mark.parametrize(
    "payload, error",
    [
        ({"env": "GITHUB_TOKEN=ghp_" + "a" * 36}, None),
        (None, "Authorization: Bearer abcdef0123456789"),
        ({"nested": [{"password": "hunter2hunter2"}]}, None),
    ],
)
def test_one_secret_shape_anywhere_in_a_message_makes_it_scrubbed(
    payload: Any, error: str | None
) -> None:
    msg = events(({"fine": 1}, None), (payload, error))
    assert may_hold_secrets(msg)
    rows: list[Any] = []
    add_rows(rows, msg)
    assert "[REDACTED]" in str(rows[1])


def test_a_payload_json_cannot_hold_is_refused_when_checked() -> None:
    with pytest.raises(BadField, match="cannot be stored as JSON"):
        may_hold_secrets(events(({"big": 2**70}, None)))
