"""Errors raised by the history store.

    protocol.errors.Refusal
    └── StoreError            the history database cannot do what was asked
        ├── SchemaTooNew      the file was written by a newer choo     (schema_too_new)
        ├── MigrationFailed   upgrading the schema failed, rolled back (migration_failed)
        ├── CorruptDatabase   the file is not a valid SQLite database  (corrupt_database)
        ├── UnknownRun        no run has this id (or id prefix)        (unknown_run; not_found)
        ├── NoGraph           the run has no dependency graph          (no_graph; not_found)
        ├── RunExists         the id is taken by a run of another repo (run_exists)
        ├── NotOwner          a resume sent again after another resumed (not_owner)
        ├── AmbiguousRun      an id prefix matches several runs        (ambiguous_run; bad_request)
        ├── BadCursor         a page cursor is not one we handed out   (bad_cursor; bad_request)
        └── BadParameter      a filter or limit is out of range        (bad_parameter; bad_request)

Every error carries a short ``code`` (in brackets) that the daemon and the web
API pass on unchanged, and a neutral ``kind`` (``protocol.errors``; after the
semicolon, else ``failed``) that the web API turns into an HTTP status. The
message names the file, run or value it is about and says what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from protocol.errors import BAD_REQUEST, NOT_FOUND, Refusal


class StoreError(Refusal):
    """Base of every history store error."""

    code = "store_error"


class SchemaTooNew(StoreError):
    code = "schema_too_new"

    def __init__(self, path: Path | str, found: int, supported: int) -> None:
        super().__init__(
            f"history database {path} has schema version {found}, newer than this choo "
            f"understands ({supported}); upgrade choo or use another CHOO_HOME"
        )
        self.path = str(path)
        self.found = found
        self.supported = supported


class MigrationFailed(StoreError):
    code = "migration_failed"

    def __init__(self, path: Path | str, version: int, cause: BaseException) -> None:
        super().__init__(
            f"history database {path}: migration to schema version {version} failed "
            f"({type(cause).__name__}: {cause}); the database was left unchanged at "
            f"version {version - 1}; report this, or move the file aside to start afresh"
        )
        self.path = str(path)
        self.version = version


class CorruptDatabase(StoreError):
    code = "corrupt_database"

    def __init__(self, path: Path | str, cause: BaseException) -> None:
        super().__init__(
            f"history database {path} is not a valid SQLite database ({cause}); move it "
            "aside with `choo daemon start --set-aside-corrupt` (it is renamed "
            f"{Path(path).name}.corrupt-<time>, with its -wal and -shm, and a new history starts)"
        )
        self.path = str(path)


class UnknownRun(StoreError):
    code = "unknown_run"
    kind = NOT_FOUND

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"no run {run_id!r} in the history database; list runs with `choo history list`"
        )
        self.run_id = run_id


class NoGraph(StoreError):
    code = "no_graph"
    kind = NOT_FOUND

    def __init__(self, run_id: str, why: str) -> None:
        super().__init__(
            f"run {run_id!r} has no dependency graph {why}; its events are at .../events"
        )
        self.run_id = run_id


class RunExists(StoreError):
    code = "run_exists"

    def __init__(self, run_id: str, existing_repo: str, new_repo: str) -> None:
        whose = (
            "another run of this repository"
            if existing_repo == new_repo
            else f"a run of repository {existing_repo}, not {new_repo}"
        )
        super().__init__(
            f"run {run_id!r} already exists ({whose}); start the run with a new run id"
        )
        self.run_id = run_id


class NotOwner(StoreError):
    code = "not_owner"

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id!r} was resumed again since this run.resume (by another "
            "orchestrator): it is not this client's any more; `choo resume` it to continue it"
        )
        self.run_id = run_id


class AmbiguousRun(StoreError):
    code = "ambiguous_run"
    kind = BAD_REQUEST

    def __init__(self, prefix: str, candidates: Sequence[str]) -> None:
        shown = ", ".join(candidates[:5]) + (", ..." if len(candidates) > 5 else "")
        super().__init__(
            f"run id prefix {prefix!r} matches several runs ({shown}); give more characters"
        )
        self.prefix = prefix
        self.candidates = list(candidates)


class BadCursor(StoreError):
    code = "bad_cursor"
    kind = BAD_REQUEST

    def __init__(self, cursor: str) -> None:
        shown = cursor[:40] + ("..." if len(cursor) > 40 else "")
        super().__init__(
            f"page cursor {shown!r} is malformed; ask for the first page again, without a cursor"
        )
        self.cursor = cursor


class BadParameter(StoreError):
    code = "bad_parameter"
    kind = BAD_REQUEST

    def __init__(self, name: str, value: object, expected: str) -> None:
        shown = repr(value)
        shown = shown[:60] + ("..." if len(shown) > 60 else "")
        super().__init__(f"bad {name} {shown}: expected {expected}")
        self.name = name
        self.value = value
