"""What the daemon and its clients share: the wire protocol and its facts.

Frames, message types and their validation, errors; both ends of a
connection (``protocol.connection``) and backoff pauses
(``protocol.backoff``); the event catalogue (``protocol.events``), the
config keys (``protocol.settings``) and the time format (``protocol.times``).

Sans-IO: nothing here touches a socket or an event loop, and nothing a
file, except ``home.py``: the on-disk contract in CHOO_HOME (layout, folder
checks, pid file probe, spool file names), which the daemon and its clients
share as they share the wire format. See ``PROTOCOL.md`` beside this file
for the normative description.
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
