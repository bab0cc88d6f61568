"""Full-text search over the events' text, with SQLite FTS5.

The index, ``event_search``, is a contentless FTS5 table keyed by the
events' rowid (``events.id``): it holds no text of its own, only the index
of each event's searchable text (``event_text``: its title, error, reason,
output tail, command, tool call, commit subjects), and two tags that let a
search stay inside one run or one repository without reading the others'
matches. ``contentless_delete=1`` lets retention delete a run's rows by id.

Indexing is behind the writer, not in it: ``index_pending`` indexes the
events above ``search_state.indexed_id``, a chunk at a time, and the
database process calls it when no batch waits (dbproc.py), as it does for
the roll-ups. Ingest never pays for the index; a search does not see the
events stored since the last quiet moment (``unindexed`` in its answer says
how many there are). The v5 migration makes the index empty: the history
stored before it is indexed the same way, its progress in the log
(``CatchUp``), so that the daemon starts at once whatever its size.

Searching it: searchreads.py.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

import apsw
import orjson

log = logging.getLogger("choo.daemon")

INDEX_CHUNK: Final = 2_000  # events indexed per step behind the writer

# The payload fields whose text is searched, besides the event's error.
TEXT_FIELDS: Final = (
    "title",
    "reason",
    "output_tail",
    "command",
    "tool",
    "target",
    "name",
    "stop_reason",
    "branch",
    "files",
)

CREATE_INDEX_SQL: Final = """
CREATE VIRTUAL TABLE event_search USING fts5(
    text, tags, content='', contentless_delete=1
);
-- Every event with id up to indexed_id is in event_search (or has no text).
CREATE TABLE search_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_id INTEGER NOT NULL
);
INSERT INTO search_state(id, indexed_id) VALUES (1, 0);
"""

# FTS5's unicode61 tokenizer: letters and digits make tokens, all else splits.
TOKEN = re.compile(r"[^\W_]+")


# --- what is indexed ------------------------------------------------------


_TEXT_SET: Final = frozenset(TEXT_FIELDS)


def event_text(payload: str | None, error: str | None) -> str:
    """The searchable text of an event (its payload as stored: JSON text)."""
    parts: list[str] = []
    if payload:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            for name, value in data.items():  # the hot loop of indexing
                if name in _TEXT_SET:
                    if type(value) is str:
                        parts.append(value)
                    elif type(value) is list:
                        parts += [v for v in value if type(v) is str]
                elif name == "commits" and type(value) is list:  # task.committed
                    parts += [
                        c["subject"]
                        for c in value
                        if type(c) is dict and type(c.get("subject")) is str
                    ]
    if error:
        parts.append(error)
    return "\n".join(parts)


@functools.lru_cache(maxsize=4096)
def _tag(kind: str, value: str) -> str:
    # One token per run and per repository: a letter and hex digits, which
    # the tokenizer keeps whole whatever the id or path holds.
    return kind + hashlib.blake2b(value.encode(), digest_size=8).hexdigest()


def run_tag(run_id: str) -> str:
    return _tag("r", run_id)


def repo_tag(repo_path: str) -> str:
    return _tag("p", repo_path)


# --- keeping the index ----------------------------------------------------


def indexed_id(conn: apsw.Connection) -> int:
    value: int = conn.execute("SELECT indexed_id FROM search_state WHERE id = 1").get
    return value


def index_pending(conn: apsw.Connection, limit: int = INDEX_CHUNK) -> int:
    """Index up to ``limit`` events above ``indexed_id``, in one transaction.

    Returns how many events it went over (0: the index is up to date).
    """
    with conn:
        done = indexed_id(conn)
        rows = conn.execute(
            "SELECT e.id, e.payload, e.error, e.run_id, r.repo_path FROM events AS e"
            " JOIN runs AS r ON r.id = e.run_id WHERE e.id > ? ORDER BY e.id LIMIT ?",
            (done, limit),
        ).fetchall()
        if not rows:
            return 0
        conn.executemany(
            "INSERT INTO event_search(rowid, text, tags) VALUES (?, ?, ?)",
            _index_rows(rows),
        )
        conn.execute("UPDATE search_state SET indexed_id = ? WHERE id = 1", (rows[-1][0],))
    return len(rows)


def _index_rows(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[int, str, str]]:
    for event_id, payload, error, run_id, repo in rows:
        text = event_text(payload, error)
        if text:
            yield event_id, text, f"{run_tag(run_id)} {repo_tag(repo)}"


class CatchUp:
    """Indexes behind the writer (``index_pending``), logging the progress of
    a large backlog: the history a v5 migration found, or a long busy spell.

    The database process calls ``step`` in its idle moments. A backlog of
    ``LOG_BACKLOG`` events or more is announced, then reported about every
    10 % and when done.
    """

    LOG_BACKLOG: Final = 50_000

    def __init__(self) -> None:
        self.total = 0  # the backlog being reported, 0 when none is
        self.done = 0
        self.shown = 0
        self.started = 0.0

    def step(self, conn: apsw.Connection, limit: int = INDEX_CHUNK) -> int:
        if not self.total:
            self._look(conn)
        count = index_pending(conn, limit)
        if self.total:
            self._report(count)
        return count

    def _look(self, conn: apsw.Connection) -> None:
        backlog = unindexed(conn)
        if backlog >= self.LOG_BACKLOG:
            self.total, self.done, self.shown = backlog, 0, 0
            self.started = time.monotonic()
            log.info(
                "search: indexing %d events not indexed yet (search does not see them until then)",
                backlog,
            )

    def _report(self, count: int) -> None:
        self.done += count
        percent = min(100, 100 * self.done // self.total)
        if count == 0:
            log.info(
                "search: index caught up, %d events indexed in %.1f s",
                self.done,
                time.monotonic() - self.started,
            )
            self.total = 0
        elif percent // 10 > self.shown // 10:
            log.info("search: indexed %d of %d events (%d %%)", self.done, self.total, percent)
            self.shown = percent


def unindexed(conn: apsw.Connection) -> int:
    """About how many stored events the index does not hold yet (ids above indexed_id)."""
    last: int = conn.execute("SELECT coalesce(max(id), 0) FROM events").get
    return max(0, last - indexed_id(conn))


def unindex_events(conn: apsw.Connection, ids: Sequence[int]) -> None:
    """Take deleted events out of the index (call in the deleting transaction).

    ``indexed_id`` is brought down to the highest id left: SQLite may hand
    a deleted highest id to the next event, which must then be indexed.
    """
    done = indexed_id(conn)
    conn.executemany("DELETE FROM event_search WHERE rowid = ?", [(i,) for i in ids if i <= done])
    conn.execute(
        "UPDATE search_state SET indexed_id = min(indexed_id,"
        " coalesce((SELECT max(id) FROM events), 0)) WHERE id = 1"
    )


def run_event_ids(conn: apsw.Connection, run_id: str) -> list[int]:
    return [row[0] for row in conn.execute("SELECT id FROM events WHERE run_id = ?", (run_id,))]
