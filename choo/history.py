"""The history from the terminal: what ``choo history`` calls.

Reads go through the daemon's HTTP API (``HistoryAPI``), as the browser's
do, so the daemon stays the only owner of the database; imports and prunes
go through its socket (``DaemonClient``). These functions return plain data;
``choo.history_cli`` formats it.

    HistoryUnavailable    no daemon answers (choo.api)
    HistoryError          the API refused a request: unknown run... (choo.api)

Exports and imports are in ``choo.export``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import trio

from choo.api import HistoryAPI, HistoryError, HistoryUnavailable, api_error
from choo.client import DaemonClient, DaemonError, DaemonUnavailable, open_daemon_client
from protocol.home import Home
from protocol.messages import RUN_ID

API_RUNS_PAGE, API_EVENTS_PAGE = 500, 1000
API_SEARCH_PAGE = 200  # the API's largest search page
FOLLOW_READ_TIMEOUT = 60.0  # the daemon sends a heartbeat every 15 s
FOLLOW_RETRIES = 5


def check_run_id(run_id: str) -> str:
    """``run_id`` if it can be a run ID or the start of one, else HistoryError."""
    if RUN_ID.fullmatch(run_id) is None:
        raise HistoryError(
            400,
            "bad_run_id",
            f"{run_id!r} is not a run ID: run IDs are letters, digits, '_', '.' and '-' "
            "(like run_20260120_143052_a1b2); see `choo history list`",
        )
    return run_id


def _run_path(run_id: str, tail: str = "") -> str:
    return f"/api/history/runs/{quote(check_run_id(run_id), safe='')}{tail}"


# -- list ------------------------------------------------------------------------


@dataclass
class RunList:
    runs: list[dict[str, Any]]
    total: int
    repo: str | None  # None: every repository
    status: str | None
    limit: int

    @property
    def more(self) -> int:
        """How many matching runs are not shown."""
        return max(0, self.total - len(self.runs))

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "status": self.status, "total": self.total, "runs": self.runs}


def list_runs(api: HistoryAPI, *, repo: str | None, status: str | None, limit: int) -> RunList:
    """The newest ``limit`` runs (of ``repo``, with ``status``), paging the API as needed."""
    runs: list[dict[str, Any]] = []
    cursor: str | None = None
    total = 0
    while len(runs) < limit:
        page = api.list_runs(
            repo=repo, status=status, limit=min(API_RUNS_PAGE, limit - len(runs)), cursor=cursor
        )
        runs += page["runs"]
        total = page["total"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return RunList(runs, total, repo, status, limit)


# -- show ------------------------------------------------------------------------


def get_run(api: HistoryAPI, run_id: str) -> dict[str, Any]:
    """One run (a unique prefix of its ID will do), with its stop/resume markers."""
    return api.get_run(check_run_id(run_id))


def get_graph(api: HistoryAPI, run_id: str) -> dict[str, Any] | None:
    """The run's dependency graph, or None if it never got as far as planning."""
    try:
        graph: dict[str, Any] = api.get(_run_path(run_id, "/graph"))
    except HistoryError as exc:
        if exc.code == "no_graph":
            return None
        raise
    return graph


def run_report(api: HistoryAPI, run_id: str) -> dict[str, Any]:
    """The run, the outcome of each of its units, and what it did in git:
    ``{"run": ..., "units": [...], "git": RunGit}``.

    The daemon folds the units' outcomes from their events (``protocol.events.
    fold_units``), for the web UI and for this alike, and adds each unit's
    roll-up (attempts, tokens, cost, tool calls); the run carries its totals.
    ``git`` (``GET /api/history/runs/{run}/git``): the run branch and how it
    landed, each task's commits, the worktrees kept; empty when the run was
    not isolated.
    """
    run = get_run(api, run_id)
    units = api.get(_run_path(run["id"], "/units"))["units"]
    git = api.get(_run_path(run["id"], "/git"))
    return {"run": run, "units": units, "git": git}


# -- diff ------------------------------------------------------------------------


def compare_runs(api: HistoryAPI, run_a: str, run_b: str) -> dict[str, Any]:
    """Two runs side by side, as the daemon sets them (``GET /api/history/compare``):
    per unit and task, outcomes, durations, attempts, tokens and cost, deltas ``b - a``."""
    result: dict[str, Any] = api.get(
        "/api/history/compare", a=check_run_id(run_a), b=check_run_id(run_b)
    )
    return result


# -- tasks -----------------------------------------------------------------------


def task_table(api: HistoryAPI, *, repo: str, limit: int, last: int = 10) -> dict[str, Any]:
    """One repository's tasks across its runs, flaky first (``GET /api/history/tasks``)."""
    return api.task_table(repo=repo, limit=limit, last=last)


# -- search ----------------------------------------------------------------------


