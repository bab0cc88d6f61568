"""The history store: runs, their events and graphs, in one SQLite file (apsw).

Plain blocking functions over an ``apsw.Connection``; the daemon runs them
in worker threads. One write connection (open_write_connection), used only
by the writer, with every batch of write calls inside ``with conn:``; any
number of read connections (open_read_connection), each used by one thread
at a time. ``SERVED`` names the reads the web API may ask for (see reads.py; the
roll-ups of tasks and attempts, kept at write time by rollups.py, are read
by taskreads.py; what a run did in git, by gitreads.py; where its time
went, by lanes.py; the sums two runs are compared by, by comparereads.py;
full-text search over the events' text, indexed behind the writer by
search.py, read by searchreads.py).
"""

from choo_daemon.store.comparereads import run_task_sums
from choo_daemon.store.errors import (
    AmbiguousRun,
    BadCursor,
    BadParameter,
    CorruptDatabase,
    MigrationFailed,
    NoGraph,
    NotOwner,
    RunExists,
    SchemaTooNew,
    StoreError,
    UnknownRun,
)
from choo_daemon.store.gitreads import run_git
from choo_daemon.store.lanes import run_lanes
from choo_daemon.store.reads import (
    MAX_EVENTS_PAGE,
    MAX_RUNS_PAGE,
    SERVED,
    check_events_page,
    counts,
    get_graph,
    get_run,
    list_repos,
    list_runs,
    resolve_run_id,
    run_events,
)
from choo_daemon.store.records import (
    Counts,
    Event,
    EventPage,
    Graph,
    Marker,
    Repo,
    RunDetail,
    RunPage,
    RunSummary,
    TaskRollup,
    Totals,
)
from choo_daemon.store.rollups import fold_all, fold_pending, fold_run
from choo_daemon.store.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    migrate,
    open_read_connection,
    open_write_connection,
    schema_version,
)
from choo_daemon.store.search import CatchUp, index_pending
from choo_daemon.store.searchreads import MAX_SEARCH_PAGE, parse_query, search_events
from choo_daemon.store.taskreads import (
    empty_unit_rollup,
    run_tasks,
    run_tasks_json,
    run_unit_rollups,
    settled_stamp,
    task_table,
)
from choo_daemon.store.writes import (
    Col,
    EventRow,
    append_events,
    append_resume_marker,
    complete_run,
    create_run,
    delete_runs_older_than,
    held_runs,
    mark_stopped,
    old_runs,
    retract_held_marker,
    run_exists,
    running_owner_tokens,
    running_runs,
    store_graph,
)
from protocol.events import RUN_RESUMED, RUN_STOPPED
from protocol.messages import FINAL_STATUSES, RUN_STATUSES
from protocol.times import iso_utc, utc_now

__all__ = [
    "FINAL_STATUSES",
    "MAX_EVENTS_PAGE",
    "MAX_RUNS_PAGE",
    "MAX_SEARCH_PAGE",
    "MIGRATIONS",
    "RUN_RESUMED",
    "RUN_STATUSES",
    "RUN_STOPPED",
    "SCHEMA_VERSION",
    "SERVED",
    "AmbiguousRun",
    "BadCursor",
    "BadParameter",
    "CatchUp",
    "Col",
    "CorruptDatabase",
    "Counts",
    "Event",
    "EventPage",
    "EventRow",
    "Graph",
    "Marker",
    "MigrationFailed",
    "NoGraph",
    "NotOwner",
    "Repo",
    "RunDetail",
    "RunExists",
    "RunPage",
    "RunSummary",
    "SchemaTooNew",
    "StoreError",
    "TaskRollup",
    "Totals",
    "UnknownRun",
    "append_events",
    "append_resume_marker",
    "check_events_page",
    "complete_run",
    "counts",
    "create_run",
    "delete_runs_older_than",
    "empty_unit_rollup",
    "fold_all",
    "fold_pending",
    "fold_run",
    "get_graph",
    "get_run",
    "held_runs",
    "index_pending",
    "iso_utc",
    "list_repos",
    "list_runs",
    "mark_stopped",
    "migrate",
    "old_runs",
    "open_read_connection",
    "open_write_connection",
    "parse_query",
    "resolve_run_id",
    "retract_held_marker",
    "run_events",
    "run_exists",
    "run_git",
    "run_lanes",
    "run_task_sums",
    "run_tasks",
    "run_tasks_json",
    "run_unit_rollups",
    "running_owner_tokens",
    "running_runs",
    "schema_version",
    "search_events",
    "settled_stamp",
    "store_graph",
    "task_table",
    "utc_now",
]
