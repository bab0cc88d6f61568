"""Message validation against SCHEMAS, and payload serialisation."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    FINAL_STATUSES,
    REQUESTS,
    RUN_STATUSES,
    SCHEMAS,
    BadField,
    FrameDecoder,
    Message,
    ProtocolError,
    UnknownType,
    encode,
    payload_json,
    validate,
)
from protocol.messages import MAX_SEQ

# One small valid message per type; every test below starts from these.
VALID: dict[str, Message] = {
    "hello": {"t": "hello", "v": 1, "client": "choo 0.1.0", "pid": 4242},
    "welcome": {"t": "welcome", "v": 1, "daemon": "0.1.0", "web": "http://127.0.0.1:8080"},
    "ok": {"t": "ok", "req": 1, "data": {"created": True}},
    "error": {"t": "error", "code": "unknown_run", "message": "no run r1", "req": 1},
    "event": {
        "t": "event",
        "run": "run_20260120_143052_a1b2",
        "seq": 1,
        "time": "2026-01-20T14:30:52.123Z",
        "type": "unit.started",
        "unit": "auth",
        "task": 2,
        "pr": 17,
        "payload": {"attempt": 1},
        "error": None,
    },
    "events": {
        "t": "events",
        "run": "run_20260120_143052_a1b2",
        "items": [
            [2, "2026-01-20T14:30:52.124Z", "task.started", "auth", 2, None, {"title": "x"}, None],
            [3, "2026-01-20T14:30:52.125Z", "task.failed", "auth", 2, 17, None, "exit 1"],
        ],
    },
    "ack": {"t": "ack", "run": "run_20260120_143052_a1b2", "seq": 1},
    "run.start": {
        "t": "run.start",
        "req": 1,
        "run": "run_20260120_143052_a1b2",
        "repo_path": "/home/me/project",
        "started_at": "2026-01-20T14:30:52.123Z",
        "parallelism": 4,
        "total_units": 3,
        "tasks_dir": "tasks",
        "dry_run": False,
        "token": "8f3c2a",
        "history": True,
    },
    "run.resume": {
        "t": "run.resume",
        "req": 2,
        "run": "run_20260120_143052_a1b2",
        "time": "2026-01-20T15:00:00.000Z",
        "token": "k3J9x",
        "reason": "choo resume",
    },
    "run.graph": {
        "t": "run.graph",
        "req": 3,
        "run": "run_20260120_143052_a1b2",
        "nodes": [{"id": "auth"}, {"id": "api"}],
        "edges": [{"from": "api", "to": "auth"}],
        "levels": [["auth"], ["api"]],
    },
    "run.complete": {
        "t": "run.complete",
        "req": 4,
        "run": "run_20260120_143052_a1b2",
        "status": "completed",
        "completed_at": "2026-01-20T15:10:00.000Z",
        "completed_units": 3,
        "failed_units": 0,
        "blocked_units": 0,
        "error": None,
    },
    "history.prune": {"t": "history.prune", "req": 6, "older_than_days": 30, "dry_run": True},
    "status": {"t": "status", "req": 5},
    "shutdown": {"t": "shutdown", "req": 6},
}

# Values of the wrong type for each field kind (bool is not an int here).
WRONG: dict[str, list[Any]] = {
    "int": ["1", 1.0, True, False, [1], {"n": 1}, b"\x01"],
    "str": [1, 1.5, True, b"text", ["a"], {"a": "b"}],
    "bool": [1, 0, "true", 1.0, []],
    "map": [[], "map", 1, True, b"{}"],
    "list": [{}, "list", 1, True, b"[]"],
}


def _with(mtype: str, **changes: Any) -> Message:
    msg = dict(VALID[mtype])
    msg.update(changes)
    return msg


def _without(mtype: str, name: str) -> Message:
    msg = dict(VALID[mtype])
    del msg[name]
    return msg


def _wrong_type_cases() -> list[Any]:
    cases = []
    for mtype, fields in SCHEMAS.items():
        for name, kind, _required, nullable in fields:
            values = WRONG[kind] + ([] if nullable else [None])
            for value in values:
                cases.append(pytest.param(mtype, name, value, id=f"{mtype}-{name}-{value!r}"))
    return cases


def _fields(*, required: bool) -> list[Any]:
    return [
        pytest.param(mtype, name, id=f"{mtype}-{name}")
        for mtype, fields in SCHEMAS.items()
        for name, _kind, is_required, _nullable in fields
        if is_required is required
    ]


def _expected_req(msg: Message) -> int | None:
    req = msg.get("req")
    return req if msg["t"] in REQUESTS and type(req) is int else None


def test_valid_examples_cover_every_type_and_field() -> None:
    assert set(VALID) == set(SCHEMAS)
    for mtype, fields in SCHEMAS.items():
        assert {name for name, *_ in fields} <= set(VALID[mtype])
        assert validate(dict(VALID[mtype])) == VALID[mtype]


# -- types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg",
    [{}, {"req": 1}, {"t": None}, {"t": 1}, {"t": True}, {"t": ["event"]}, {"t": b"event"}],
    ids=["empty", "no-t", "nil-t", "int-t", "bool-t", "list-t", "bin-t"],
)
def test_map_without_a_string_type_is_unknown(msg: dict[Any, Any]) -> None:
    with pytest.raises(UnknownType) as info:
        validate(msg)
    assert info.value.code == "unknown_type"


@pytest.mark.parametrize("mtype", ["", "Event", "run", "run.stop", "hello ", "x" * 10_000])
def test_unknown_type_string_is_rejected(mtype: str) -> None:
    with pytest.raises(UnknownType) as info:
        validate({"t": mtype, "req": 1})
    assert len(info.value.message) < 200  # the peer's value is clipped


def test_unknown_type_error_stays_small_for_any_value() -> None:
    # A peer chooses "t"; quoting it whole could overflow the error frame, and
    # repr() of a deeply nested list raises RecursionError.
    deep: Any = None
    for _ in range(5000):
        deep = [deep]
    for value in [b"\x00" * 500_000, "\x00" * 500_000, deep, {"a": deep}]:
        with pytest.raises(UnknownType) as info:
            validate({"t": value})
        assert len(info.value.message) < 200
        encode({"t": "error", "code": info.value.code, "message": info.value.message})


# -- fields --------------------------------------------------------------------


@pytest.mark.parametrize(("mtype", "name"), _fields(required=True))
def test_missing_required_field_is_rejected(mtype: str, name: str) -> None:
    msg = _without(mtype, name)
    with pytest.raises(BadField) as info:
        validate(msg)
    assert info.value.code == "bad_field"
    assert f'"{name}"' in info.value.message
    assert mtype in info.value.message
    assert info.value.req == _expected_req(msg)


@pytest.mark.parametrize(("mtype", "name"), _fields(required=False))
def test_optional_field_may_be_absent(mtype: str, name: str) -> None:
    msg = _without(mtype, name)
    assert validate(msg) is msg


@pytest.mark.parametrize(
    ("mtype", "name"),
    [
        pytest.param(mtype, name, id=f"{mtype}-{name}")
        for mtype, fields in SCHEMAS.items()
        for name, _kind, _required, nullable in fields
        if nullable
    ],
)
def test_nullable_field_accepts_nil(mtype: str, name: str) -> None:
    msg = _with(mtype, **{name: None})
    assert validate(msg) is msg


@pytest.mark.parametrize(("mtype", "name", "value"), _wrong_type_cases())
def test_field_of_the_wrong_type_is_rejected(mtype: str, name: str, value: Any) -> None:
    msg = _with(mtype, **{name: value})
    with pytest.raises(BadField) as info:
        validate(msg)
    assert f'field "{name}"' in info.value.message
    assert info.value.req == _expected_req(msg)


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize(
    ("mtype", "name"),
    [("hello", "v"), ("event", "seq"), ("run.start", "parallelism"), ("status", "req")],
)
def test_bool_is_not_an_int(mtype: str, name: str, value: bool) -> None:
    with pytest.raises(BadField, match=f'"{name}" must be int, got bool'):
        validate(_with(mtype, **{name: value}))


def test_unlisted_fields_are_ignored_and_kept() -> None:
    msg = _with("event", future=b"\x00", nested={"deep": [1, 2]})
    assert validate(msg) == msg


@pytest.mark.parametrize("mtype", ["hello", "status", "ok", "error"])
@pytest.mark.parametrize("run", [5, "not a run id", None, ["r"]])
def test_run_is_only_checked_where_the_schema_has_it(mtype: str, run: Any) -> None:
    msg = _with(mtype, run=run)
    assert validate(msg) is msg


# -- request ids on errors ---------------------------------------------------------


@pytest.mark.parametrize("broken", ["wrong-type", "missing"])
@pytest.mark.parametrize("mtype", sorted(REQUESTS - {"status", "shutdown"}))
def test_bad_request_error_carries_its_req(mtype: str, broken: str) -> None:
    name = next(f[0] for f in SCHEMAS[mtype] if f[0] != "req")
    msg = _with(mtype, req=77, **{name: b"wrong"})
    if broken == "missing":
        del msg[name]
    with pytest.raises(BadField) as info:
        validate(msg)
    assert info.value.req == 77


@pytest.mark.parametrize("req", ["77", True, 7.0, None, [77]])
def test_request_with_a_bad_req_has_none(req: Any) -> None:
    with pytest.raises(BadField) as info:
        validate(_with("run.start", req=req))
    assert info.value.req is None


@pytest.mark.parametrize(
    "msg",
    [
        {"t": "event", "req": 5, "run": "r1", "seq": 0, "time": "x", "type": "y"},
        {"t": "event", "req": 5},
        {"t": "hello", "req": 5, "v": "1"},
        {"t": "ok", "req": 5, "data": []},
        {"t": "ack", "req": 5, "run": "r1"},
    ],
    ids=["event-bad-seq", "event-empty", "hello", "ok", "ack"],
)
def test_non_request_error_never_carries_req(msg: Message) -> None:
    # An error with req is a reply that keeps the connection open; a broken
    # event must close it instead, or its loss would go unnoticed.
    with pytest.raises(BadField) as info:
        validate(msg)
    assert info.value.req is None


def test_req_reaches_the_error_through_the_decoder() -> None:
    bad = _with("run.complete", req=12, status="running")
    with pytest.raises(BadField) as info:
        FrameDecoder().feed(encode(VALID["hello"]) + encode(bad))
    assert info.value.req == 12
    assert info.value.messages == [VALID["hello"]]


# -- run ids, seq, event type, status --------------------------------------------

BAD_RUN_IDS = [
    "",
    "_run",
    "-run",
    ".run",
    "run 1",
    "run/1",
    "run\n",
    "run\x00",
    "rün",
    "a" * 129,
    "run:1",
]
GOOD_RUN_IDS = ["a", "7", "A.b-c_9", "run_20260120_143052_a1b2", "a" * 128]
RUN_TYPES = [mtype for mtype, fields in SCHEMAS.items() if any(f[0] == "run" for f in fields)]


@pytest.mark.parametrize("mtype", RUN_TYPES)
@pytest.mark.parametrize("run", BAD_RUN_IDS)
def test_bad_run_id_is_rejected(mtype: str, run: str) -> None:
    msg = _with(mtype, run=run)
    with pytest.raises(BadField, match='field "run"') as info:
        validate(msg)
    assert info.value.req == _expected_req(msg)
    assert len(info.value.message) < 250


@pytest.mark.parametrize("mtype", RUN_TYPES)
@pytest.mark.parametrize("run", GOOD_RUN_IDS)
def test_good_run_id_is_accepted(mtype: str, run: str) -> None:
    assert validate(_with(mtype, run=run))["run"] == run


@pytest.mark.parametrize("seq", [0, -1, -(2**63), MAX_SEQ + 1, 2**64 - 1])
def test_event_seq_out_of_range_is_rejected(seq: int) -> None:
    msg = _with("event", seq=seq)
    with pytest.raises(BadField, match='field "seq"'):
        validate(msg)
    # The same through the wire, where 2**64-1 is a valid msgpack uint64.
    with pytest.raises(BadField):
        FrameDecoder().feed(encode(msg))


@pytest.mark.parametrize(
    ("mtype", "name", "value"),
    [
        ("event", "pr", 2**64 - 1),
        ("event", "pr", MAX_SEQ + 1),
        ("event", "task", -1),
        ("run.start", "parallelism", 2**64 - 1),
        ("run.start", "total_units", -1),
        ("run.complete", "completed_units", 2**63),
        ("run.complete", "failed_units", -(2**63)),
        ("run.complete", "blocked_units", 2**64 - 1),
    ],
)
def test_an_integer_the_store_cannot_hold_is_a_bad_field(mtype: str, name: str, value: int) -> None:
    msg = _with(mtype, **{name: value})
    with pytest.raises(BadField, match=f'field "{name}" must be between') as info:
        validate(msg)
    assert info.value.req == _expected_req(msg)  # a reply for a request, fatal for an event
    with pytest.raises(BadField):
        FrameDecoder().feed(encode(msg))  # a valid msgpack int on the wire all the same


def test_an_events_item_with_an_integer_the_store_cannot_hold_is_a_bad_field() -> None:
    item = [1, "2026-01-20T14:30:52.123Z", "unit.started", None, None, 2**64 - 1, None, None]
    with pytest.raises(BadField, match='item 0: field "pr" must be between 0 and 2'):
        validate({"t": "events", "run": "run_1", "items": [item]})


@pytest.mark.parametrize("seq", [1, 2, MAX_SEQ])
def test_event_seq_in_range_is_accepted(seq: int) -> None:
    assert validate(_with("event", seq=seq))["seq"] == seq


@pytest.mark.parametrize("etype", ["", "x" * 129])
def test_event_type_length_is_limited(etype: str) -> None:
    with pytest.raises(BadField, match='field "type"'):
        validate(_with("event", type=etype))


def test_event_type_of_128_characters_is_accepted() -> None:
    assert validate(_with("event", type="é" * 128))


@pytest.mark.parametrize("status", ["running", "", "Completed", "done", "x" * 100_000])
def test_run_complete_with_a_bad_status_is_rejected(status: str) -> None:
    with pytest.raises(BadField, match='field "status"') as info:
        validate(_with("run.complete", status=status))
    assert info.value.req == VALID["run.complete"]["req"]
    assert len(info.value.message) < 250


@pytest.mark.parametrize("status", FINAL_STATUSES)
def test_run_complete_with_a_final_status_is_accepted(status: str) -> None:
    assert validate(_with("run.complete", status=status))["status"] == status


def test_a_stored_run_is_running_or_has_a_final_status() -> None:
    assert ("running", *FINAL_STATUSES) == RUN_STATUSES


# -- random maps ---------------------------------------------------------------------

ALL_FIELDS = sorted({name for fields in SCHEMAS.values() for name, *_ in fields} | {"t"})
ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.sampled_from([*SCHEMAS, *RUN_STATUSES, "run_1"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def near_valid_maps(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message with some fields replaced, removed or added at random."""
    msg = dict(VALID[draw(st.sampled_from(sorted(VALID)))])
    for name in draw(st.lists(st.sampled_from(ALL_FIELDS), max_size=4)):
        if draw(st.booleans()):
            msg.pop(name, None)
        else:
            msg[name] = draw(ANY_VALUE)
    return msg


