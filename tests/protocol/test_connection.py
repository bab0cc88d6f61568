"""The sans-IO connection objects, fed bytes: handshake, message rules,
reply matching and the error policy of PROTOCOL.md sections 3-6."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol
from protocol.connection import (
    HALF_FRAME_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    Ack,
    ClientConnection,
    ClientEvent,
    Refused,
    Reply,
    ServerConnection,
    State,
    Welcome,
)
from protocol.errors import BadField, HandshakeRequired, TruncatedFrame, UnknownType

HELLO = {"t": "hello", "v": 1, "client": "test 1.0", "pid": 42}
WELCOME = {"t": "welcome", "v": 1, "daemon": "0.1.0", "web": None}
NOW = "2026-01-20T14:30:52.123Z"


def frames(*messages: dict[str, Any]) -> bytes:
    return b"".join(protocol.encode(m) for m in messages)


def sent(conn: ServerConnection | ClientConnection) -> list[dict[str, Any]]:
    """What the connection wrote for its peer, decoded."""
    return protocol.FrameDecoder().feed(conn.data_to_send())


def status(req: int) -> dict[str, Any]:
    return {"t": "status", "req": req}


def event(seq: int) -> dict[str, Any]:
    return {"t": "event", "run": "run_a", "seq": seq, "time": NOW, "type": "unit.started"}


def drive(conn: ServerConnection, *chunks: bytes) -> list[str]:
    """Feed ``chunks`` as an owner does, answering each request with ``ok``.

    Returns what went to the peer, as short labels in order.
    """
    for chunk in chunks:
        conn.receive_data(chunk)
        while messages := conn.next_messages():
            for msg in messages:
                if "req" in msg:
                    conn.send({"t": "ok", "req": msg["req"]})
    return [_label(m) for m in sent(conn)]


def _label(msg: dict[str, Any]) -> str:
    if msg["t"] == "error":
        return f"error {msg['code']}" + (f" {msg['req']}" if "req" in msg else "")
    return f"{msg['t']} {msg['req']}" if "req" in msg else msg["t"]


def server() -> ServerConnection:
    return ServerConnection("0.1.0")


# -- the server's handshake -----------------------------------------------------


def test_a_hello_gets_a_welcome_with_the_web_url_of_that_moment() -> None:
    web: list[str | None] = [None]
    conn = ServerConnection("0.1.0", lambda: web[0])
    web[0] = "http://127.0.0.1:8080"  # the web server came up after the connection
    assert not conn.greeted
    conn.receive_data(frames(HELLO))
    assert conn.next_messages() == []  # the hello is the connection's business
    assert sent(conn) == [
        {"t": "welcome", "v": 1, "daemon": "0.1.0", "web": "http://127.0.0.1:8080"}
    ]
    assert conn.state is State.OPEN and conn.greeted
    assert conn.peer == "test 1.0[42]"


def test_a_hello_of_another_version_is_refused_and_closes() -> None:
    conn = server()
    conn.receive_data(frames({**HELLO, "v": 2}, status(1)))
    assert conn.next_messages() == []
    [error] = sent(conn)
    assert error["code"] == "version_unsupported" and "req" not in error
    assert "version 2" in error["message"] and "version 1" in error["message"]
    assert conn.state is State.CLOSED
    assert conn.failure is not None and conn.failure.code == "version_unsupported"
    conn.receive_data(frames(status(2)))  # nothing is read any more
    assert conn.next_messages() == [] and sent(conn) == []


def test_a_request_before_hello_is_handshake_required() -> None:
    conn = server()
    assert drive(conn, frames(status(1), HELLO)) == ["error handshake_required"]
    assert conn.state is State.CLOSED


def test_a_request_with_a_bad_field_before_hello_is_fatal_not_a_reply() -> None:
    conn = server()
    bad = {"t": "run.graph", "req": 1, "run": "run_a"}  # no nodes
    assert drive(conn, frames(bad)) == ["error bad_field"]
    assert conn.state is State.CLOSED


def test_a_second_hello_is_unknown_type() -> None:
    conn = server()
    assert drive(conn, frames(HELLO, status(1), HELLO, status(2))) == [
        "welcome",
        "ok 1",
        "error unknown_type",
    ]
    assert conn.state is State.CLOSED


@pytest.mark.parametrize(
    "message",
    [WELCOME, {"t": "ok", "req": 1}, {"t": "ack", "run": "run_a", "seq": 1}],
    ids=["welcome", "ok", "ack"],
)
def test_types_only_the_daemon_sends_are_unknown_type(message: dict[str, Any]) -> None:
    conn = server()
    assert drive(conn, frames(HELLO, message)) == ["welcome", "error unknown_type"]
    assert conn.failure is not None and f'"{message["t"]}"' in conn.failure.message


# -- the server's error policy ----------------------------------------------------


def test_garbage_after_the_handshake_is_an_error_frame_and_a_close() -> None:
    conn = server()
    garbage = b"\x00\x00\x00\x03\xc1\xc1\xc1"  # 0xc1 is never msgpack
    assert drive(conn, frames(HELLO, status(1)) + garbage + frames(status(2))) == [
        "welcome",
        "ok 1",  # what came whole before the garbage is still answered, first
        "error not_msgpack",
    ]
    assert conn.state is State.CLOSED


def test_a_frame_over_the_limit_is_fatal_from_its_header() -> None:
    conn = server()
    header = (protocol.MAX_FRAME + 1).to_bytes(4, "big")
    assert drive(conn, frames(HELLO) + header) == ["welcome", "error frame_too_large"]


def test_a_request_with_a_bad_field_is_refused_by_a_reply_and_the_rest_goes_on() -> None:
    conn = server()
    bad = {"t": "run.graph", "req": 2, "run": "run_a"}
    assert drive(conn, frames(HELLO, status(1), bad, status(3))) == [
        "welcome",
        "ok 1",
        "error bad_field 2",
        "ok 3",
    ]
    assert conn.state is State.OPEN


def test_bytes_arriving_behind_an_unanswered_bad_request_wait_their_turn() -> None:
    conn = server()
    bad = {"t": "run.graph", "req": 2, "run": "run_a"}
    conn.receive_data(frames(HELLO, status(1), bad))
    conn.receive_data(frames(status(3)))  # before the owner drained the first read
    order: list[str | int] = []
    while messages := conn.next_messages():
        order += [_label(m) for m in sent(conn)]  # queued ahead of these messages
        order += [m["req"] for m in messages]
    assert order == ["welcome", 1, "error bad_field 2", 3]


def test_a_graph_json_cannot_hold_is_refused_by_a_reply() -> None:
    conn = server()
    graph = {"t": "run.graph", "req": 2, "run": "run_a", "nodes": [b"x"], "edges": [], "levels": []}
    assert drive(conn, frames(HELLO, graph, status(3))) == [
        "welcome",
        "error bad_field 2",
        "ok 3",
    ]


def test_an_event_with_a_bad_field_is_fatal() -> None:
    conn = server()
    assert drive(conn, frames(HELLO, {**event(1), "seq": 0})) == ["welcome", "error bad_field"]


def test_events_are_handed_out_with_their_frame_body() -> None:
    conn = server()
    conn.receive_data(frames(HELLO, event(1), event(2)))
    messages = conn.next_messages()
    assert [m["seq"] for m in messages] == [1, 2]
    assert protocol.unpack_body(messages[0][protocol.BODY]) == event(1)


def test_the_owner_may_end_the_connection_and_still_answer() -> None:
    conn = server()
    drive(conn, frames(HELLO, event(1)))
    conn.fail("internal", "could not store")
    conn.send({"t": "ack", "run": "run_a", "seq": 1})
    assert [_label(m) for m in sent(conn)] == ["error internal", "ack"]
    assert conn.state is State.CLOSED and conn.failure is None  # the owner's, not the protocol's


def test_the_end_of_the_stream_inside_a_frame_is_truncated() -> None:
    conn = server()
    drive(conn, frames(HELLO) + frames(status(1))[:5])
    assert conn.mid_frame
    with pytest.raises(TruncatedFrame):
        conn.receive_data(b"")
    clean = server()
    drive(clean, frames(HELLO))
    clean.receive_data(b"")
    assert clean.state is State.CLOSED


def test_the_timeout_names_the_limit_that_ran_out() -> None:
    silent = server()
    silent.time_out()
    [error] = sent(silent)
    assert error["code"] == "timeout" and f"{HANDSHAKE_TIMEOUT:g} s" in error["message"]
    assert "hello" in error["message"]
    stalled = server()
    drive(stalled, frames(HELLO) + b"\x00\x00")
    stalled.time_out()
    [error] = sent(stalled)
    assert f"{HALF_FRAME_TIMEOUT:g} s" in error["message"] and "incomplete" in error["message"]
    assert stalled.state is State.CLOSED


CONVERSATION = frames(
    HELLO,
    status(1),
    event(1),
    {"t": "run.graph", "req": 2, "run": "run_a"},
    {"t": "events", "run": "run_a", "items": [[2, NOW, "x", None, None, None, None, None]]},
    status(3),
    HELLO,
)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(CONVERSATION)), max_size=12))
def test_any_chunking_gives_the_same_conversation(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(CONVERSATION)]
    chunks = [CONVERSATION[a:b] for a, b in itertools.pairwise(points) if b > a]
    assert drive(server(), *chunks) == [
        "welcome",
        "ok 1",
        "error bad_field 2",
        "ok 3",
        "error unknown_type",
    ]


# -- the client's end ---------------------------------------------------------------


def greeted_client() -> ClientConnection:
    conn = ClientConnection("choo 0.1.0", 42)
    conn.data_to_send()
    assert conn.receive_data(frames(WELCOME)) == [Welcome(WELCOME)]
    return conn


def test_the_client_says_hello_first() -> None:
    conn = ClientConnection("choo 0.1.0", 42)
    assert sent(conn) == [{"t": "hello", "v": 1, "client": "choo 0.1.0", "pid": 42}]
    assert conn.state is State.HANDSHAKE
    assert conn.receive_data(frames(WELCOME)) == [Welcome(WELCOME)]
    assert conn.state is State.OPEN and conn.welcome == WELCOME


def test_a_refusal_during_the_handshake_is_an_event() -> None:
    conn = ClientConnection("choo", 1)
    busy = {"t": "error", "code": "busy", "message": "all 256 connections are in use"}
    assert conn.receive_data(frames(busy)) == [Refused("busy", "all 256 connections are in use")]
    assert conn.state is State.HANDSHAKE


def test_a_welcome_of_another_version_is_refused() -> None:
    conn = ClientConnection("choo", 1)
    [refused] = conn.receive_data(frames({**WELCOME, "v": 2}))
    assert isinstance(refused, Refused) and refused.code == "version_unsupported"
    assert conn.state is State.HANDSHAKE


def test_anything_but_welcome_first_breaks_the_handshake() -> None:
    conn = ClientConnection("choo", 1)
    with pytest.raises(HandshakeRequired):
        conn.receive_data(frames({"t": "ack", "run": "run_a", "seq": 1}))


def test_a_reply_is_matched_to_its_request_once() -> None:
    conn = greeted_client()
    conn.expect_reply(1)
    conn.expect_reply(2)
    events = conn.receive_data(
        frames(
            {"t": "error", "req": 2, "code": "unknown_run", "message": "no run x"},
            {"t": "ack", "run": "run_a", "seq": 5},
            {"t": "ok", "req": 1, "data": {"created": True}},
        )
    )
    assert events == [
        Reply(2, None, "unknown_run", "no run x"),
        Ack("run_a", 5),
        Reply(1, {"created": True}),
    ]
    with pytest.raises(BadField, match="req"):
        conn.receive_data(frames({"t": "ok", "req": 1}))  # answered already


def test_a_reply_to_a_request_never_sent_breaks_the_connection() -> None:
    conn = greeted_client()
    conn.expect_reply(1)
    with pytest.raises(BadField, match="req"):
        conn.receive_data(frames({"t": "ok", "req": 7}))


def test_an_ok_without_data_is_an_empty_map() -> None:
    conn = greeted_client()
    conn.expect_reply(1)
    assert conn.receive_data(frames({"t": "ok", "req": 1})) == [Reply(1, {})]


def test_a_fatal_error_is_an_event_and_acks_still_follow() -> None:
    conn = greeted_client()
    events = conn.receive_data(
        frames(
            {"t": "error", "code": "bad_field", "message": "bad seq", "req": None},
            {"t": "ack", "run": "run_a", "seq": 3},
        )
    )
    assert events == [Refused("bad_field", "bad seq"), Ack("run_a", 3)]


@pytest.mark.parametrize("message", [HELLO, WELCOME, event(1)], ids=["hello", "welcome", "event"])
def test_the_client_refuses_what_a_daemon_does_not_send(message: dict[str, Any]) -> None:
    conn = greeted_client()
    with pytest.raises(UnknownType):
        conn.receive_data(frames(message))


def test_the_client_sees_a_stream_cut_inside_a_frame() -> None:
    conn = greeted_client()
    conn.receive_data(frames({"t": "ack", "run": "run_a", "seq": 1})[:3])
    with pytest.raises(TruncatedFrame):
        conn.receive_data(b"")


REPLIES = frames(
    WELCOME,
    {"t": "ack", "run": "run_a", "seq": 1},
    {"t": "ok", "req": 1, "data": {"run": "run_a", "created": True}},
    {"t": "error", "req": 2, "code": "unknown_run", "message": "no run b"},
    {"t": "ack", "run": "run_a", "seq": 9},
)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(REPLIES)), max_size=12))
def test_the_client_hears_the_same_in_any_chunking(cuts: list[int]) -> None:
    conn = ClientConnection("choo", 1)
    conn.expect_reply(1)
    conn.expect_reply(2)
    points = [0, *sorted(cuts), len(REPLIES)]
    heard: list[ClientEvent] = []
    for a, b in itertools.pairwise(points):
        if b > a:
            heard += conn.receive_data(REPLIES[a:b])
    assert heard == [
        Welcome(WELCOME),
        Ack("run_a", 1),
        Reply(1, {"run": "run_a", "created": True}),
        Reply(2, None, "unknown_run", "no run b"),
        Ack("run_a", 9),
    ]
