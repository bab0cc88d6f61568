"""Exporting a run to a file and importing it again: ``choo history export/import``.

An export is read through the daemon's HTTP API, like the rest of
``choo.history``; an import is sent through its socket, as an orchestrator
would have sent the run.

    ExportFileError       a file that is not a choo export; names file and line
    RunConflict           an import whose run ID exists with other content

The export format (NDJSON, one JSON object a line, UTF-8):

    {"kind": "run", "format": 1, "id": ..., "repo_path": ..., "status": ..., ...}
    {"kind": "graph", "nodes": [...], "edges": [...], "levels": [...]}   (if stored)
    {"kind": "event", "seq": 1, "time": ..., "type": ..., "unit": ..., ...}
    ...one "event" line per event, in seq order
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson
import trio

from choo.api import HistoryAPI, HistoryError
from choo.client import DaemonError
from choo.errors import ChooError
from choo.history import get_graph, get_run, iter_events, open_daemon
from choo.term import plural, size
from protocol.frames import MAX_FRAME
from protocol.home import Home
from protocol.messages import RUN_END_FIELDS, RUN_ID, RUN_STATUSES

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
IMPORT_WINDOW = 2000  # events in flight during an import: bounds the client's journal
# The longest line an import reads: an event is at most one frame (msgpack),
# and its JSON a little longer. A longer line is refused, not read whole.
MAX_LINE: Final = 4 * MAX_FRAME


class ExportFileError(ChooError):
    """A file that is not a choo export; the message names the file and line."""


class RunConflict(ChooError):
    """The run ID of an import is in the history already, with other content."""


# -- export ----------------------------------------------------------------------


def recorded_run(api: HistoryAPI, run_id: str) -> dict[str, Any]:
    """The run (RunDetail), or HistoryError ``not_recorded`` for a run that the
    history does not keep: an export, to a file or to OTLP, is history too."""
    run = get_run(api, run_id)
    if run.get("history") is False:
        raise HistoryError(
            409,
            "not_recorded",
            f"run {run['id']} is not recorded (it was started with --no-history, or with "
            "history.enabled: false), so it cannot be exported; the daemon only shows it "
            "live while it runs",
        )
    return run


def export_records(api: HistoryAPI, run_id: str) -> Iterator[dict[str, Any]]:
    """The run, its graph and its events as export records (see the module docstring).

    A running run is exported as it is now: the events up to its last seq
    when the export began, so that the run line and the events agree.
    """
    run = recorded_run(api, run_id)
    yield {"kind": "run", "format": EXPORT_FORMAT, **{k: run[k] for k in RUN_FIELDS}}
    graph = get_graph(api, run["id"])
    if graph is not None:
        yield {"kind": "graph", **{k: graph[k] for k in ("nodes", "edges", "levels")}}
    for event in iter_events(api, run["id"], up_to=run["last_seq"]):
        yield {"kind": "event", **{k: event.get(k) for k in EVENT_FIELDS}}


def record_line(record: dict[str, Any]) -> str:
    return orjson.dumps(record).decode() + "\n"


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
    """Each record of the file with its line number, read a line at a time: a
    line over MAX_LINE bytes is an error, never held whole."""
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(iter(lambda: f.readline(MAX_LINE + 1), b""), 1):
                if len(line) > MAX_LINE:
                    raise ExportFileError(
                        f"{path}, line {number}: longer than {size(MAX_LINE)}, so not a line "
                        "of a `choo history export`; nothing was imported"
                    )
                if number > 1 and not line.strip():
                    continue
                yield number, _record(path, number, line)
    except OSError as exc:
        raise ExportFileError(f"cannot read {path}: {exc}") from None


def _record(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExportFileError(
            f"{path}, line {number}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "an export is the NDJSON a `choo history export` writes"
        ) from None
    try:
        record = orjson.loads(line)
    except ValueError as exc:
        raise ExportFileError(f"{path}, line {number}: not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ExportFileError(f"{path}, line {number}: not a JSON object")
    return record


def _quote(value: Any) -> str:
    return orjson.dumps(value).decode()


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
                f'{path}, line {number}: "{key}" must be {names}, found {_quote(value)[:60]}'
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
                f"{path}, line {number}: unexpected {_quote(kind)} line (an export has "
                'one "run" line, then at most one "graph" line, then "event" lines)'
            )
    if run is None:
        raise ExportFileError(f"{path} is empty; export a run with `choo history export RUN_ID`")
    if (count, last) != (run["event_count"], run["last_seq"]):
        raise ExportFileError(
            f"{path} holds {plural(count, 'event')} up to seq {last}, but its run line says "
            f"{run['event_count']} up to seq {run['last_seq']}: the file is incomplete"
        )
    return Export(path, run, graph)


def _check_run_line(path: Path, number: int, record: dict[str, Any]) -> dict[str, Any]:
    if record.get("kind") != "run":
        raise ExportFileError(
            f'{path}, line {number}: not a choo export: the first line must be the "run" '
            "line of a `choo history export`"
        )
    if record.get("format") != EXPORT_FORMAT:
        raise ExportFileError(
            f"{path}, line {number}: export format {record.get('format')!r} is not "
            f"{EXPORT_FORMAT}, the one this choo reads"
        )
    _check_fields(path, number, record, _RUN_TYPES)
    check = [
        (RUN_ID.fullmatch(record["id"]) is not None, "id", "a run ID"),
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
    async with open_daemon(home, "choo-import") as client:
        try:
            await client.start_run(
                run_id,
                repo_path=run["repo_path"],
                started_at=run["started_at"],
                parallelism=run["parallelism"],
                total_units=run["total_units"],
                tasks_dir=run["tasks_dir"],
                dry_run=run["dry_run"],
            )
        except DaemonError as exc:
            if exc.code != "run_exists":
                raise
            raise RunConflict(
                f"run {run_id} appeared in the history meanwhile; nothing imported"
            ) from None
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
        await client.complete_run(run_id, **{name: run[name] for name in RUN_END_FIELDS})
