"""A new read route is one served store function and one handler; refusals map by kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apsw
import httpx
import pytest
import trio
from quart import Response

from choo_daemon import store
from choo_daemon.daemon import Daemon
from choo_daemon.liveonly import LiveOnlyReader
from choo_web.app import create_app, serve_web
from choo_web.errors import from_refusal
from choo_web.jsonio import json_response
from protocol.errors import UNAVAILABLE, Refusal
from protocol.home import TokenFile
from tests.web.support import History, bearer


def repo_runs(conn: apsw.Connection, repo: str) -> dict[str, Any]:
    """A read the store does not have: how many runs a repository has."""
    with conn:
        count = conn.execute("SELECT count(*) FROM runs WHERE repo_path = ?", (repo,)).get
    if not count:
        raise store.UnknownRun(repo)
    return {"repo_path": repo, "runs": count}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[..., Any]], None]:
    """Offer a function as the store's ``@served`` does, for this test only."""
    return lambda fn: monkeypatch.setitem(store.SERVED, fn.__name__, fn)


async def test_a_new_route_is_a_served_read_and_a_handler(
    daemon: Daemon,
    history: History,
    nursery: trio.Nursery,
    served: Callable[[Callable[..., Any]], None],
) -> None:
    served(repo_runs)
    await history.start("run_a", repo="/r/one")
    await history.start("run_b", repo="/r/one")
    reader = LiveOnlyReader(daemon.reader, daemon.liveonly)  # as the daemon passes it in
    app = create_app(
        daemon.status, reader=reader, live=daemon.hub, token=TokenFile(daemon.home.token).current
    )

    @app.route("/api/repo-runs/<path:repo>")
    async def handler(repo: str) -> Response:
        return json_response(await reader.repo_runs("/" + repo))

    stop = trio.Event()
    url = await nursery.start(serve_web, app, "127.0.0.1", 0, stop.wait)
    try:
        async with httpx.AsyncClient(base_url=url, headers=bearer(daemon.home)) as web:
            found = await web.get("/api/repo-runs/r/one")
            missing = await web.get("/api/repo-runs/r/none")
    finally:
        stop.set()
    assert found.status_code == 200 and found.json() == {"repo_path": "/r/one", "runs": 2}
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_run"


async def test_a_read_the_store_does_not_serve_is_no_attribute(daemon: Daemon) -> None:
    with pytest.raises(AttributeError, match="serves no read 'get_run'"):
        daemon.reader.get_run  # noqa: B018  (a store function, but not a served one)
    with pytest.raises(AttributeError):
        LiveOnlyReader(daemon.reader, daemon.liveonly).counts  # noqa: B018


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (store.UnknownRun("r"), 404, "unknown_run"),
        (store.NoGraph("r", "stored"), 404, "no_graph"),
        (store.AmbiguousRun("r", ["r1", "r2"]), 400, "ambiguous_run"),
        (store.BadCursor("c"), 400, "bad_cursor"),
        (store.BadParameter("limit", 0, "1 to 500"), 400, "bad_parameter"),
        (Refusal("later", code="shutting_down", kind=UNAVAILABLE), 503, "shutting_down"),
        (store.SchemaTooNew("/h.db", 9, 3), 500, "schema_too_new"),
    ],
)
def test_a_refusal_becomes_the_api_error_of_its_kind(
    error: Refusal, status: int, code: str
) -> None:
    api = from_refusal(error)
    assert (api.status, api.code, api.message) == (status, code, error.message)
