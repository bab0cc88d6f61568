"""The JSON API over HTTP, against a real daemon whose history is written through its socket."""

from __future__ import annotations

import httpx
import pytest
import trio

from choo_daemon.daemon import Daemon
from choo_daemon.reader import POOL_SIZE
from tests.web.support import History, at, ev, varied


async def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    return message


async def test_health_reports_the_daemon(web: httpx.AsyncClient) -> None:
    body = (await web.get("/api/health")).json()
    assert body["ok"] is True and body["web"] == str(web.base_url).rstrip("/")
    assert body["live"]["subscribers"] == 0


async def test_repos_have_run_counts_and_last_run(web: httpx.AsyncClient, history: History) -> None:
    assert (await web.get("/api/repos")).json() == {"repos": []}
    await history.start("run_a1", repo="/a", started=10)
    await history.start("run_a2", repo="/a", started=30)
    await history.start("run_b1", repo="/b", started=20)
    assert (await web.get("/api/repos")).json() == {
        "repos": [
            {"repo_path": "/a", "run_count": 2, "last_started_at": at(30)},
            {"repo_path": "/b", "run_count": 1, "last_started_at": at(20)},
        ]
    }


async def test_run_pages_cover_every_run_once_newest_first(
    web: httpx.AsyncClient, history: History
) -> None:
    # Two runs share a start time: the id breaks the tie, and no page loses one.
    starts = {"run_1": 1, "run_2": 2, "run_3": 3, "run_4a": 4, "run_4b": 4, "run_5": 5, "run_6": 6}
    for run, started in starts.items():
        await history.start(run, started=started, repo="/r" if started % 2 else "/s")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await web.get("/api/history/runs", params=params)).json()
        assert page["total"] == 7
        seen += [run["id"] for run in page["runs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == ["run_6", "run_5", "run_4b", "run_4a", "run_3", "run_2", "run_1"]

    by_repo = (await web.get("/api/history/runs?repo=/r&limit=500")).json()
    assert [r["id"] for r in by_repo["runs"]] == ["run_5", "run_3", "run_1"]
    assert by_repo["total"] == 3 and by_repo["next_cursor"] is None


async def test_runs_filter_by_status(web: httpx.AsyncClient, history: History) -> None:
    await history.start("run_ok", started=1)
    await history.complete("run_ok")
    await history.start("run_failed", started=2)
    await history.complete("run_failed", "failed")
    await history.start("run_on", started=3)
    for status, expected in [("completed", ["run_ok"]), ("failed", ["run_failed"]),
                             ("running", ["run_on"]), ("stopped", [])]:  # fmt: skip
        page = (await web.get("/api/history/runs", params={"status": status})).json()
        assert [r["id"] for r in page["runs"]] == expected and page["total"] == len(expected)
    # An empty filter is no filter (forms send them).
    assert (await web.get("/api/history/runs?status=&repo=")).json()["total"] == 3


@pytest.mark.parametrize(
    ("query", "code", "names"),
    [
        ("limit=abc", "bad_parameter", ["limit", "'abc'"]),
        ("limit=0", "bad_parameter", ["limit", "0"]),
        ("limit=501", "bad_parameter", ["limit", "501"]),
        ("limit=1.5", "bad_parameter", ["limit", "'1.5'"]),
        ("status=bogus", "bad_parameter", ["status", "'bogus'", "running"]),
        ("cursor=not-a-cursor", "bad_cursor", ["'not-a-cursor'"]),
        ("cursor=WzEsMl0", "bad_cursor", ["WzEsMl0"]),  # valid base64 JSON, not ours
    ],
)
async def test_bad_run_list_parameters_are_400(
    web: httpx.AsyncClient, query: str, code: str, names: list[str]
) -> None:
    message = await error_of(await web.get(f"/api/history/runs?{query}"), 400, code)
    for name in names:
        assert name in message


async def test_run_detail_has_counts_duration_and_no_markers(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_d", started=0, units=5)
    await history.send(varied("run_d", range(1, 8)))
    await history.complete("run_d", "failed", ended=90.5, done=4)
    run = (await web.get("/api/history/runs/run_d")).json()
    assert run["id"] == "run_d" and run["status"] == "failed"
    assert (run["total_units"], run["completed_units"], run["failed_units"]) == (5, 4, 0)
    assert run["duration_ms"] == 90_500 and run["resume_count"] == 0
    assert run["event_count"] == 7 and run["last_seq"] == 7
    assert run["markers"] == [] and run["has_graph"] is False


async def test_stopped_and_resumed_run_shows_markers(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_sr")
    await history.send(varied("run_sr", range(1, 4)))
    await history.send([ev("run_sr", 4, "run.stopped", payload={"reason": "SIGINT"})])
    await history.complete("run_sr", "stopped")
    assert (await web.get("/api/history/runs/run_sr")).json()["status"] == "stopped"
    assert await history.resume("run_sr", token="t1", reason="choo resume") == 5
    await history.send(varied("run_sr", range(6, 8)))
    await history.complete("run_sr")
    run = (await web.get("/api/history/runs/run_sr")).json()
    assert run["status"] == "completed" and run["resume_count"] == 1
    assert [(m["seq"], m["type"], m["reason"]) for m in run["markers"]] == [
        (4, "run.stopped", "SIGINT"),
        (5, "run.resumed", "choo resume"),
    ]


async def test_unique_run_id_prefix_is_accepted_everywhere(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_20260120_143052_a1b2")
    await history.start("run_20260120_150000_c3d4")
    await history.send(varied("run_20260120_143052_a1b2", range(1, 3)))
    await history.graph("run_20260120_143052_a1b2")
    base = "/api/history/runs/run_20260120_14"
    assert (await web.get(base)).json()["id"] == "run_20260120_143052_a1b2"
    assert len((await web.get(base + "/events")).json()["events"]) == 2
    assert (await web.get(base + "/graph")).status_code == 200

    message = await error_of(await web.get("/api/history/runs/run_2026"), 400, "ambiguous_run")
    assert "run_20260120_143052_a1b2" in message and "run_20260120_150000_c3d4" in message
    await error_of(await web.get("/api/history/runs/run_2026/events"), 400, "ambiguous_run")


@pytest.mark.parametrize("suffix", ["", "/events", "/graph", "/stream"])
async def test_unknown_run_is_404_on_every_run_route(
    web: httpx.AsyncClient, history: History, suffix: str
) -> None:
    await history.start("run_here")
    message = await error_of(
        await web.get(f"/api/history/runs/run_nowhere{suffix}"), 404, "unknown_run"
    )
    assert "run_nowhere" in message


async def test_events_filters(web: httpx.AsyncClient, history: History) -> None:
    await history.start("run_f")
    await history.send(varied("run_f", range(1, 101)))

    async def seqs(query: str) -> tuple[list[int], int | None]:
        page = (await web.get(f"/api/history/runs/run_f/events?{query}")).json()
        return [e["seq"] for e in page["events"]], page["next_after"]

    everything, next_after = await seqs("")
    assert everything == list(range(1, 101)) and next_after is None
    assert await seqs("limit=10") == (list(range(1, 11)), 10)
    assert await seqs("after=95") == ([96, 97, 98, 99, 100], None)
    assert await seqs("after=100") == ([], None)
    # exact type
    exact, _ = await seqs("type=task.started&limit=1000")
    assert exact == [s for s in range(1, 101) if s % 5 == 1]
    # a prefix ending with "." matches every type under it, in seq order
    prefix, _ = await seqs("type=task.&limit=1000")
    assert prefix == [s for s in range(1, 101) if s % 5 in (1, 2, 3)]
    # "task" without the dot is an exact type: nothing is called just "task"
    assert await seqs("type=task") == ([], None)
    # unit, and unit with a prefix, paged
    unit, _ = await seqs("unit=u2&limit=1000")
    assert unit == [s for s in range(1, 101) if s % 3 == 1]
    first, cursor = await seqs("unit=u2&type=task.&limit=5")
    wanted = [s for s in range(1, 101) if s % 3 == 1 and s % 5 in (1, 2, 3)]
    assert first == wanted[:5] and cursor == wanted[4]
    rest, end = await seqs(f"unit=u2&type=task.&limit=1000&after={cursor}")
    assert rest == wanted[5:] and end is None
    # the event's fields, as stored
    one = (await web.get("/api/history/runs/run_f/events?after=41&limit=1")).json()["events"]
    assert one == [
        {
            "seq": 42,
            "time": at(0.042),
            "type": "task.claude.invoke",
            "unit": "u1",
            "task": 2,
            "pr": None,
            "payload": {"n": 42},
            "error": None,
        }
    ]


async def test_the_run_view_opens_with_one_request(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_v")
    await history.send(varied("run_v", range(1, 31)))
    view = (await web.get("/api/view/run?run=run_v&type=task.&limit=5")).json()
    assert view["run"]["id"] == "run_v" and view["error"] is None
    assert [e["type"][:5] for e in view["events"]["events"]] == ["task."] * 5
    assert view["events"]["total"] == sum(1 for s in range(1, 31) if s % 5 in (1, 2, 3))
    assert view["event_types"] == (await web.get("/api/event-types")).json()
    # No such run: an answer, not an HTTP error (the browser would log a 404).
    response = await web.get("/api/view/run?run=run_nowhere")
    assert response.status_code == 200
    missing = response.json()
    assert (missing["run"], missing["events"]) == (None, None)
    assert missing["error"]["status"] == 404 and missing["error"]["code"] == "unknown_run"
    assert "run_nowhere" in missing["error"]["message"]
    await error_of(await web.get("/api/view/run"), 400, "bad_parameter")


async def test_events_page_back_from_the_end_with_the_count(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_b")
    await history.send(varied("run_b", range(1, 101)))
    wanted = [s for s in range(1, 101) if s % 5 in (1, 2, 3)]  # type=task.
    page = (await web.get("/api/history/runs/run_b/events?type=task.&before=101&limit=4")).json()
    assert [e["seq"] for e in page["events"]] == wanted[-4:]
    assert page["next_after"] is None and page["prev_before"] == wanted[-4]
    assert (page["total"], page["total_exact"]) == (len(wanted), True)
    back = (
        await web.get(f"/api/history/runs/run_b/events?type=task.&before={wanted[-4]}&limit=4")
    ).json()
    assert [e["seq"] for e in back["events"]] == wanted[-8:-4]
    assert back["next_after"] == wanted[-5]
    whole = (await web.get("/api/history/runs/run_b/events?limit=1")).json()
    assert (whole["total"], whole["prev_before"]) == (100, None)


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("after=-1", ["after", "-1"]),
        ("after=x", ["after", "'x'"]),
        ("limit=0", ["limit", "0"]),
        ("limit=abc", ["limit", "'abc'"]),
        ("limit=1001", ["limit", "1001"]),
        ("type=.", ["type", "'.'"]),
        ("before=0", ["before", "0"]),
        ("before=x", ["before", "'x'"]),
    ],
)
async def test_bad_events_parameters_are_400(
    web: httpx.AsyncClient, history: History, query: str, names: list[str]
) -> None:
    await history.start("run_p")
    message = await error_of(
        await web.get(f"/api/history/runs/run_p/events?{query}"), 400, "bad_parameter"
    )
    for name in names:
        assert name in message


async def test_graph_and_missing_graph(web: httpx.AsyncClient, history: History) -> None:
    await history.start("run_g")
    message = await error_of(await web.get("/api/history/runs/run_g/graph"), 404, "no_graph")
    assert "run_g" in message
    await history.graph("run_g")
    assert (await web.get("/api/history/runs/run_g/graph")).json() == {
        "nodes": [{"id": "u1"}, {"id": "u2"}, {"id": "u3"}],
        "edges": [{"from": "u2", "to": "u1"}, {"from": "u3", "to": "u2"}],
        "levels": [["u1"], ["u2"], ["u3"]],
    }
    assert (await web.get("/api/history/runs/run_g")).json()["has_graph"] is True


@pytest.mark.parametrize("path", ["/api/nope", "/api/history", "/api/history/runs/x/nope", "/x"])
async def test_unknown_paths_are_404_json(web: httpx.AsyncClient, path: str) -> None:
    message = await error_of(await web.get(path), 404, "not_found")
    assert path in message


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize(
    "path", ["/api/health", "/api/repos", "/api/history/runs", "/api/history/runs/run_m/events"]
)
async def test_only_get_and_head_are_allowed(
    web: httpx.AsyncClient, history: History, method: str, path: str
) -> None:
    await history.start("run_m")
    response = await web.request(method, path, json={})
    message = await error_of(response, 405, "method_not_allowed")
    assert method in message and path in message
    assert response.headers["allow"] == "GET, HEAD"
    head = await web.head(path)
    assert head.status_code == 200 and head.content == b""


async def test_reads_share_a_small_pool_that_closes_with_the_daemon(
    web: httpx.AsyncClient, history: History, daemon: Daemon
) -> None:
    await history.start("run_pool")
    await history.send(varied("run_pool", range(1, 201)))
    pages: list[int] = []

    async def read(n: int) -> None:
        page = await web.get(f"/api/history/runs/run_pool/events?after={n}&limit=5")
        pages.append(page.json()["events"][0]["seq"])

    async with trio.open_nursery() as nursery:
        for n in range(40):
            nursery.start_soon(read, n)
    assert sorted(pages) == list(range(1, 41))
    stats = daemon.reader.statistics()
    assert 1 <= stats["connections_open"] <= POOL_SIZE
    assert stats["connections_idle"] == stats["connections_open"]

    daemon.request_shutdown()
    with trio.fail_after(10):
        while daemon.reader.statistics()["connections_open"]:
            await trio.sleep(0.01)
