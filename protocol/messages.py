"""Message types of the choo wire protocol and their validation.

A message is a plain ``dict`` (msgpack map) whose ``"t"`` names its type.
``SCHEMAS`` lists, for every type, its fields and the types they accept;
``validate`` checks a decoded map against it. Fields a type does not list
are ignored, so that a newer peer may add optional fields.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from protocol.errors import BadField, UnknownType

PROTOCOL_VERSION: Final = 1

Message = dict[str, Any]

# Field kinds. Python's bool is an int, so integers are checked apart.
INT = "int"
STR = "str"
BOOL = "bool"
MAP = "map"
LIST = "list"

MAX_SEQ = 2**63 - 1
MAX_STORED_INT = 2**63 - 1  # SQLite's INTEGER is signed 64-bit
# What a run ID may be: the daemon, the history's CLI and an import all check it.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# What run.complete may say, and every status a stored run may have.
FINAL_STATUSES: Final = ("completed", "failed", "stopped")
RUN_STATUSES: Final = ("running", *FINAL_STATUSES)

# (field, kind, required, nullable)
Field = tuple[str, str, bool, bool]


def _f(name: str, kind: str, *, required: bool = True, nullable: bool = False) -> Field:
    return (name, kind, required, nullable)


_REQ = _f("req", INT)
SCHEMAS: Final[dict[str, tuple[Field, ...]]] = {
    # handshake
    "hello": (_f("v", INT), _f("client", STR), _f("pid", INT)),
    "welcome": (_f("v", INT), _f("daemon", STR), _f("web", STR, nullable=True)),
    # replies
    "ok": (_REQ, _f("data", MAP, required=False, nullable=True)),
    "error": (_f("code", STR), _f("message", STR), _f("req", INT, required=False, nullable=True)),
    # event stream
    "event": (
        _f("run", STR),
        _f("seq", INT),
        _f("time", STR),
        _f("type", STR),
        _f("unit", STR, required=False, nullable=True),
        _f("task", INT, required=False, nullable=True),
        _f("pr", INT, required=False, nullable=True),
        _f("payload", MAP, required=False, nullable=True),
        _f("error", STR, required=False, nullable=True),
    ),
    # many events of one run in one frame: items are
    # [seq, time, type, unit, task, pr, payload, error] arrays (see EVENT_ITEM)
    "events": (_f("run", STR), _f("items", LIST)),
    "ack": (_f("run", STR), _f("seq", INT)),
    # requests
    "run.start": (
        _REQ,
        _f("run", STR),
        _f("repo_path", STR),
        _f("started_at", STR),
        _f("parallelism", INT),
        _f("total_units", INT),
        _f("tasks_dir", STR, required=False, nullable=True),
        _f("dry_run", BOOL, required=False),
        _f("token", STR, required=False, nullable=True),
        _f("history", BOOL, required=False),  # false: shown live, never stored (liveonly.py)
    ),
    "run.resume": (
        _REQ,
        _f("run", STR),
        _f("time", STR),
        _f("token", STR),
        _f("reason", STR, required=False, nullable=True),
    ),
    "run.graph": (_REQ, _f("run", STR), _f("nodes", LIST), _f("edges", LIST), _f("levels", LIST)),
    "run.complete": (
        _REQ,
        _f("run", STR),
        _f("status", STR),
        _f("completed_at", STR),
        _f("completed_units", INT),
        _f("failed_units", INT),
        _f("blocked_units", INT),
        _f("error", STR, required=False, nullable=True),
    ),
    "history.prune": (
        _REQ,
        _f("older_than_days", INT),
        _f("dry_run", BOOL, required=False),
    ),
    "status": (_REQ,),
    "shutdown": (_REQ,),
}

# What run.complete says of a run's end (all its fields but "req" and "run"):
# the store records them, an export carries them, an import sends them back.
RUN_END_FIELDS: Final = tuple(f[0] for f in SCHEMAS["run.complete"] if f[0] not in ("req", "run"))

# Integer fields the store keeps, and the values each may take (inclusive).
# msgpack carries up to 2**64-1, SQLite only up to 2**63-1; counts and
# numbers are never negative. Other int fields (req, pid, v) are not stored.
_COUNT = (0, MAX_STORED_INT)
INT_RANGES: Final[dict[tuple[str, str], tuple[int, int]]] = {
    ("event", "seq"): (1, MAX_SEQ),
    ("event", "task"): _COUNT,
    ("event", "pr"): _COUNT,
    ("run.start", "parallelism"): _COUNT,
    ("run.start", "total_units"): _COUNT,
    ("run.complete", "completed_units"): _COUNT,
    ("run.complete", "failed_units"): _COUNT,
    ("run.complete", "blocked_units"): _COUNT,
}
_RANGED: Final = {
    kind: tuple((name, span) for (k, name), span in INT_RANGES.items() if k == kind)
    for kind in {k for k, _ in INT_RANGES}
}

REQUESTS: Final = frozenset(
    {"run.start", "run.resume", "run.graph", "run.complete", "history.prune", "status", "shutdown"}
)
# Types whose schema has a "run" field; elsewhere "run" is an ignored extra field.
_WITH_RUN: Final = frozenset(
    k for k, fields in SCHEMAS.items() if any(f[0] == "run" for f in fields)
)


def _kind_ok(value: Any, kind: str) -> bool:
    if kind == INT:
        return type(value) is int
    if kind == STR:
        return type(value) is str
    if kind == BOOL:
        return type(value) is bool
    if kind == MAP:
        return isinstance(value, dict)
    return isinstance(value, list)


def validate(msg: dict[Any, Any]) -> Message:
    """Check a decoded map against its type's schema and return it."""
    kind = msg.get("t")
    if kind == "event" and _event_ok(msg):
        return msg
    schema = SCHEMAS.get(kind) if type(kind) is str else None
    if schema is None:
        raise UnknownType(
            f"unknown message type {_clip(kind)}" if "t" in msg else 'message has no "t"'
        )
    # Only a request can be answered with an error that keeps the connection
    # open, so only a request's "req" is carried on the error.
    req = msg.get("req")
    req = req if type(req) is int and kind in REQUESTS else None
    for name, field_kind, required, nullable in schema:
        if name not in msg:
            if required:
                raise BadField(f'{kind}: missing field "{name}"', req=req)
            continue
        value = msg[name]
        if value is None and nullable:
            continue
        if not _kind_ok(value, field_kind):
            raise BadField(
                f'{kind}: field "{name}" must be {field_kind}, got {type(value).__name__}',
                req=req,
            )
    for name, (low, high) in _RANGED.get(str(kind), ()):
        value = msg.get(name)
        if value is not None and not low <= value <= high:
            raise BadField(_range_problem(str(kind), name, value, low, high), req=req)
    if kind == "event":
        _check_event(msg)
    elif kind == "events":
        _check_run_id(kind, msg["run"], None)
        _check_items(msg["items"])
    elif kind in _WITH_RUN:
        _check_run_id(kind, msg["run"], req)
        if kind == "run.complete" and msg["status"] not in FINAL_STATUSES:
            raise BadField(
                f'run.complete: field "status" must be one of {", ".join(FINAL_STATUSES)}, '
                f"got {_clip(msg['status'])}",
                req=req,
            )
    return msg


