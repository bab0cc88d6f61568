"""The daemon's HTTP side: a read-only quart-trio app served by hypercorn.

``create_app`` builds it from what the daemon passes in: a status function,
the history's read side (``HistoryReader``), the live hub (``LiveSource``),
the web token (``auth.py``: every route but ``/api/health`` needs it) and
the host names it answers to. This package never reaches into the daemon's
internals.

Every route is GET (HEAD too); every error is ``{"error": {"code",
"message"}}`` with its status; every response carries the security headers.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from choo_web import params
from choo_web.auth import Token, authorized, install_token_check, until_revoked
from choo_web.board import LiveBoard
from choo_web.compare import compare_runs
from choo_web.crowds import Crowds
from choo_web.errors import (
    ApiError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    bad_parameter,
    from_refusal,
)
from choo_web.feeds import RunFeeds
from choo_web.jsonio import dumps, json_response, json_text_response
from choo_web.memo import Memo
from choo_web.runview import run_view
from choo_web.sources import HistoryReader, LiveSource
from choo_web.static import STATIC_DIR, StaticResponse, send_static
from choo_web.streams import LiveStream, RunStream
from choo_web.units import unit_outcomes
from protocol.errors import Refusal
from protocol.events import catalogue_dict

log = logging.getLogger("choo.web")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
RUNS_LIMIT, EVENTS_LIMIT = 50, 100
TASKS_LIMIT, TASKS_LAST = 50, 10
SEARCH_LIMIT = 50
EVENT_CATALOGUE = catalogue_dict()
LISTEN_BACKLOG = 4096
KEEP_ALIVE_S = 30


def install_crowd_watch(app: QuartTrio, crowds: Crowds, left: Callable[[], None]) -> None:
    """Run ``crowds.watch`` while the app serves."""
    scope = trio.CancelScope()

    async def watch() -> None:
        with scope:
            await crowds.watch(left)

    @app.before_serving
    async def start_watch() -> None:
        app.nursery.start_soon(watch)

    @app.after_serving
    async def stop_watch() -> None:
        scope.cancel()


def create_app(
    status: Callable[[], dict[str, Any]],
    *,
    reader: HistoryReader,
    live: LiveSource,
    token: Token,
    allowed_hosts: Iterable[str] = (),
    static_dir: Path = STATIC_DIR,
    crowd_left: Callable[[], None] | None = None,
) -> QuartTrio:
    """The app; ``token`` gives the current web token (None: every request is
    refused), ``allowed_hosts`` adds to the local names (any port);
    ``crowd_left`` is called after many streams have closed (``crowds.py``)."""
    app = QuartTrio("choo_web", static_folder=None)
    app.response_class = StaticResponse
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = None  # static files are no-cache (static.py)
    # "//x" must reach the static view (and be refused there), not redirect.
    app.url_map.merge_slashes = False
    hosts = LOCAL_HOSTS | {_host_name(h) for h in allowed_hosts}
    _install_guards(app, hosts)
    install_token_check(app, token)
    # Streams share one feed per watched run and one live board (started in
    # the app's nursery, which exists while the app serves).
    feeds = RunFeeds(live, lambda fn: app.nursery.start_soon(fn))
    board = LiveBoard(reader, live, lambda fn: app.nursery.start_soon(fn))

    memo = Memo()  # finished runs' roll-ups, as sent (memo.py)

    crowds = Crowds()  # open streams, counted
    if crowd_left is not None:
        install_crowd_watch(app, crowds, crowd_left)

    def get(rule: str) -> Callable[[Any], Any]:
        return app.route(rule, methods=["GET"], provide_automatic_options=False)

    @get("/api/health")
    async def health() -> Response:
        if not authorized():  # open to all: that the daemon is up, nothing more
            return json_response({"ok": True})
        live_figures = {
            **live.statistics(),
            **feeds.statistics(),
            **board.statistics(),
            **crowds.statistics(),
        }
        collector = {
            "frozen": gc.get_freeze_count(),
            "collections": [generation["collections"] for generation in gc.get_stats()],
        }
        figures = {
            **status(),
            "live": live_figures,
            "roll_ups": memo.statistics(),
            "gc": collector,
        }
        return json_response({"ok": True, **figures})

    @get("/api/repos")
    async def repos() -> Response:
        return json_response({"repos": await reader.list_repos()})

    @get("/api/history/runs")
    async def runs() -> Response:
        args = request.args
        page = await reader.list_runs(
            repo=params.text(args, "repo"),
            status=params.text(args, "status"),
            limit=params.integer(args.get("limit"), "limit", RUNS_LIMIT, "an integer, 1 to 500"),
            cursor=params.text(args, "cursor"),
            before=params.text(args, "before"),
            oldest=params.integer(args.get("oldest"), "oldest", 0, "1 (the oldest page) or 0") == 1,
        )
        return json_response(page)

    @get("/api/history/runs/<run>")
    async def run_detail(run: str) -> Response:
        return json_response(await reader.run_detail(run))

    @get("/api/history/runs/<run>/events")
    async def events(run: str) -> Response:
        args = request.args
        page = await reader.run_events(
            run,
            type=params.text(args, "type"),
            unit=params.text(args, "unit"),
            after=params.integer(args.get("after"), "after", 0, "a seq, 0 or more"),
            before=params.optional_integer(args.get("before"), "before", "a seq, 1 or more"),
            limit=params.integer(args.get("limit"), "limit", EVENTS_LIMIT, "an integer, 1 to 1000"),
            count=True,
        )
        return json_response(page)

    @get("/api/view/run")
    async def view_run() -> Response:
        args = request.args
        run = params.text(args, "run")
        if run is None:
            raise bad_parameter("run", "", "a run id or the start of one (?run=)")
        view = await run_view(
            reader,
            run,
            type=params.text(args, "type"),
            unit=params.text(args, "unit"),
            limit=params.integer(args.get("limit"), "limit", EVENTS_LIMIT, "an integer, 1 to 1000"),
            catalogue=EVENT_CATALOGUE,
        )
        return json_response(view)

    @get("/api/history/runs/<run>/graph")
    async def graph(run: str) -> Response:
        return json_response(await reader.run_graph(run))

    @get("/api/history/runs/<run>/units")
    async def units(run: str) -> Response:
        async def compute() -> bytes:
            return dumps(await unit_outcomes(reader, run))

        stamp = await reader.settled_stamp(run)
        return json_text_response(await memo.answer(stamp and ("units", stamp), compute))

    @get("/api/history/runs/<run>/tasks")
    async def tasks(run: str) -> Response:
        which = _unit_task(request.args)
        if which["task"] is None:  # the whole run's or a unit's: JSON text as SQLite wrote it
            stamp = await reader.settled_stamp(run)
            body = await memo.answer(
                stamp and ("tasks", stamp, which["unit"]),
                partial(reader.run_tasks_json, run, unit=which["unit"]),
            )
            return json_text_response(body)
        return json_response(await reader.run_tasks(run, **which))

    @get("/api/history/runs/<run>/lanes")
    async def lanes(run: str) -> Response:
        return json_response(await reader.run_lanes(run))

    @get("/api/history/runs/<run>/git")
    async def git(run: str) -> Response:
        return json_response(await reader.run_git(run, **_unit_task(request.args)))

    @get("/api/history/tasks")
    async def task_table() -> Response:
        args = request.args
        repo = params.text(args, "repo")
        if repo is None:
            raise bad_parameter("repo", "", "a repository path (?repo=/path/to/repo)")
        table = await reader.task_table(
            repo,
            limit=params.integer(args.get("limit"), "limit", TASKS_LIMIT, "an integer, 1 to 1000"),
            last=params.integer(args.get("last"), "last", TASKS_LAST, "an integer, 1 to 100"),
        )
        return json_response(table)

    @get("/api/history/compare")
    async def compare() -> Response:
        args = request.args
        return json_response(
            await compare_runs(reader, params.text(args, "a"), params.text(args, "b"))
        )

    @get("/api/history/search")
    async def search() -> Response:
        args = request.args
        q = params.text(args, "q")
        if q is None:
            raise bad_parameter(
                "q", "", 'words to search for, e.g. ?q=KeyError or ?q="exact phrase"'
            )
        page = await reader.search_events(
            q,
            repo=params.text(args, "repo"),
            run=params.text(args, "run"),
            limit=params.integer(args.get("limit"), "limit", SEARCH_LIMIT, "an integer, 1 to 200"),
            cursor=params.text(args, "cursor"),
        )
        return json_response(page)

    @get("/api/event-types")
    async def event_types() -> Response:
        return json_response(EVENT_CATALOGUE)

    @get("/api/history/runs/<run>/stream")
    async def run_stream(run: str) -> Response:
        header = request.headers.get("Last-Event-ID")
        name, raw = (
            ("after", request.args.get("after"))
            if header is None
            else ("Last-Event-ID", header.strip())
        )
        after = params.integer(raw, name, 0, "a seq, 0 or more")
        if after < 0:
            raise bad_parameter(name, str(raw), "a seq, 0 or more")
        run_id = await reader.resolve_run_id(run)
        stream = crowds.counted(RunStream(reader, feeds, run_id, after))
        return _event_stream(until_revoked(stream, token))

    @get("/api/live")
    async def live_stream() -> Response:
        stream = crowds.counted(LiveStream(board, params.text(request.args, "repo")))
        return _event_stream(until_revoked(stream, token))

    @get("/")
    async def index() -> Response:
        return await send_static(static_dir, "index.html")

    @get("/static/<path:path>")
    async def static(path: str) -> Response:
        return await send_static(static_dir, path)

    return app


def _unit_task(args: Any) -> dict[str, Any]:
    """``?unit=&task=``, which narrow a run's tasks or git record to one unit or task."""
    task = params.text(args, "task")
    return {
        "unit": params.text(args, "unit"),
        "task": None if task is None else params.integer(task, "task", 0, "a task number"),
    }


