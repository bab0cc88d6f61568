"""Framing: valid streams in any chunking, hostile bytes, poisoning, limits."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol
from protocol import (
    FINAL_STATUSES,
    MAX_FRAME,
    SCHEMAS,
    BadField,
    EmptyFrame,
    FrameDecoder,
    FrameTooLarge,
    Message,
    NotAMap,
    NotMsgpack,
    ProtocolError,
    TruncatedFrame,
    UnknownType,
    encode,
    encode_many,
)
from protocol.messages import INT_RANGES, MAX_SEQ, MAX_STORED_INT, RUN_ID

# -- strategies ---------------------------------------------------------------

MSGPACK_INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
RUN_IDS = st.from_regex(RUN_ID, fullmatch=True)

EVENT_ITEMS = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=MAX_SEQ),
        st.text(max_size=30),
        st.text(min_size=1, max_size=128),
        st.none() | st.text(max_size=10),
        st.none() | st.integers(min_value=0, max_value=MAX_STORED_INT),
        st.none() | st.integers(min_value=0, max_value=MAX_STORED_INT),
        st.none() | st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4),
        st.none() | st.text(max_size=10),
    ).map(list),
    min_size=1,
    max_size=5,
)

# Fields whose valid values are narrower than their kind.
SPECIAL: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    **{key: st.integers(min_value=low, max_value=high) for key, (low, high) in INT_RANGES.items()},
    ("events", "items"): EVENT_ITEMS,
    ("event", "type"): st.text(min_size=1, max_size=128),
    ("run.complete", "status"): st.sampled_from(FINAL_STATUSES),
}
KINDS: dict[str, st.SearchStrategy[Any]] = {
    "int": MSGPACK_INTS,
    "str": st.text(max_size=30),
    "bool": st.booleans(),
    "map": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4),
    "list": st.lists(JSON_VALUES, max_size=4),
}


def field_strategy(mtype: str, name: str, kind: str) -> st.SearchStrategy[Any]:
    if (mtype, name) in SPECIAL:
        return SPECIAL[mtype, name]
    if name == "run":
        return RUN_IDS
    return KINDS[kind]


@st.composite
def valid_message(draw: st.DrawFn, mtype: str) -> Message:
    msg: Message = {"t": mtype}
    for name, kind, required, nullable in SCHEMAS[mtype]:
        if not required and draw(st.booleans()):
            continue
        if nullable and draw(st.booleans()):
            msg[name] = None
        else:
            msg[name] = draw(field_strategy(mtype, name, kind))
    return msg


MESSAGES = st.sampled_from(sorted(SCHEMAS)).flatmap(valid_message)


def chunked(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """Cut ``data`` into pieces whose lengths cycle through ``sizes``."""
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        yield data[pos : pos + size]
        pos += size
        i += 1


def feed_all(decoder: FrameDecoder, pieces: Iterator[bytes]) -> list[Message]:
    out: list[Message] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    return out


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


HELLO: Message = {"t": "hello", "v": 1, "client": "test", "pid": 42}
STATUS: Message = {"t": "status", "req": 1}


# -- valid streams ------------------------------------------------------------


@pytest.mark.parametrize("mtype", sorted(SCHEMAS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_message_type_roundtrips(mtype: str, data: st.DataObject) -> None:
    messages = data.draw(st.lists(valid_message(mtype), min_size=1, max_size=3))
    sizes = data.draw(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=4))
    decoder = FrameDecoder()
    assert feed_all(decoder, chunked(encode_many(messages), sizes)) == messages
    decoder.eof()


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(MESSAGES, max_size=12),
    sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=8),
)
def test_random_valid_stream_decodes_in_order_in_any_chunking(
    messages: list[Message], sizes: list[int]
) -> None:
    decoder = FrameDecoder()
    assert feed_all(decoder, chunked(encode_many(messages), sizes)) == messages
    assert decoder.pending == 0
    decoder.eof()


@settings(max_examples=40, deadline=None)
@given(messages=st.lists(MESSAGES, min_size=1, max_size=6))
def test_random_valid_stream_decodes_one_byte_at_a_time(messages: list[Message]) -> None:
    decoder = FrameDecoder()
    assert feed_all(decoder, chunked(encode_many(messages), [1])) == messages
    decoder.eof()


def test_whole_stream_in_one_feed() -> None:
    messages = [HELLO, STATUS, {"t": "ack", "run": "r1", "seq": 3}]
    assert FrameDecoder().feed(encode_many(messages)) == messages


def test_frame_is_big_endian_length_then_msgpack_map() -> None:
    data = encode(STATUS)
    body = msgpack.packb(STATUS, use_bin_type=True)
    assert data == len(body).to_bytes(4, "big") + body


def test_hex_dump_in_protocol_md_is_what_encode_produces() -> None:
    text = (Path(protocol.__file__).parent / "PROTOCOL.md").read_text(encoding="utf-8")
    lines = re.findall(r"^[0-9a-f]{8}  ((?:[0-9a-f]{2} )+)", text, flags=re.MULTILINE)
    assert lines, "no hex dump found in PROTOCOL.md"
    dumped = bytes.fromhex("".join(lines))
    assert dumped == encode({"t": "hello", "v": 1, "client": "choo 0.1.0", "pid": 4242})


def test_encode_many_is_concatenation() -> None:
    assert encode_many([HELLO, STATUS]) == encode(HELLO) + encode(STATUS)
    assert encode_many([]) == b""


def test_empty_feed_returns_nothing() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    decoder.eof()


def test_partial_frame_waits_and_counts_pending() -> None:
    data = encode(HELLO)
    decoder = FrameDecoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.pending == len(data) - 1
    assert decoder.feed(data[-1:]) == [HELLO]
    assert decoder.pending == 0


def _padded_status(body_size: int) -> Message:
    """A status request whose msgpack body is exactly ``body_size`` bytes."""
    msg: Message = {"t": "status", "req": 1, "pad": ""}
    overhead = len(msgpack.packb(msg, use_bin_type=True)) - 1  # minus the fixstr header
    msg["pad"] = "x" * (body_size - overhead - 5)  # str32 header is 5 bytes
    assert len(msgpack.packb(msg, use_bin_type=True)) == body_size
    return msg


def test_frame_of_exactly_max_frame_bytes_is_accepted() -> None:
    msg = _padded_status(MAX_FRAME)
    data = encode(msg)
    assert len(data) == 4 + MAX_FRAME
    assert feed_all(FrameDecoder(), chunked(data, [65536])) == [msg]


def test_encode_refuses_a_message_over_max_frame() -> None:
    with pytest.raises(FrameTooLarge) as info:
        encode(_padded_status(MAX_FRAME + 1))
    assert info.value.code == "frame_too_large"


# -- hostile framing ----------------------------------------------------------


def test_zero_length_frame_is_rejected() -> None:
    with pytest.raises(EmptyFrame) as info:
        FrameDecoder().feed(b"\x00\x00\x00\x00")
    assert info.value.code == "bad_length"


@pytest.mark.parametrize("size", [MAX_FRAME + 1, 2**31, 2**32 - 1])
def test_oversized_length_is_rejected_from_the_header_alone(size: int) -> None:
    decoder = FrameDecoder()
    header = struct.pack(">I", size)
    # Nothing is decided before the header is whole...
    for byte in header[:3]:
        assert decoder.feed(bytes([byte])) == []
    # ...and the fourth byte is enough: no waiting for a body.
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(header[3:])
    assert info.value.code == "frame_too_large"
    assert str(size) in info.value.message


def test_max_frame_is_configurable() -> None:
    decoder = FrameDecoder(max_frame=16)
    assert decoder.feed(struct.pack(">I", 16)) == []
    with pytest.raises(FrameTooLarge):
        FrameDecoder(max_frame=16).feed(struct.pack(">I", 17))


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",  # inside the header
        b"\x00\x00\x00",
        b"\x00\x00\x00\x05",  # header, no body
        b"\x00\x00\x00\x05\x81\xa1",  # part of the body
    ],
)
def test_stream_ending_inside_a_frame_is_truncated(data: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(data) == []
    with pytest.raises(TruncatedFrame) as info:
        decoder.eof()
    assert info.value.code == "truncated"


def test_stream_ending_after_whole_frames_and_a_partial_one_is_truncated() -> None:
    decoder = FrameDecoder()
    data = encode(HELLO) + encode(STATUS)
    assert decoder.feed(data[:-2]) == [HELLO]
    with pytest.raises(TruncatedFrame):
        decoder.eof()


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # the one byte msgpack never uses
        b"\x92\x01",  # an array that promises two items and holds one
        msgpack.packb(STATUS) + b"\x00",  # a map, then trailing data
        b"\x81\xa1t\xa2\xff\xfe",  # "t" whose string is not UTF-8
        msgpack.packb({1: "int key"}),  # keys must be strings
        msgpack.packb({"t": "status", "req": 1, "x": {(1, 2): 3}}),  # nested array key
        b"\xdd\xff\xff\xff\xff",  # array32 declaring 4 billion items
        b"\x91" * 5000 + b"\xc0",  # nesting deeper than the unpacker allows
    ],
    ids=[
        "unused-byte",
        "short-array",
        "trailing-data",
        "bad-utf8",
        "int-key",
        "array-key",
        "huge-array",
        "too-deep",
    ],
)
def test_body_that_is_not_one_msgpack_value_is_rejected(body: bytes) -> None:
    with pytest.raises(NotMsgpack) as info:
        FrameDecoder().feed(frame(body))
    assert info.value.code == "not_msgpack"


@pytest.mark.parametrize(
    "value", [7, -1, [1, 2], ["t", "status"], "status", None, True, 1.5, b"\x01"]
)
def test_msgpack_value_that_is_not_a_map_is_rejected(value: Any) -> None:
    with pytest.raises(NotAMap) as info:
        FrameDecoder().feed(frame(msgpack.packb(value, use_bin_type=True)))
    assert info.value.code == "not_a_map"


@pytest.mark.parametrize(
    "msg",
    [{}, {"req": 1}, {"t": "nope", "req": 1}, {"t": 1}, {b"t": "status", "req": 1}],
    ids=["empty", "no-t", "unknown-t", "int-t", "bin-key-t"],
)
def test_map_without_a_known_type_is_rejected(msg: dict[Any, Any]) -> None:
    with pytest.raises(UnknownType) as info:
        FrameDecoder().feed(frame(msgpack.packb(msg, use_bin_type=True)))
    assert info.value.code == "unknown_type"


# -- errors carry what came before, and poison the decoder ---------------------


def test_messages_before_a_bad_frame_travel_on_the_error() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode(HELLO)) == [HELLO]
    ack = {"t": "ack", "run": "r1", "seq": 1}
    with pytest.raises(NotAMap) as info:
        decoder.feed(encode(STATUS) + encode(ack) + frame(msgpack.packb(5)) + encode(STATUS))
    # Only this feed's messages: HELLO was already returned by the first feed.
    assert info.value.messages == [STATUS, ack]


def test_messages_before_a_bad_header_travel_on_the_error() -> None:
    with pytest.raises(FrameTooLarge) as info:
        FrameDecoder().feed(encode(HELLO) + struct.pack(">I", MAX_FRAME + 1))
    assert info.value.messages == [HELLO]


def test_error_has_no_messages_when_the_bad_frame_comes_first() -> None:
    with pytest.raises(EmptyFrame) as info:
        FrameDecoder().feed(bytes(4) + encode(HELLO))
    assert info.value.messages == []


def test_decoder_stays_poisoned_after_an_error() -> None:
    decoder = FrameDecoder()
    with pytest.raises(NotMsgpack) as first:
        decoder.feed(encode(HELLO) + frame(b"\xc1"))
    assert first.value.messages == [HELLO]
    for _ in range(2):
        with pytest.raises(NotMsgpack) as again:
            decoder.feed(encode(STATUS))
        # Valid bytes after the error are not decoded, and the first error's
        # messages are not handed out a second time.
        assert again.value.messages == []
        assert again.value.message == first.value.message


def test_request_error_with_req_does_not_poison() -> None:
    # A bad request is answered with an error carrying its req and the
    # connection goes on, so the frames behind it must still decode.
    decoder = FrameDecoder()
    bad = {"t": "run.graph", "req": 9, "run": "r1", "nodes": 1, "edges": [], "levels": []}
    ack = {"t": "ack", "run": "r1", "seq": 2}
    with pytest.raises(BadField) as info:
        decoder.feed(encode(HELLO) + encode(bad) + encode(STATUS) + encode(ack)[:3])
    assert info.value.req == 9
    assert info.value.messages == [HELLO]
    assert decoder.feed(b"") == [STATUS]
    assert decoder.feed(encode(ack)[3:]) == [ack]
    decoder.eof()


def test_error_without_req_poisons_even_when_the_frame_was_whole() -> None:
    decoder = FrameDecoder()
    with pytest.raises(BadField) as info:
        decoder.feed(encode({"t": "event", "req": 9, "run": "r1"}) + encode(STATUS))
    assert info.value.req is None
    with pytest.raises(BadField):
        decoder.feed(b"")


# -- arbitrary bytes ------------------------------------------------------------


def _feed_expecting_only_protocol_errors(data: bytes, sizes: list[int]) -> None:
    decoder = FrameDecoder()
    try:
        for piece in chunked(data, sizes):
            for msg in decoder.feed(piece):
                assert msg["t"] in SCHEMAS
        decoder.eof()
    except ProtocolError as exc:
        assert len(exc.message) < 1000


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=600),
    sizes=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=6),
)
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes, sizes: list[int]) -> None:
    _feed_expecting_only_protocol_errors(data, sizes)


@settings(max_examples=300, deadline=None)
@given(
    bodies=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=4),
    sizes=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=6),
)
def test_arbitrary_bodies_in_valid_frames_raise_only_protocol_errors(
    bodies: list[bytes], sizes: list[int]
) -> None:
    # Correct length headers get random bytes past the framing layer, into
    # the msgpack decoder and the validator.
    _feed_expecting_only_protocol_errors(b"".join(frame(b) for b in bodies), sizes)


# -- events frames built from packed items -----------------------------------------


@given(items=EVENT_ITEMS, run=RUN_IDS)
@settings(max_examples=100, deadline=None)
def test_encode_events_matches_a_plain_events_message(items: list[list[Any]], run: str) -> None:
    packed = [protocol.pack_event_item(*item) for item in items]
    frame = protocol.encode_events(run, packed)
    assert frame == protocol.encode({"t": "events", "run": run, "items": items})
    assert FrameDecoder().feed(frame) == [{"t": "events", "run": run, "items": items}]


def test_encode_events_counts_past_fifteen_and_past_65535_items() -> None:
    for n in (15, 16, 70_000):
        packed = [protocol.pack_event_item(i + 1, "t", "x") for i in range(n)]
        [msg] = FrameDecoder().feed(protocol.encode_events("run_a", packed))
        assert len(msg["items"]) == n and msg["items"][-1][0] == n


def test_an_event_too_big_for_any_frame_is_refused_when_packed() -> None:
    with pytest.raises(FrameTooLarge, match="event 7"):
        protocol.pack_event_item(7, "t", "x", payload={"blob": "a" * protocol.MAX_FRAME})
