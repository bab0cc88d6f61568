"""The history from the terminal: what ``choo history`` calls.

Reads go through the daemon's HTTP API (``HistoryAPI``), as the browser's
do, so the daemon stays the only owner of the database; imports and prunes
go through its socket (``DaemonClient``). These functions return plain data;
``choo.history_cli`` formats it.

    HistoryUnavailable    no daemon answers (choo.api)
    HistoryError          the API refused a request: unknown run... (choo.api)
    ExportFileError       a file that is not a choo export; names file and line
    RunConflict           an import whose run ID exists with other content

The export format (NDJSON, one JSON object a line, UTF-8):

    {"kind": "run", "format": 1, "id": ..., "repo_path": ..., "status": ..., ...}
    {"kind": "graph", "nodes": [...], "edges": [...], "levels": [...]}   (if stored)
    {"kind": "event", "seq": 1, "time": ..., "type": ..., "unit": ..., ...}
    ...one "event" line per event, in seq order
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import quote

import httpx
import trio

from choo.api import HistoryAPI, HistoryError, HistoryUnavailable
from choo.client import DaemonClient, DaemonError, DaemonUnavailable, open_daemon_client
from protocol.home import Home

EXPORT_FORMAT: Final = 1
RUN_FIELDS: Final = (
    "id",
    "repo_path",
    "status",
    "started_at",
    "completed_at",
    "parallelism",
    "total_units",
    "completed_units",
    "failed_units",
    "blocked_units",
    "resume_count",
    "dry_run",
    "tasks_dir",
    "error",
    "event_count",
    "last_seq",
)
EVENT_FIELDS: Final = ("seq", "time", "type", "unit", "task", "pr", "payload", "error")
RUN_STATUSES: Final = ("running", "completed", "failed", "stopped")
API_RUNS_PAGE, API_EVENTS_PAGE = 500, 1000
IMPORT_WINDOW = 2000  # events in flight during an import: bounds the client's journal
FOLLOW_READ_TIMEOUT = 60.0  # the daemon sends a heartbeat every 15 s
FOLLOW_RETRIES = 5
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class ExportFileError(Exception):
    """A file that is not a choo export; the message names the file and line."""


class RunConflict(Exception):
    """The run ID of an import is in the history already, with other content."""


def check_run_id(run_id: str) -> str:
    """``run_id`` if it can be a run ID or the start of one, else HistoryError."""
    if _RUN_ID.fullmatch(run_id) is None:
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

_UNIT_STATUS = {
    "unit.queued": "queued",
    "unit.started": "running",
    "unit.completed": "completed",
    "unit.failed": "failed",
    "unit.blocked": "blocked",
}


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
    """The run and the outcome of each of its units: ``{"run": ..., "units": [...]}``."""
    run = get_run(api, run_id)
    graph = get_graph(api, run["id"])
    events = [
        *iter_events(api, run["id"], type="unit."),
        *iter_events(api, run["id"], type="task.completed"),
    ]
    events.sort(key=lambda e: e["seq"])
    nodes = graph["nodes"] if graph else []
    return {"run": run, "units": unit_outcomes(nodes, events, run["status"])}


def unit_outcomes(
    nodes: list[dict[str, Any]], events: Iterable[dict[str, Any]], run_status: str
) -> list[dict[str, Any]]:
    """Each unit's last state, task progress, attempts and times, from its events
    in seq order (as the web UI derives them)."""
    units: dict[str, dict[str, Any]] = {}

    def unit(unit_id: str, node: dict[str, Any] | None = None) -> dict[str, Any]:
        if unit_id not in units:
            node = node or {}
            units[unit_id] = {
                "unit": unit_id,
                "status": "pending",
                "tasks": int(node.get("tasks") or 0),
                "done": int(node.get("done") or 0),
                "starts": 0,
                "started_at": None,
                "finished_at": None,
                "duration_ms": None,
                "blocked_by": None,
                "reason": None,
            }
        return units[unit_id]

    for node in nodes:
        unit(str(node["id"]), node)
    for event in events:
        if event.get("unit"):
            _apply_unit_event(unit(event["unit"]), event)
    for u in units.values():
        if run_status != "running" and u["status"] in ("running", "queued"):
            u["status"] = "stopped"  # the run is over: it was interrupted
        if u["status"] == "completed":
            u["done"] = max(u["done"], u["tasks"])
    return list(units.values())


def _apply_unit_event(u: dict[str, Any], event: dict[str, Any]) -> None:
    kind = event["type"]
    payload = event["payload"] if isinstance(event.get("payload"), dict) else {}
    if kind == "task.completed":
        u["done"] = min(u["done"] + 1, u["tasks"]) if u["tasks"] else u["done"] + 1
        return
    if kind not in _UNIT_STATUS:
        return
    u["status"] = _UNIT_STATUS[kind]
    if kind == "unit.started":
        u["starts"] += 1
        u["started_at"] = event["time"]
        u["finished_at"] = u["duration_ms"] = u["reason"] = None
        if isinstance(payload.get("tasks"), int):
            u["tasks"] = payload["tasks"]
            if isinstance(payload.get("pending"), int):
                u["done"] = max(0, payload["tasks"] - payload["pending"])
    elif kind in ("unit.completed", "unit.failed", "unit.blocked"):
        u["finished_at"] = event["time"]
        u["duration_ms"] = payload.get("duration_ms")
        u["reason"] = payload.get("reason") or event.get("error")
        if kind == "unit.blocked":
            u["blocked_by"] = payload.get("blocked_by")


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
            with httpx.stream("GET", url, params={"after": last}, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response)
                for name, data in _sse_messages(response.iter_lines()):
                    if name == "end":
                        follow.run = json.loads(data)
                        return
                    if name != "event":
                        continue
                    event = json.loads(data)
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


def _api_error(response: httpx.Response) -> HistoryError:
    try:
        error = response.json()["error"]
        return HistoryError(response.status_code, error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        return HistoryError(response.status_code, "http_error", response.text[:200])


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


# -- export ----------------------------------------------------------------------


def export_records(api: HistoryAPI, run_id: str) -> Iterator[dict[str, Any]]:
    """The run, its graph and its events as export records (see the module docstring).

    A running run is exported as it is now: the events up to its last seq
    when the export began, so that the run line and the events agree.
    """
    run = get_run(api, run_id)
    yield {"kind": "run", "format": EXPORT_FORMAT, **{k: run[k] for k in RUN_FIELDS}}
    graph = get_graph(api, run["id"])
    if graph is not None:
        yield {"kind": "graph", **{k: graph[k] for k in ("nodes", "edges", "levels")}}
    for event in iter_events(api, run["id"], up_to=run["last_seq"]):
        yield {"kind": "event", **{k: event.get(k) for k in EVENT_FIELDS}}


def record_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


@dataclass
class ExportSummary:
    run: dict[str, Any] = field(default_factory=dict)
    events: int = 0
    graph: bool = False


def write_export(api: HistoryAPI, run_id: str, out: IO[str]) -> ExportSummary:
    summary = ExportSummary()
    for record in export_records(api, run_id):
        out.write(record_line(record))
        if record["kind"] == "run":
            summary.run = record
        elif record["kind"] == "graph":
            summary.graph = True
        else:
            summary.events += 1
    return summary


# -- import ----------------------------------------------------------------------

_RUN_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "id": (str,),
    "repo_path": (str,),
    "status": (str,),
    "started_at": (str,),
    "completed_at": (str, type(None)),
    "parallelism": (int,),
    "total_units": (int,),
    "completed_units": (int,),
    "failed_units": (int,),
    "blocked_units": (int,),
    "resume_count": (int,),
    "dry_run": (bool,),
    "tasks_dir": (str, type(None)),
    "error": (str, type(None)),
    "event_count": (int,),
    "last_seq": (int,),
}
_EVENT_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "seq": (int,),
    "time": (str,),
    "type": (str,),
    "unit": (str, type(None)),
    "task": (int, type(None)),
    "pr": (int, type(None)),
    "payload": (dict, type(None)),
    "error": (str, type(None)),
}


@dataclass
class Export:
    """A checked export file: its run line and graph (events stay in the file)."""

    path: Path
    run: dict[str, Any]
    graph: dict[str, Any] | None

    def events(self) -> Iterator[dict[str, Any]]:
        for _, record in _records(self.path):
            if record["kind"] == "event":
                yield record


@dataclass
class ImportResult:
    run: dict[str, Any]  # as the history now shows it
    events: int
    already: bool  # the history held this very run already; nothing was sent

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "events": self.events, "already_imported": self.already}


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise ExportFileError(f"{path}, line {number}: not JSON ({exc})") from None
                if not isinstance(record, dict):
                    raise ExportFileError(f"{path}, line {number}: not a JSON object")
                yield number, record
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportFileError(f"cannot read {path}: {exc}") from None


def _check_fields(
    path: Path, number: int, record: dict[str, Any], types: dict[str, tuple[type, ...]]
) -> None:
    for key, allowed in types.items():
        value = record.get(key, ...)
        if value is ...:
            raise ExportFileError(f'{path}, line {number}: "{key}" is missing')
        ok = isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool))
        if not ok:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise ExportFileError(
                f'{path}, line {number}: "{key}" must be {names}, found {json.dumps(value)[:60]}'
            )


def read_export(path: Path) -> Export:
    """Check every line of an export file before anything is imported.

    Raises ExportFileError naming the file and line of the first problem,
    and when the events do not add up to what the run line says.
    """
    run: dict[str, Any] | None = None
    graph: dict[str, Any] | None = None
    count, last = 0, 0
    for number, record in _records(path):
        kind = record.get("kind")
        if run is None:
            run = _check_run_line(path, number, record)
        elif kind == "graph" and graph is None and count == 0:
            for key in ("nodes", "edges", "levels"):
                if not isinstance(record.get(key), list):
                    raise ExportFileError(f'{path}, line {number}: "{key}" must be a list')
            graph = {k: record[k] for k in ("nodes", "edges", "levels")}
        elif kind == "event":
            _check_fields(path, number, record, _EVENT_TYPES)
            if record["seq"] <= last:
                raise ExportFileError(
                    f"{path}, line {number}: event seq {record['seq']} does not follow {last}"
                )
            count, last = count + 1, record["seq"]
        else:
            raise ExportFileError(
                f"{path}, line {number}: unexpected {json.dumps(kind)} line (an export has "
                'one "run" line, then at most one "graph" line, then "event" lines)'
            )
    if run is None:
        raise ExportFileError(f"{path} is empty; export a run with `choo history export RUN_ID`")
    if (count, last) != (run["event_count"], run["last_seq"]):
        raise ExportFileError(
            f"{path} holds {count} events up to seq {last}, but its run line says "
            f"{run['event_count']} up to seq {run['last_seq']}: the file is incomplete"
        )
    return Export(path, run, graph)


def _check_run_line(path: Path, number: int, record: dict[str, Any]) -> dict[str, Any]:
    if record.get("kind") != "run":
        raise ExportFileError(
            f'{path}, line {number}: the first line must be the "run" line of a '
            "`choo history export`"
        )
    if record.get("format") != EXPORT_FORMAT:
        raise ExportFileError(
            f"{path}, line {number}: export format {record.get('format')!r} is not "
            f"{EXPORT_FORMAT}, the one this choo reads"
        )
    _check_fields(path, number, record, _RUN_TYPES)
    check = [
        (_RUN_ID.fullmatch(record["id"]) is not None, "id", "a run ID"),
        (record["status"] in RUN_STATUSES, "status", "one of " + ", ".join(RUN_STATUSES)),
        (
            record["status"] == "running" or record["completed_at"] is not None,
            "completed_at",
            "a time for a finished run",
        ),
    ]
    for ok, key, expected in check:
        if not ok:
            raise ExportFileError(
                f'{path}, line {number}: "{key}" must be {expected}, found {record[key]!r}'
            )
    return {k: record[k] for k in RUN_FIELDS}


def import_export(home: Home, path: Path) -> ImportResult:
    """Load an export file into the history through the daemon.

    A run ID the history holds already is compared with the file: the same
    run fields, graph and events make it "already imported" (nothing sent);
    anything else is a RunConflict, and nothing changes.
    """
    export = read_export(path)
    run_id = export.run["id"]
    with HistoryAPI.connect(home) as api:
        existing = _existing_run(api, run_id)
        if existing is not None:
            problems = differences(api, existing, export)
            if problems:
                raise RunConflict(
                    f"run {run_id} is already in the history with different content "
                    f"({'; '.join(problems)}); nothing was imported. See it with "
                    f"`choo history show {run_id}`, or import into another CHOO_HOME"
                )
            return ImportResult(existing, export.run["event_count"], already=True)
        trio.run(_send, home, export)
        imported = api.get_run(run_id)
    wrong = [k for k in RUN_FIELDS if imported[k] != export.run[k]]
    if wrong:
        raise RunConflict(
            f"run {run_id} was imported from {path}, but the history shows other values for "
            f"{', '.join(wrong)}; see `choo history show {run_id}`"
        )
    return ImportResult(imported, export.run["event_count"], already=False)


def _existing_run(api: HistoryAPI, run_id: str) -> dict[str, Any] | None:
    try:
        run = api.get_run(run_id)
    except HistoryError as exc:
        if exc.code in ("unknown_run", "ambiguous_run"):
            return None
        raise
    # The API takes prefixes: a longer ID that starts with ours is another run.
    return run if run["id"] == run_id else None


def differences(api: HistoryAPI, existing: dict[str, Any], export: Export) -> list[str]:
    """What differs between a stored run and an export of the same ID ([] if nothing)."""
    problems = [
        f"{k} is {existing[k]!r} in the history, {export.run[k]!r} in the file"
        for k in RUN_FIELDS
        if existing[k] != export.run[k]
    ]
    if problems:
        return problems
    if get_graph(api, existing["id"]) != export.graph:
        return ["the dependency graphs differ"]
    stored = iter_events(api, existing["id"])
    for event in export.events():
        have = next(stored, None)
        mine = {k: event[k] for k in EVENT_FIELDS}
        if have is None or {k: have.get(k) for k in EVENT_FIELDS} != mine:
            return [f"event {event['seq']} differs"]
    return []


async def _send(home: Home, export: Export) -> None:
    run = export.run
    run_id = run["id"]
    async with _daemon(home, "choo-import") as client:
        reply = await client.start_run(
            run_id,
            repo_path=run["repo_path"],
            started_at=run["started_at"],
            parallelism=run["parallelism"],
            total_units=run["total_units"],
            tasks_dir=run["tasks_dir"],
            dry_run=run["dry_run"],
        )
        if not reply.get("created", True):
            raise RunConflict(f"run {run_id} appeared in the history meanwhile; nothing imported")
        if export.graph is not None:
            g = export.graph
            await client.graph(run_id, g["nodes"], g["edges"], g["levels"])
        window: list[int] = []
        for n, event in enumerate(export.events(), 1):
            client.send_event(
                run_id,
                event["seq"],
                event["type"],
                time=event["time"],
                unit=event["unit"],
                task=event["task"],
                pr=event["pr"],
                payload=event["payload"],
                error=event["error"],
            )
            if n % IMPORT_WINDOW == 0:
                # At most two windows in flight: the journal stays small.
                window.append(event["seq"])
                if len(window) > 1:
                    await client.wait_acked(run_id, window.pop(0))
        if run["status"] == "running":
            await client.wait_acked(run_id)
            return
        await client.complete_run(
            run_id,
            status=run["status"],
            completed_at=run["completed_at"],
            completed_units=run["completed_units"],
            failed_units=run["failed_units"],
            blocked_units=run["blocked_units"],
            error=run["error"],
        )


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
        async with _daemon(home, "choo-prune") as client:
            return await client.prune(older_than_days, dry_run=dry_run)

    result = trio.run(ask)
    return {**result, "older_than_days": older_than_days}


@asynccontextmanager
async def _daemon(home: Home, name: str) -> AsyncIterator[DaemonClient]:
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