def search(
    api: HistoryAPI, q: str, *, repo: str | None, run: str | None, limit: int
) -> dict[str, Any]:
    """The events whose text matches ``q`` (``GET /api/history/search``), up to
    ``limit``, paging the API as needed: across runs newest first, or within
    ``run`` in seq order. ``more`` says whether matches were left out."""
    matches: list[dict[str, Any]] = []
    cursor: str | None = None
    page: dict[str, Any] = {}
    while len(matches) < limit:
        page = api.get(
            "/api/history/search",
            q=q,
            repo=repo,
            run=None if run is None else check_run_id(run),
            limit=min(API_SEARCH_PAGE, limit - len(matches)),
            cursor=cursor,
        )
        matches += page["matches"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return {
        "query": q,
        "repo": repo,
        "run": page.get("run_id"),
        "terms": page["terms"],
        "matches": matches,
        "more": cursor is not None,
        "total": page.get("total"),
        "unindexed": page["unindexed"],
    }


# -- events ----------------------------------------------------------------------


def iter_events(
    api: HistoryAPI,
    run_id: str,
    *,
    type: str | None = None,
    unit: str | None = None,
    up_to: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Every matching event of a run in seq order (up to seq ``up_to``), a page at a time."""
    after = 0
    while True:
        page = api.get(
            _run_path(run_id, "/events"), type=type, unit=unit, after=after, limit=API_EVENTS_PAGE
        )
        for event in page["events"]:
            if up_to is not None and event["seq"] > up_to:
                return
            yield event
        if page["next_after"] is None:
            return
        after = page["next_after"]


def matches(event: dict[str, Any], type: str | None, unit: str | None) -> bool:
    """The events API's filter: ``type`` exact, or a prefix when it ends with "."."""
    if unit is not None and event.get("unit") != unit:
        return False
    if type is None:
        return True
    kind = str(event.get("type"))
    return kind.startswith(type) if type.endswith(".") else kind == type


@dataclass
class Follow:
    """``follow_events``' outcome: the run as it ended (None while it has not)."""

    run: dict[str, Any] | None = None
    events: int = 0


def follow_events(
    api: HistoryAPI,
    run_id: str,
    follow: Follow,
    *,
    type: str | None = None,
    unit: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The run's matching events, stored ones first, then live ones until the run ends.

    Reads the run's SSE stream; if it breaks (the daemon restarting), picks
    up again after the last event seen. ``follow.run`` is set at the end.
    """
    last = 0
    failures = 0
    url = api.base_url + _run_path(run_id, "/stream")
    timeout = httpx.Timeout(10.0, read=FOLLOW_READ_TIMEOUT)
    while True:
        seen = last
        problem: Exception | str = "the stream ended before the run did"
        try:
            with httpx.stream(
                "GET", url, params={"after": last}, headers=api.headers, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise api_error(response)
                for name, data in _sse_messages(response.iter_lines()):
                    if name == "end":
                        follow.run = orjson.loads(data)
                        return
                    if name != "event":
                        continue
                    event = orjson.loads(data)
                    last = max(last, event["seq"])
                    if matches(event, type, unit):
                        follow.events += 1
                        yield event
        except httpx.HTTPError as exc:
            problem = exc
        # Broken off (the daemon restarting?): go on after the last event seen.
        failures = 0 if last > seen else failures + 1
        if failures > FOLLOW_RETRIES:
            raise HistoryUnavailable(
                f"lost the daemon's web API at {api.base_url} while following run "
                f"{run_id} ({problem}); check it with `choo daemon status`, then run "
                f"`choo history events {run_id} --follow` again"
            )
        time.sleep(min(0.1 * 2**failures, 2.0))


def _sse_messages(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) of each server-sent event in ``lines``."""
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue  # a comment: the heartbeat
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)


# -- prune -----------------------------------------------------------------------


def prune(home: Home, *, older_than_days: int, dry_run: bool) -> dict[str, Any]:
    """Ask the daemon to delete (or list) the finished runs started over N days ago.

    Returns ``{"runs": [{id, repo_path, started_at, status, event_count}],
    "count", "dry_run", "older_than_days"}``.
    """
    if older_than_days < 1:
        raise HistoryError(
            400, "bad_parameter", f"--older-than must be at least 1 day, got {older_than_days}"
        )

    async def ask() -> dict[str, Any]:
        async with open_daemon(home, "choo-prune") as client:
            return await client.prune(older_than_days, dry_run=dry_run)

    result = trio.run(ask)
    return {**result, "older_than_days": older_than_days}


@asynccontextmanager
async def open_daemon(home: Home, name: str) -> AsyncIterator[DaemonClient]:
    """``open_daemon_client``, with errors a ``choo history`` user can act on."""
    if not home.socket.exists():
        raise _no_daemon(home)
    try:
        async with open_daemon_client(home, name=name, connect_timeout=2.0) as client:
            yield client
    except DaemonUnavailable:
        raise _no_daemon(home) from None
    except DaemonError as exc:
        raise HistoryError(409, exc.code, f"the daemon refused: {exc.message}") from None


def _no_daemon(home: Home) -> HistoryUnavailable:
    return HistoryUnavailable(
        f"no daemon is running for {home.root}; start it with `choo daemon start`"
    )