def _range_problem(kind: str, name: str, value: int, low: int, high: int) -> str:
    top = "2**63-1" if high == MAX_STORED_INT else str(high)
    return f'{kind}: field "{name}" must be between {low} and {top}, got {value}'


def _clip(value: Any) -> str:
    """Describe a peer's value for an error frame: short, and never a deep repr.

    A peer controls the value, so quoting it whole could make the error frame
    too large, and ``repr`` of a deeply nested list raises RecursionError.
    """
    if isinstance(value, str | bytes):
        text = repr(value[:60])
        return text[:57] + "..." if len(value) > 60 or len(text) > 60 else text
    if value is None or isinstance(value, int | float):
        return repr(value)
    return f"a {type(value).__name__}"


# Run ids already seen valid: a stream names the same few runs many times.
_GOOD_RUN_IDS: set[str] = set()


def _remember_run_id(run: str) -> bool:
    if RUN_ID.fullmatch(run) is None:
        return False
    if len(_GOOD_RUN_IDS) >= 4096:
        _GOOD_RUN_IDS.clear()
    _GOOD_RUN_IDS.add(run)
    return True


def _event_ok(msg: dict[Any, Any]) -> bool:
    """The common case of an event, checked in one expression (the hot path).

    False sends the message through the general checks, which say what is wrong.
    """
    get = msg.get
    run, seq, etype = get("run"), get("seq"), get("type")
    unit, task, pr, payload, error = (
        get("unit"),
        get("task"),
        get("pr"),
        get("payload"),
        get("error"),
    )
    return (
        type(run) is str
        and (run in _GOOD_RUN_IDS or _remember_run_id(run))
        and type(seq) is int
        and 1 <= seq <= MAX_SEQ
        and type(get("time")) is str
        and type(etype) is str
        and 1 <= len(etype) <= 128
        and (unit is None or type(unit) is str)
        and (task is None or (type(task) is int and 0 <= task <= MAX_STORED_INT))
        and (pr is None or (type(pr) is int and 0 <= pr <= MAX_STORED_INT))
        and (payload is None or type(payload) is dict)
        and (error is None or type(error) is str)
    )


