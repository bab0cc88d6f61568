"""GET /api/history/search: full-text search over the events' text, through a real daemon."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.web.support import History, ev
from tests.web.test_api import error_of

HOSTILE = "<img src=x onerror=alert(1)>"


async def _indexed(web: httpx.AsyncClient) -> None:
    """Wait until the database process has indexed every stored event."""
    while (await web.get("/api/history/search", params={"q": "x"})).json()["unindexed"]:
        await trio.sleep(0.02)


async def _write(history: History) -> None:
    await history.start("run_s1", repo="/repo/a", started=10)
    await history.send(
        [
            ev("run_s1", 1, "task.started", unit="u1", task=1, payload={"title": "Add login"}),
            ev(
                "run_s1",
                2,
                "task.validation.fail",
                unit="u1",
                task=1,
                payload={"command": "pytest", "output_tail": f"KeyError: {HOSTILE}"},
            ),
            ev("run_s1", 3, "unit.started", unit="u2"),
            ev("run_s1", 4, "task.failed", unit="u1", task=1, error="KeyError again"),
        ]
    )
    await history.start("run_s2", repo="/repo/b", started=20)
    await history.send(
        [ev("run_s2", 1, "task.started", unit="u9", task=2, payload={"title": "KeyError fix"})]
    )


async def search(web: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await web.get("/api/history/search", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_search_across_runs_newest_first_with_plain_text_snippets(
    web: httpx.AsyncClient, history: History
) -> None:
    await _write(history)
    await _indexed(web)
    body = await search(web, q="keyerror")
    assert [(m["run_id"], m["seq"]) for m in body["matches"]] == [
        ("run_s2", 1),
        ("run_s1", 4),
        ("run_s1", 2),
    ]
    first = body["matches"][2]
    assert {k: first[k] for k in ("repo_path", "unit", "task", "type")} == {
        "repo_path": "/repo/a",
        "unit": "u1",
        "task": 1,
        "type": "task.validation.fail",
    }
    text = first["snippet"]["text"]
    assert HOSTILE in text  # plain text, as stored: the UI inserts it as text
    assert [text[s : s + n] for s, n in first["snippet"]["matches"]] == ["KeyError"]
    assert body["terms"] == [{"text": "keyerror", "prefix": False}]
    assert body["next_cursor"] is None
    only_a = await search(web, q="keyerror", repo="/repo/a")
    assert [m["run_id"] for m in only_a["matches"]] == ["run_s1", "run_s1"]
    page = await search(web, q="keyerror", limit=2)
    rest = await search(web, q="keyerror", limit=2, cursor=page["next_cursor"])
    assert [m["seq"] for m in page["matches"] + rest["matches"]] == [1, 4, 2]


async def test_search_within_a_run_lists_every_match_seq_in_order(
    web: httpx.AsyncClient, history: History
) -> None:
    await _write(history)
    await _indexed(web)
    body = await search(web, q="KeyError", run="run_s1")
    assert body["run_id"] == "run_s1"
    assert body["seqs"] == [2, 4] and body["total"] == 2 and body["truncated"] is False
    assert [m["seq"] for m in body["matches"]] == [2, 4]
    assert (await search(web, q="img onerror", run="run_s1"))["seqs"] == [2]


async def test_bad_search_queries_are_400_with_a_clear_message(
    web: httpx.AsyncClient, history: History
) -> None:
    await _write(history)
    missing = await error_of(await web.get("/api/history/search"), 400, "bad_parameter")
    assert "?q=" in missing
    unclosed = await web.get("/api/history/search", params={"q": '"KeyError'})
    assert 'closing " is missing' in await error_of(unclosed, 400, "bad_parameter")
    empty = await web.get("/api/history/search", params={"q": "<> -x"})
    assert "at least one word" in await error_of(empty, 400, "bad_parameter")
    # FTS5's own syntax is only text to us: never a 500.
    for q in ('NEAR("a" b', "a:b", "*", "(((", "AND OR NOT", '""'):
        response = await web.get("/api/history/search", params={"q": q})
        assert response.status_code in (200, 400), (q, response.text)
    bad_limit = await web.get("/api/history/search", params={"q": "x", "limit": "500"})
    await error_of(bad_limit, 400, "bad_parameter")
    bad_cursor = await web.get("/api/history/search", params={"q": "x", "cursor": "zz"})
    await error_of(bad_cursor, 400, "bad_cursor")
    unknown = await web.get("/api/history/search", params={"q": "x", "run": "run_nope"})
    await error_of(unknown, 404, "unknown_run")