@settings(max_examples=400, deadline=None)
@given(msg=near_valid_maps())
def test_near_valid_maps_are_accepted_or_rejected_cleanly(msg: dict[str, Any]) -> None:
    decoder = FrameDecoder()
    try:
        out = decoder.feed(encode(msg))
    except ProtocolError as exc:
        assert len(exc.message) < 300
        assert exc.req is None or (msg.get("t") in REQUESTS and exc.req == msg.get("req"))
    else:
        assert out == [msg]


# -- payload_json --------------------------------------------------------------------


def test_payload_none_is_stored_as_null() -> None:
    assert payload_json(None) is None


def test_payload_is_compact_json() -> None:
    assert payload_json({"a": [1, 2.5, None, True], "b": {}}) == '{"a":[1,2.5,null,true],"b":{}}'


def test_payload_keeps_unicode_and_nul_intact() -> None:
    text = "héllo wörld ✓ 日本 🐍 \x00 nul \u2028 \t"
    stored = payload_json({"s": text, text: 1})
    assert stored is not None
    assert "héllo" in stored and "🐍" in stored and "日本" in stored  # not \u-escaped
    assert json.loads(stored) == {"s": text, text: 1}


@pytest.mark.parametrize(
    "payload",
    [
        {"b": b"bytes"},
        {"b": bytearray(b"x")},
        {b"bin-key": 1},
        {"ext": msgpack.ExtType(5, b"x")},
        {"ts": msgpack.Timestamp(0)},
        {"set": {1}},
    ],
    ids=["bytes", "bytearray", "bin-key", "ext", "timestamp", "set"],
)
def test_payload_json_cannot_hold_is_rejected(payload: Any) -> None:
    with pytest.raises(BadField) as info:
        payload_json(payload)
    assert info.value.code == "bad_field"
    assert "payload" in info.value.message


