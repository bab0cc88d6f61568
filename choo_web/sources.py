"""What the app reads from, as the daemon passes it in to ``create_app``.

Structural types only: the web package never imports the daemon. The
daemon's ``LiveOnlyReader`` over its ``Reader`` (history reads in worker
threads) and its ``LiveHub`` (fan-out of each commit) satisfy them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

# An event as committed: (run_id, seq, time, type, unit, task, pr, payload JSON text, error).
EventRow = tuple[str, int, str, str, str | None, int | None, int | None, str | None, str | None]


class HistoryReader(Protocol):
    """The history's read side: ``await reader.<name>(...)`` runs the store's read ``name``.

    The daemon serves each read of its store marked ``@served``
    (``choo_daemon/store/reads.py``) under the function's name, so a new
    route needs nothing here. A read raises ``protocol.errors.Refusal``
    when it cannot answer (errors.py maps it to a status); a ``run``
    argument is a run id or a unique prefix of one.

    One read is not the store's: ``live_only_runs(repo=)``, the runs shown
    live but not recorded (``choo run --no-history``), running now. They
    are not history: ``list_runs`` never lists them. While they run,
    ``run_detail`` (with ``"history": false``), ``run_events`` and
    ``run_graph`` answer for them by their full id; afterwards, nothing does.
    """

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]: ...


class Batch(Protocol):
    """One commit as one subscriber sees it."""

    @property
    def rows(self) -> Sequence[EventRow]: ...

    # (run_id, request type): run.start, run.resume, run.graph, run.complete.
    @property
    def changes(self) -> Sequence[tuple[str, str]]: ...

    # run_id -> its detail as get_run shows it, for live-only runs: once one
    # ends, the reader no longer knows it, so its end comes with the batch.
    @property
    def details(self) -> Mapping[str, Any]: ...


class Subscription(Protocol):
    @property
    def dropped(self) -> bool:
        """True once the hub dropped this subscriber for falling too far behind."""
        ...

    async def receive(self) -> Batch | None:
        """The next batch, or None once the subscription has ended."""
        ...

    def receive_nowait(self) -> Batch | None:
        """The next batch if one is buffered already, else None."""
        ...


class LiveSource(Protocol):
    def subscribe(
        self, *, run_id: str | None = None, repo: str | None = None
    ) -> AbstractContextManager[Subscription]: ...

    def repo_of(self, run_id: str) -> str | None: ...

    def remember_repo(self, run_id: str, repo_path: str) -> None: ...

    def statistics(self) -> dict[str, int]: ...
