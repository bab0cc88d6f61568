"""The choo wire protocol: frames, message types, validation, errors, and
both ends of a connection (``protocol.connection``) and backoff pauses
(``protocol.backoff``).

Sans-IO: nothing here touches a socket, a file or an event loop, except
``home.py``: the on-disk contract in CHOO_HOME (layout, folder checks, pid
file probe, spool file names), which the daemon and its clients share as
they share the wire format. See ``PROTOCOL.md`` beside this file for the
normative description.
``protocol.times`` holds the time format that events carry and the store keeps.
"""

from protocol.errors import (
    BadField,
    EmptyFrame,
    FrameError,
    FrameTooLarge,
    MessageError,
    NotAMap,
    NotMsgpack,
    ProtocolError,
    TruncatedFrame,
    UnknownType,
)
from protocol.frames import (
    BODY,
    MAX_EVENT_ITEM,
    MAX_FRAME,
    FrameDecoder,
    decode_body,
    encode,
    encode_events,
    encode_many,
    pack_event_item,
    unpack_body,
)
from protocol.messages import (
    FINAL_STATUSES,
    PROTOCOL_VERSION,
    REQUESTS,
    RUN_ID,
    RUN_STATUSES,
    SCHEMAS,
    Message,
    payload_json,
    validate,
)

__all__ = [
    "BODY",
    "FINAL_STATUSES",
    "MAX_EVENT_ITEM",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "REQUESTS",
    "RUN_ID",
    "RUN_STATUSES",
    "SCHEMAS",
    "BadField",
    "EmptyFrame",
    "FrameDecoder",
    "FrameError",
    "FrameTooLarge",
    "Message",
    "MessageError",
    "NotAMap",
    "NotMsgpack",
    "ProtocolError",
    "TruncatedFrame",
    "UnknownType",
    "decode_body",
    "encode",
    "encode_events",
    "encode_many",
    "pack_event_item",
    "payload_json",
    "unpack_body",
    "validate",
]
