"""Length-prefixed msgpack framing, sans-IO.

A frame is a 4-byte unsigned big-endian length N followed by N bytes of
msgpack encoding one map, ``1 <= N <= MAX_FRAME``. ``encode`` turns a message
into a frame; ``FrameDecoder`` is fed bytes in any chunking and returns the
complete, validated messages.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from protocol.errors import (
    EmptyFrame,
    FrameTooLarge,
    NotAMap,
    NotMsgpack,
    ProtocolError,
    TruncatedFrame,
)
from protocol.messages import Message, validate

MAX_FRAME = 1024 * 1024
HEADER = struct.Struct(">I")
# One packer for every frame: ``msgpack.packb`` builds a new one per call,
# which costs more than packing an event. ``pack`` runs in C under the GIL
# with no callback into Python (there is no ``default``), so threads can share
# it, and it starts afresh after an object it cannot pack.
_pack = msgpack.Packer(use_bin_type=True).pack


def encode(message: Message) -> bytes:
    """Encode one message as a frame; raises FrameTooLarge over MAX_FRAME."""
    body = _pack(message)
    if len(body) > MAX_FRAME:
        raise FrameTooLarge(f"message of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return HEADER.pack(len(body)) + body


def encode_many(messages: list[Message]) -> bytes:
    """Encode several messages into one buffer, ready for a single write."""
    return b"".join(encode(m) for m in messages)


# Room left in a frame for the "events" envelope around its items.
MAX_EVENT_ITEM = MAX_FRAME - 512


def pack_event_item(
    seq: int,
    time: str,
    type: str,
    unit: str | None = None,
    task: int | None = None,
    pr: int | None = None,
    payload: dict[str, Any] | None = None,
    error: str | None = None,
) -> bytes:
    """One event as an item of an ``events`` message, packed on its own.

    Raises FrameTooLarge when the event could never fit in a frame.
    """
    item = _pack([seq, time, type, unit, task, pr, payload, error])
    if len(item) > MAX_EVENT_ITEM:
        raise FrameTooLarge(
            f"event {seq} packs to {len(item)} bytes, over the {MAX_EVENT_ITEM}-byte limit "
            "for one event"
        )
    return item


def encode_events(run: str, items: list[bytes]) -> bytes:
    """Frame packed items (from pack_event_item) of one run as an ``events`` message."""
    envelope = _pack({"t": "events", "run": run, "items": []})
    n = len(items)
    if n < 16:
        count = bytes([0x90 | n])
    elif n < 1 << 16:
        count = b"\xdc" + n.to_bytes(2, "big")
    else:
        count = b"\xdd" + n.to_bytes(4, "big")
    body = b"".join([envelope[:-1], count, *items])  # envelope ends with an empty array
    if len(body) > MAX_FRAME:
        raise FrameTooLarge(f"events frame of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return HEADER.pack(len(body)) + body


# Where a decoder made with ``keep_event_bodies`` leaves an event message's
# frame body (its msgpack bytes): the daemon hands the bytes on as they came.
BODY = "_body"


def unpack_body(body: bytes | bytearray) -> Any:
    """A frame body's msgpack value, not validated (for bytes validated once already)."""
    return msgpack.unpackb(body, raw=False, strict_map_key=True, timestamp=0)


def decode_body(body: bytes | bytearray) -> Message:
    """Decode and validate one frame body (without its length header)."""
    try:
        value: Any = unpack_body(body)
    except Exception as exc:  # msgpack raises several unrelated types
        raise NotMsgpack(f"frame body is not a single msgpack value: {exc}") from None
    if not isinstance(value, dict):
        raise NotAMap(f"frame holds a msgpack {type(value).__name__}, not a map")
    return validate(value)


_EVENT_TYPES = frozenset({"event", "events"})


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes, get the complete messages back.

    The messages that were complete and valid before a bad frame, in the
    same ``feed``, travel on the error as ``error.messages`` so that nothing
    a peer sent correctly is dropped.

    An error with ``req`` set (a whole frame holding a request with a bad
    field) is answerable: the bad frame is consumed and the connection may
    go on, so after replying call ``feed(b"")`` to decode the bytes already
    received behind it. Any other error poisons the decoder: the stream may
    have no trustworthy frame boundary any more, so every later ``feed``
    raises too.

    With ``keep_event_bodies``, each ``event`` and ``events`` message also
    holds its frame body under ``BODY``.
    """

    def __init__(self, max_frame: int = MAX_FRAME, *, keep_event_bodies: bool = False) -> None:
        self._buf = bytearray()
        self._max = max_frame
        self._error: ProtocolError | None = None
        self._keep = keep_event_bodies

    def feed(self, data: bytes) -> list[Message]:
        if self._error is not None:
            # A fresh error, so that the first one's ``messages`` are not
            # handed out (and acted on) a second time.
            raise type(self._error)(self._error.message)
        self._buf += data
        out: list[Message] = []
        try:
            self._drain(out)
        except ProtocolError as exc:
            exc.messages = out
            if exc.req is None:
                self._error = exc
            raise
        return out

    def _drain(self, out: list[Message]) -> None:
        buf = self._buf
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 4:
                (size,) = HEADER.unpack_from(buf, pos)
                if size == 0:
                    raise EmptyFrame("frame declares a length of 0 bytes (minimum is 1)")
                if size > self._max:
                    raise FrameTooLarge(
                        f"frame declares {size} bytes, over the {self._max}-byte limit"
                    )
                if end - pos - 4 < size:
                    break
                body = buf[pos + 4 : pos + 4 + size]
                pos += 4 + size
                message = decode_body(body)
                if self._keep and message["t"] in _EVENT_TYPES:
                    message[BODY] = body
                out.append(message)
        finally:
            del buf[:pos]

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buf)

    def eof(self) -> None:
        """Call when the stream ends; raises TruncatedFrame if a frame was cut."""
        if self._buf:
            raise TruncatedFrame(
                f"stream ended inside a frame ({len(self._buf)} bytes of an incomplete frame)"
            )
