"""How the daemon's entry point reports what stopped it, however deep trio's groups nest it."""

from __future__ import annotations

from typing import Any

import pytest

import choo_daemon.__main__ as entry
from choo_daemon.dblink import DbProcessGone
from choo_daemon.store import SchemaTooNew


def serve_raising(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> int:
    async def run(*_: Any) -> None:
        raise exc

    monkeypatch.setattr(entry, "_run", run)
    return entry._serve(None, None)  # type: ignore[arg-type]


def test_a_clean_stop_is_0(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run(*_: Any) -> None:
        pass

    monkeypatch.setattr(entry, "_run", run)
    assert entry._serve(None, None) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cause", "said"),
    [
        (OSError("no room"), "cannot start: no room"),
        (SchemaTooNew("/h/history.db", 9, 1), "cannot open the history database: "),
        (DbProcessGone("it died"), "stopping: it died; nothing acked is lost"),
    ],
)
def test_a_known_cause_in_nested_groups_is_logged_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, cause: Exception, said: str
) -> None:
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [cause])])
    assert serve_raising(monkeypatch, nested) == 1
    assert said in caplog.text


def test_two_causes_are_both_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    group = ExceptionGroup("both", [OSError("no room"), DbProcessGone("it died")])
    assert serve_raising(monkeypatch, group) == 1
    assert "cannot start: no room" in caplog.text and "stopping: it died" in caplog.text


def test_a_bug_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ExceptionGroup) as caught:
        serve_raising(monkeypatch, ExceptionGroup("bug", [OSError("x"), TypeError("bug")]))
    assert caught.group_contains(TypeError)
