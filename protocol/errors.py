"""Errors raised by the wire protocol.

    ProtocolError                 the peer sent something the protocol forbids
    ├── FrameError                the framing itself is broken
    │   ├── EmptyFrame            a frame declared zero bytes      (code bad_length)
    │   ├── FrameTooLarge         a frame declared over MAX_FRAME  (code frame_too_large)
    │   └── TruncatedFrame        the stream ended inside a frame  (code truncated)
    └── MessageError              the frame is whole but its content is wrong
        ├── NotMsgpack            the body is not one msgpack value (code not_msgpack)
        ├── NotAMap               the value is not a map            (code not_a_map)
        ├── UnknownType           "t" is missing or unknown         (code unknown_type)
        ├── BadField              a field is missing or ill-typed   (code bad_field)
        ├── HandshakeRequired     the first frame was not the greeting (code handshake_required)
        └── VersionUnsupported    the peer speaks another version   (code version_unsupported)

Every error carries the ``code`` sent to the peer in an ``error`` frame.
"""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    """Base of every protocol violation; ``code`` is the wire error code."""

    code = "protocol_error"

    def __init__(self, message: str, *, req: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.req = req
        # Messages decoded intact before the error, in the same feed.
        self.messages: list[dict[str, Any]] = []


class FrameError(ProtocolError):
    code = "bad_frame"


class EmptyFrame(FrameError):
    code = "bad_length"


class FrameTooLarge(FrameError):
    code = "frame_too_large"


class TruncatedFrame(FrameError):
    code = "truncated"


class MessageError(ProtocolError):
    code = "bad_message"


class NotMsgpack(MessageError):
    code = "not_msgpack"


class NotAMap(MessageError):
    code = "not_a_map"


class UnknownType(MessageError):
    code = "unknown_type"


class BadField(MessageError):
    code = "bad_field"


class HandshakeRequired(MessageError):
    code = "handshake_required"


class VersionUnsupported(MessageError):
    code = "version_unsupported"