def test_payload_non_finite_floats_are_stored_as_null() -> None:
    # JSON has no spelling for them; refusing them would close the connection
    # over a value that carries no information anyway.
    payload = {"nan": math.nan, "inf": math.inf, "list": [-math.inf, 1.5]}
    assert payload_json(payload) == '{"nan":null,"inf":null,"list":[null,1.5]}'


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_payload_may_nest_254_levels() -> None:
    assert payload_json({"deep": _nested(253)}) is not None
    with pytest.raises(BadField):
        payload_json({"deep": _nested(254)})


@pytest.mark.parametrize("container", ["list", "map"])
def test_payload_nested_too_deep_is_rejected(container: str) -> None:
    payload: Any = 0
    for _ in range(100_000):  # iteratively: building it must not recurse
        payload = [payload] if container == "list" else {"k": payload}
    with pytest.raises(BadField):
        payload_json({"deep": payload})


def test_payload_from_the_wire_with_bytes_is_rejected() -> None:
    # The decoder accepts the frame (payload is a map); storing it is refused.
    event = _with("event", payload={"blob": b"\x00\x01"})
    (decoded,) = FrameDecoder().feed(encode(event))
    with pytest.raises(BadField):
        payload_json(decoded["payload"])


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=150, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5))
def test_payload_roundtrips_through_the_wire_and_json(payload: dict[str, Any]) -> None:
    (event,) = FrameDecoder().feed(encode(_with("event", payload=payload)))
    stored = payload_json(event["payload"])
    assert stored is not None
    assert json.loads(stored) == payload