def _install_guards(app: Any, hosts: frozenset[str]) -> None:
    @app.before_request  # type: ignore[untyped-decorator]
    async def check_host() -> None:
        # DNS rebinding: a page of evil.example whose name now points at
        # 127.0.0.1 still sends "Host: evil.example".
        header = request.headers.get("Host", "")
        name = _host_name(header)
        if name not in hosts and not name.endswith(".localhost"):
            raise Forbidden(
                "forbidden_host",
                f"requests for host {header!r} are refused; open the UI at "
                "http://127.0.0.1:<port>/ or http://localhost:<port>/",
            )

    @app.after_request  # type: ignore[untyped-decorator]
    async def add_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.errorhandler(ApiError)  # type: ignore[untyped-decorator]
    async def api_error(exc: ApiError) -> Response:
        response = json_response(exc.body(), exc.status)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="choo"'
        return response

    @app.errorhandler(Refusal)  # type: ignore[untyped-decorator]
    async def refused(exc: Refusal) -> Response:
        error = from_refusal(exc)
        return json_response(error.body(), error.status)

    @app.errorhandler(HTTPException)  # type: ignore[untyped-decorator]
    async def http_error(exc: HTTPException) -> Response:
        error: ApiError
        if exc.code == 405:
            error = MethodNotAllowed(
                "method_not_allowed",
                f"{request.method} {request.path} is not allowed: the API is read-only (GET)",
            )
        elif exc.code == 404:
            error = NotFound(
                "not_found",
                f"no route {request.path}; the API lives under /api/ (see /api/health)",
            )
        else:
            error = ApiError("http_error", f"{exc.code} {exc.name}: {exc.description}")
            error.status = exc.code or 500
        response = json_response(error.body(), error.status)
        if exc.code == 405:
            response.headers["Allow"] = "GET, HEAD"
        return response

    @app.errorhandler(Exception)  # type: ignore[untyped-decorator]
    async def crash(exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.path, exc_info=exc)
        error = ApiError("internal_error", f"{type(exc).__name__}: {exc}; see the daemon log")
        return json_response(error.body(), 500)


