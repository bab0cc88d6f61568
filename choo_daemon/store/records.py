"""The shapes the history reads return: plain dicts, typed.

The web API serialises them as they are, so a field here is a field of the
JSON API.
"""

from __future__ import annotations

from typing import Any, TypedDict


class RunSummary(TypedDict):
    id: str
    repo_path: str
    status: str
    started_at: str
    completed_at: str | None
    duration_ms: int | None
    parallelism: int
    total_units: int
    completed_units: int
    failed_units: int
    blocked_units: int
    resume_count: int
    dry_run: bool
    tasks_dir: str | None
    error: str | None
    event_count: int
    last_seq: int
    cost_usd: float
    cost_estimated: bool


class Totals(TypedDict):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    cost_estimated: bool
    agent_ms: int
    attempts: int
    tool_calls: int


class Marker(TypedDict):
    seq: int
    time: str
    type: str
    reason: str | None


class RunDetail(RunSummary):
    markers: list[Marker]
    has_graph: bool
    totals: Totals


class RunPage(TypedDict):
    runs: list[RunSummary]
    next_cursor: str | None
    prev_cursor: str | None
    total: int
    newer: int


# An event as the API serves it (docs/API.md, "Event"): the one place that
# builds it from a row, and so names its fields, is choo_web.eventdict.
Event = dict[str, Any]


class EventPage(TypedDict):
    events: list[Event]
    next_after: int | None
    prev_before: int | None
    total: int | None
    total_exact: bool | None


class Graph(TypedDict):
    nodes: Any
    edges: Any
    levels: Any


class Repo(TypedDict):
    repo_path: str
    run_count: int
    last_started_at: str


# The roll-ups of tasks and attempts (rollups.py): their fields are listed
# in docs/API.md; plain dicts, built in taskreads.py.
TaskRollup = dict[str, Any]


class Counts(TypedDict):
    runs: int
    events: int