# The fields of one item of an "events" message, in order: (name, kinds, nullable).
EVENT_ITEM: Final = (
    ("seq", int, False),
    ("time", str, False),
    ("type", str, False),
    ("unit", str, True),
    ("task", int, True),
    ("pr", int, True),
    ("payload", dict, True),
    ("error", str, True),
)


def _check_items(items: list[Any]) -> None:
    """Every item of an "events" message (the hot path: one loop, no calls)."""
    if not items:
        raise BadField('events: field "items" must hold at least one event')
    for i, item in enumerate(items):
        if (
            type(item) is list
            and len(item) == 8
            and type(item[0]) is int
            and 1 <= item[0] <= MAX_SEQ
            and type(item[1]) is str
            and type(item[2]) is str
            and 1 <= len(item[2]) <= 128
            and (item[3] is None or type(item[3]) is str)
            and (item[4] is None or (type(item[4]) is int and 0 <= item[4] <= MAX_STORED_INT))
            and (item[5] is None or (type(item[5]) is int and 0 <= item[5] <= MAX_STORED_INT))
            and (item[6] is None or type(item[6]) is dict)
            and (item[7] is None or type(item[7]) is str)
        ):
            continue
        raise BadField(f"events: item {i}: {_item_problem(item)}")


def _item_problem(item: Any) -> str:
    if type(item) is not list or len(item) != len(EVENT_ITEM):
        return f"must be an array of {len(EVENT_ITEM)} fields " + (
            "[seq, time, type, unit, task, pr, payload, error]"
        )
    for value, (name, kind, nullable) in zip(item, EVENT_ITEM, strict=True):
        if value is None and nullable:
            continue
        if type(value) is not kind:
            return f'field "{name}" must be {kind.__name__}, got {type(value).__name__}'
    for index, name in ((0, "seq"), (4, "task"), (5, "pr")):
        low, high = INT_RANGES[("event", name)]
        value = item[index]
        if value is not None and not low <= value <= high:
            return _range_problem("event", name, value, low, high).removeprefix("event: ")
    return 'field "type" must be 1-128 characters'


def _check_run_id(kind: str, run: str, req: int | None) -> None:
    if RUN_ID.fullmatch(run) is None:
        raise BadField(
            f'{kind}: field "run" must be 1-128 characters of letters, digits, "_", "." or "-"'
            f", got {_clip(run)}",
            req=req,
        )


def _check_event(msg: Message) -> None:
    _check_run_id("event", msg["run"], None)
    etype = msg["type"]
    if not 1 <= len(etype) <= 128:
        raise BadField('event: field "type" must be 1-128 characters')


def payload_json(payload: Any) -> str | None:
    """Serialise an event payload to JSON text for storage.

    Raises BadField for values JSON cannot hold (binary, extension types,
    integers over 64 bits, non-string keys) or nesting deeper than 254
    levels. Non-finite floats become null, as JSON has no spelling for them.
    """
    if payload is None:
        return None
    try:
        return orjson.dumps(payload).decode()
    except TypeError as exc:
        raise BadField(f"event: payload cannot be stored as JSON: {exc}") from None
