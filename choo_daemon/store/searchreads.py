"""Searching the events' text: the read behind ``GET /api/history/search``.

The index is search.py's. A query is our own small syntax, never raw FTS5
(``parse_query``): words (all must match), "quoted phrases", ``word*`` for
a prefix, ``OR`` between two terms, ``-word`` to exclude. Each word is
quoted before it reaches FTS5, so punctuation is only a separator and no
input is an FTS5 syntax error. Snippets are plain text with the matches'
offsets: the UI marks them up itself, as text.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import apsw

from choo_daemon.store.errors import BadCursor, BadParameter
from choo_daemon.store.reads import resolve_run_id, served
from choo_daemon.store.search import TOKEN, event_text, repo_tag, run_tag, unindexed

MAX_SEARCH_PAGE: Final = 200
MAX_RUN_MATCHES: Final = 10_000  # seqs listed for a run's jump-to-match
SNIPPET_CHARS: Final = 160


@dataclass(frozen=True)
class Query:
    """A parsed search: the FTS5 expression and the words to mark in the text."""

    expression: str
    terms: tuple[tuple[str, bool], ...]  # (lower-case word, is a prefix)


_QUERY_PARTS = re.compile(r'(-?)"([^"]*)"|(\S+)')
_EXPECTED = 'words, "quoted phrases", word* for a prefix, OR between terms, -word to exclude'


def _phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def parse_query(q: str) -> Query:
    """Our search syntax (module docstring) as an FTS5 expression over the text;
    BadParameter for a query with nothing to search for."""
    if q.count('"') % 2:
        raise BadParameter("q", q, f'{_EXPECTED} (a closing " is missing)')
    positive: list[list[str]] = []  # AND of ORs
    negative: list[str] = []
    terms: list[tuple[str, bool]] = []
    join_next = False
    for match in _QUERY_PARTS.finditer(q):
        minus, quoted, bare = match.groups()
        if bare == "OR":
            join_next = bool(positive)
            continue
        if quoted is not None:
            words = [w.lower() for w in TOKEN.findall(quoted)]
            clause, prefix, exclude = _phrase(" ".join(words)), False, bool(minus)
        else:
            exclude = bare.startswith("-") and len(bare) > 1
            prefix = bare.endswith("*")
            words = [w.lower() for w in TOKEN.findall(bare)]
            clause = _phrase(" ".join(words)) + (" *" if prefix else "")
        if not words:
            continue  # punctuation only: nothing the index holds
        if exclude:
            negative.append(clause)
            continue
        terms += [(w, prefix and i == len(words) - 1) for i, w in enumerate(words)]
        if join_next:
            positive[-1].append(clause)
        else:
            positive.append([clause])
        join_next = False
    if not positive:
        raise BadParameter("q", q, f"{_EXPECTED}, with at least one word to find")
    expression = " AND ".join(
        group[0] if len(group) == 1 else "(" + " OR ".join(group) + ")" for group in positive
    )
    for clause in negative:
        expression = f"({expression}) NOT {clause}"
    return Query(f"text : ({expression})", tuple(terms))


def _term_matches(token: str, terms: Sequence[tuple[str, bool]]) -> bool:
    return any(token == t or (prefix and token.startswith(t)) for t, prefix in terms)


def match_offsets(text: str, terms: Sequence[tuple[str, bool]]) -> list[list[int]]:
    """[start, length] of each word of ``text`` a term matches (code points)."""
    return [
        [m.start(), m.end() - m.start()]
        for m in TOKEN.finditer(text)
        if _term_matches(m.group().lower(), terms)
    ]


def snippet(text: str, terms: Sequence[tuple[str, bool]]) -> dict[str, Any]:
    """A window of ``text`` around its first match, one line, with the matches' offsets."""
    offsets = match_offsets(text, terms)
    first = offsets[0][0] if offsets else 0
    start = max(0, first - SNIPPET_CHARS // 4)
    end = min(len(text), start + SNIPPET_CHARS)
    window = text[start:end].replace("\n", " ").replace("\r", " ").replace("\t", " ")
    lead = "…" if start > 0 else ""
    tail = "…" if end < len(text) else ""
    shift = len(lead) - start
    return {
        "text": lead + window + tail,
        "matches": [[s + shift, n] for s, n in offsets if s >= start and s + n <= end],
    }


def _cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit() or len(cursor) > 18:
        raise BadCursor(cursor)
    return int(cursor)


_MATCH_COLUMNS = (
    "e.id, e.run_id, r.repo_path, e.seq, e.time, e.type, e.unit, e.task, e.payload, e.error"
)


def _match(row: tuple[Any, ...], terms: Sequence[tuple[str, bool]]) -> dict[str, Any]:
    _id, run_id, repo, seq, time, kind, unit, task, payload, error = row
    return {
        "run_id": run_id,
        "repo_path": repo,
        "seq": seq,
        "time": time,
        "type": kind,
        "unit": unit,
        "task": task,
        "snippet": snippet(event_text(payload, error), terms),
    }


@served
def search_events(
    conn: apsw.Connection,
    q: str,
    *,
    repo: str | None = None,
    run: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The events whose text matches ``q`` (parse_query), a page at a time.

    Across runs (optionally one repository's): newest first, ``next_cursor``
    for the next page. Within a run (``run``, an id or its start): in seq
    order, with ``seqs``, every match's seq (up to MAX_RUN_MATCHES, then
    ``truncated``), and ``total``, for the timeline's jumps.
    """
    if not 1 <= limit <= MAX_SEARCH_PAGE:
        raise BadParameter("limit", limit, f"1 to {MAX_SEARCH_PAGE}")
    query = parse_query(q)
    after = _cursor(cursor)
    with conn:
        run_id = None if run is None else resolve_run_id(conn, run)
        tags = [run_tag(run_id)] if run_id is not None else []
        tags += [repo_tag(repo)] if repo is not None else []
        expression = " AND ".join([*(f'tags : "{t}"' for t in tags), query.expression])
        if run_id is None:
            page = _across_runs(conn, expression, repo, after, limit)
        else:
            page = _within_run(conn, expression, run_id, repo, after, limit)
        page["unindexed"] = unindexed(conn)
    rows = page.pop("rows")
    page["matches"] = [_match(row, query.terms) for row in rows]
    return {
        "query": q,
        "terms": [{"text": t, "prefix": p} for t, p in query.terms],
        **page,
    }


def _across_runs(
    conn: apsw.Connection, expression: str, repo: str | None, before: int | None, limit: int
) -> dict[str, Any]:
    ids: list[int] = [
        row[0]
        for row in conn.execute(
            "SELECT rowid FROM event_search WHERE event_search MATCH ? AND rowid < ?"
            " ORDER BY rowid DESC LIMIT ?",
            (expression, before if before is not None else 1 << 62, limit + 1),
        )
    ]
    more = len(ids) > limit
    ids = ids[:limit]
    rows = _rows_by_id(conn, ids)
    if repo is not None:  # the tag is a hash: make sure
        rows = [row for row in rows if row[2] == repo]
    return {"rows": rows, "next_cursor": str(ids[-1]) if more else None}


def _rows_by_id(conn: apsw.Connection, ids: Sequence[int]) -> list[tuple[Any, ...]]:
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    found = {
        row[0]: row
        for row in conn.execute(
            f"SELECT {_MATCH_COLUMNS} FROM events AS e JOIN runs AS r ON r.id = e.run_id"
            f" WHERE e.id IN ({marks})",
            ids,
        )
    }
    return [found[i] for i in ids if i in found]


def _within_run(
    conn: apsw.Connection,
    expression: str,
    run_id: str,
    repo: str | None,
    after: int | None,
    limit: int,
) -> dict[str, Any]:
    found = conn.execute(
        "SELECT e.seq FROM event_search AS s JOIN events AS e ON e.id = s.rowid"
        " WHERE event_search MATCH ? AND e.run_id = ? LIMIT ?",
        (expression, run_id, MAX_RUN_MATCHES + 1),
    ).fetchall()
    truncated = len(found) > MAX_RUN_MATCHES
    seqs: list[int] = sorted(cast(int, row[0]) for row in found[:MAX_RUN_MATCHES])
    if (
        repo is not None
        and conn.execute(
            "SELECT 1 FROM runs WHERE id = ? AND repo_path = ?", (run_id, repo)
        ).fetchone()
        is None
    ):
        seqs = []
    start = 0 if after is None else bisect_right(seqs, after)
    page = seqs[start : start + limit]
    rows = [
        row
        for seq in page
        for row in conn.execute(
            f"SELECT {_MATCH_COLUMNS} FROM events AS e JOIN runs AS r ON r.id = e.run_id"
            " WHERE e.run_id = ? AND e.seq = ?",
            (run_id, seq),
        )
    ]
    more = start + limit < len(seqs)
    return {
        "rows": rows,
        "next_cursor": str(page[-1]) if more and page else None,
        "run_id": run_id,
        "seqs": seqs,
        "total": len(seqs),
        "truncated": truncated,
    }