def _host_name(host: str) -> str:
    """The Host header's name, lower case, without the port ("[::1]" keeps brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    if host.count(":") > 1:  # a bare IPv6 address, as given to --host
        return f"[{host}]"
    return host.partition(":")[0].rstrip(".")


def _event_stream(stream: AsyncIterable[bytes]) -> Response:
    """An SSE response; HEAD gets the headers only."""
    response = Response(stream if request.method != "HEAD" else b"", mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.timeout = None  # streams run until the client leaves
    return response


async def serve_web(
    app: QuartTrio,
    host: str,
    port: int,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns; started() with the URL."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = 2.0
    config.include_server_header = False
    # hypercorn's default listen backlog (100) overflows when hundreds of
    # browsers connect at once: the kernel drops SYNs, and a client waits 1,
    # 3, 7 s for its retries. The kernel caps it at net.core.somaxconn.
    config.backlog = LISTEN_BACKLOG
    # A new connection that has not sent its request within keep_alive_timeout
    # is closed (hypercorn's idle timer). On a loaded machine a browser's
    # request can take longer than the default 5 s to be read, and the timer
    # has been seen closing such event streams; keep-alive costs a socket.
    config.keep_alive_timeout = KEEP_ALIVE_S

    class _Status:
        def started(self, binds: list[str] | None = None) -> None:
            url = binds[0] if binds else f"http://{host}:{port}"
            task_status.started(url)

    await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=_Status())
