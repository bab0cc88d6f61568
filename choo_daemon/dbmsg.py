"""The messages between the daemon and its database process, both ways.

The daemon's side (``dblink``, and the ``Writer`` through it) and the
process's side (``dbproc``) both import this module and nothing else of
each other: what one sends, the other unpickles as the same classes.

    request               answer value
    Open(set_aside,    -> Opened           open and migrate the file (set a
         outbox)                           damaged one aside if asked to)
    Apply(number, ops) -> Outcome | None   one batch, one transaction; None:
                                           not its turn (see Apply)
    Call(fn, args)     -> fn(conn, *args)  maintenance (retention, orphans)
    Close()            -> None             checkpoint, close, exit

Each request is answered by ``Ok(value)`` or by ``Failed``. ``Request[R]``
names the type of the value, so that ``DbProcess.request`` returns it typed.

Frozen dataclasses with slots. The ones a batch holds many of (``EventsOp``)
pickle as their class and values, as a tuple would; the default for a frozen
dataclass with slots goes through ``dataclasses.fields``, three times slower.
Only the standard library here, as in ``dbwire``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

R = TypeVar("R")

# The change reported when a run's own events retract the daemon's run.stopped.
REOPENED = "run.reopened"
# Set by the daemon (never taken from a client) on a run.resume of a run whose
# orchestrator it is waiting for: the store records where that one stopped.
TAKE_OVER = "_take_over"


# -- one batch's operations -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventsOp:
    """Event messages of ``sender`` (its number in the batch), as the daemon checked them.

    ``bodies``: their frame bodies, as they came; turning them into rows
    (JSON, scrubbing what may hold a secret) is the database process's work.
    ``top``: the highest seq per run, what the sender is acked. ``clean``,
    one per body: the daemon found no secret shape in that body's events,
    and they are stored without the scrub.
    """

    sender: int
    bodies: list[bytes]
    top: dict[str, int]
    clean: list[bool]

    def __reduce__(self) -> tuple[type[EventsOp], tuple[Any, ...]]:
        return EventsOp, (self.sender, self.bodies, self.top, self.clean)


@dataclass(frozen=True, slots=True)
class RequestOp:
    """A write request of ``sender`` (run.start, run.resume, run.graph, run.complete)."""

    sender: int
    message: dict[str, Any]

    def __reduce__(self) -> tuple[type[RequestOp], tuple[Any, ...]]:
        return RequestOp, (self.sender, self.message)


Op = EventsOp | RequestOp


# -- what answers carry -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """The answer to Open: what the history holds, and where a damaged file went."""

    events: int
    runs: int
    set_aside: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a committed batch owes its senders (by their number in the batch), and
    what it changed.

    The database process fills its containers as it applies the batch, and
    sets the counts once it has committed.
    """

    acks: dict[int, dict[str, int]] = field(default_factory=dict)  # sender -> run -> seq
    replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    fatal: dict[int, tuple[str, str]] = field(default_factory=dict)  # sender -> (code, why)
    skipped: set[int] = field(default_factory=set)  # indexes of the ops not applied
    inserted: int = 0
    runs_created: int = 0
    # Every run whose state changed, as (run_id, request type or REOPENED).
    runs_changed: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # tracebacks of the ops refused


# -- requests ---------------------------------------------------------------------


class Request(Generic[R]):
    """A request to the database process; ``R``: the value of its answer."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Open(Request[Opened]):
    set_aside: bool = False  # a file that is not SQLite is moved aside, not refused
    outbox: bool = False  # continuous export is on: a run that ends goes in the OTLP outbox


@dataclass(frozen=True, slots=True)
class Apply(Request[Outcome | None]):
    """Apply a batch in one transaction.

    ``number``: the batch's place in the order of commits. The database
    process keeps that order itself, and answers None for a batch that is
    not its turn (one behind a batch that failed): see ``dbproc._Server.apply``.
    """

    number: int
    ops: list[Op]


@dataclass(frozen=True, slots=True)
class Call(Request[R]):
    """``fn(conn, *args)`` on the write connection; ``fn`` is pickled by name."""

    fn: Callable[..., R]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Close(Request[None]):
    pass


# -- answers ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ok(Generic[R]):
    value: R


# "passing": a failure of the disk or the file that a later try may get past
# (history.db deleted or replaced under us is one: see ``dbfile``); "store": a
# database that cannot be opened; "failed": anything else; "gone": the process
# ended before it answered (made up by the daemon's side, never sent).
FailureKind = Literal["passing", "store", "failed", "gone"]


@dataclass(frozen=True, slots=True)
class Failed:
    kind: FailureKind
    why: str
    detail: str = ""  # a traceback, for "failed"


Answer = Ok[Any] | Failed
