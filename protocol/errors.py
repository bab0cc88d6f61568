"""Errors raised by the wire protocol, and the refusal the daemon answers with.

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

    NotOwner                      writes to a run another connection owns (code not_owner)

    Refusal                       a request understood, answered "no" (code varies;
                                  kind not_found, bad_request, unavailable or failed)

    OtlpError (protocol.otlp)     a run could not be sent to an OTLP endpoint

Every error carries the ``code`` sent to the peer (in an ``error`` frame,
or the web API's error body). A refusal's ``kind`` is neutral: the store
raises refusals (its errors are ones) and the web maps kinds to HTTP
statuses, so neither imports the other.
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


class NotOwner(Exception):
    """Events, run.graph or run.complete for a run that belongs to another
    connection (PROTOCOL.md section 7, *Owners*): nothing of them is stored."""

    code = "not_owner"

    def __init__(self, run: str, owner: str, what: str) -> None:
        super().__init__(
            f"run {run} belongs to {owner}: this connection did not start or resume it, "
            f"so its {what} were not stored; `choo resume` the run to continue it"
        )
        self.message = str(self)
        self.run = run


# A refusal's kind: how the asker should take it.

NOT_FOUND = "not_found"  # the run (or its graph, ...) does not exist
BAD_REQUEST = "bad_request"  # the asker's input is wrong: a parameter, an ambiguous prefix
UNAVAILABLE = "unavailable"  # not now: shutting down, the database cannot be opened
FAILED = "failed"  # anything else: our side failed


class Refusal(Exception):
    """A request the daemon cannot answer: ``code`` for the asker, ``kind`` for how to take it."""

    code = "refused"
    kind = FAILED

    def __init__(self, message: str, *, code: str | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if kind is not None:
            self.kind = kind