# -- "events": many events of one run in one frame --------------------------------


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("not a list", "must be an array of 8 fields"),
        ([1, "t", "x"], "must be an array of 8 fields"),
        ([0, "t", "x", None, None, None, None, None], '"seq" must be between'),
        (["1", "t", "x", None, None, None, None, None], '"seq" must be int'),
        ([True, "t", "x", None, None, None, None, None], '"seq" must be int'),
        ([1, 5, "x", None, None, None, None, None], '"time" must be str'),
        ([1, "t", "", None, None, None, None, None], '"type" must be 1-128'),
        ([1, "t", "x", 7, None, None, None, None], '"unit" must be str'),
        ([1, "t", "x", None, "2", None, None, None], '"task" must be int'),
        ([1, "t", "x", None, None, 1.5, None, None], '"pr" must be int'),
        ([1, "t", "x", None, None, None, [1], None], '"payload" must be dict'),
        ([1, "t", "x", None, None, None, None, 3], '"error" must be str'),
    ],
)
def test_events_items_are_checked_one_by_one(item: Any, says: str) -> None:
    good = VALID["events"]["items"][0]
    msg = {"t": "events", "run": "run_a", "items": [good, item]}
    with pytest.raises(BadField) as info:
        validate(msg)
    assert "item 1" in info.value.message and says in info.value.message
    assert info.value.req is None  # events are not requests: a bad one ends the connection


def test_events_needs_at_least_one_item() -> None:
    with pytest.raises(BadField, match="at least one"):
        validate({"t": "events", "run": "run_a", "items": []})
