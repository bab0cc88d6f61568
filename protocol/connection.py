"""The two ends of one connection, sans-IO: ``ServerConnection`` and ``ClientConnection``.

Each is a state machine in the manner of h11: the owner feeds it the bytes
it read (``receive_data``), takes from it what they mean, and writes the
bytes it holds for the peer (``data_to_send``). Neither touches a socket, a
clock or a file; the loops around them (``choo_daemon.session`` and
``choo.client``) do that. What they own is the part of PROTOCOL.md a second
implementation would have to get right:

- the handshake (section 5): ``hello`` first, the version check, ``welcome``;
- which message types each side may send, in which state (section 4);
- requests and replies (section 6): a reply answers a request sent on the
  same connection, matched by ``req``;
- the error policy (section 3): which failure is a reply (an ``error`` with
  ``req``; the connection goes on) and which is fatal (an ``error`` without
  ``req``, after which the server reads nothing more).

Timing (the handshake and half-frame limits) is the loop's, since only it
has a clock; the limits themselves are here, with ``ServerConnection.time_out``
saying which one ran out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from protocol.errors import (
    BadField,
    HandshakeRequired,
    ProtocolError,
    UnknownType,
    VersionUnsupported,
)
from protocol.frames import FrameDecoder, encode
from protocol.messages import PROTOCOL_VERSION, REQUESTS, Message, payload_json

# PROTOCOL.md section 9.
HANDSHAKE_TIMEOUT: Final = 10.0  # seconds from connecting to a whole hello
HALF_FRAME_TIMEOUT: Final = 30.0  # seconds a frame may stay incomplete

# What a client may send once greeted; anything else is unknown_type (fatal).
FROM_CLIENT: Final = REQUESTS | {"event", "events"}


class State(Enum):
    HANDSHAKE = "handshake"  # no hello (server) / no welcome (client) yet
    OPEN = "open"
    CLOSED = "closed"  # the server reads nothing more; what it read is still answered


class ServerConnection:
    """The daemon's end of one connection.

    Use::

        conn.receive_data(data)              # b"" at the end of the stream
        while messages := conn.next_messages():
            act on messages; answer with conn.send(...)
        if conn.state is State.CLOSED: stop reading
        write conn.data_to_send()

    ``next_messages`` hands out the client's messages in order, up to the next
    thing the connection must say itself (``welcome``, an ``error`` reply, a
    fatal ``error``), which it queues on the next call. So its frames and the
    owner's answers leave in the order of the messages they answer. Only
    requests, ``event`` and ``events`` are handed out; the handshake is done
    here. A fatal error closes the connection (``failure`` says which); the
    owner may still send the answers to what it was handed before.
    """

    def __init__(self, daemon: str, web: Callable[[], str | None] = lambda: None) -> None:
        """``daemon``: the version ``welcome`` names; ``web``: its web URL, read at hello."""
        self.state = State.HANDSHAKE
        self.hello: Message | None = None
        self.failure: ProtocolError | None = None  # the fatal error that closed it
        self._daemon = daemon
        self._web = web
        self._decoder = FrameDecoder(keep_event_bodies=True)
        self._out = bytearray()
        self._ready: list[Message] = []  # decoded, not handed out yet
        self._error: ProtocolError | None = None  # the decoder's, after _ready
        self._held = bytearray()  # received behind an error not reported yet
        self._due: ProtocolError | None = None  # to report before handing out more

    # -- input ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Take bytes read from the peer; ``b""`` means the stream ended.

        At the end of the stream, raises TruncatedFrame if it ended inside a
        frame (there is nobody left to tell). Call ``next_messages`` until it
        returns nothing before feeding more.
        """
        if self.state is State.CLOSED:
            return
        if not data:
            self.state = State.CLOSED
            self._decoder.eof()
            return
        if self._error is not None:
            self._held += data  # decoded once the error is answered
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self._ready += self._decoder.feed(data)
        except ProtocolError as exc:
            self._ready += exc.messages
            self._error = exc

    @property
    def greeted(self) -> bool:
        """Whether the first frame has been dealt with (the handshake timeout is over)."""
        return self.state is not State.HANDSHAKE

    @property
    def mid_frame(self) -> bool:
        """Whether bytes of an incomplete frame are waiting for the rest."""
        return self._decoder.pending > 0

    def next_messages(self) -> list[Message]:
        """The next messages to act on, in order; empty when all is handed out."""
        while self.state is not State.CLOSED:
            if self._due is not None:
                due, self._due = self._due, None
                self._report(due)
                continue
            ready = self._ready
            if not ready:
                error, self._error = self._error, None
                if error is None:
                    return []
                if error.req is None or self.state is State.HANDSHAKE:
                    self._fail(error)
                    return []
                self._report(error)  # a request with a bad field: refused, the rest goes on
                held, self._held = bytes(self._held), bytearray()
                self._feed(held)
                continue
            if self.state is State.HANDSHAKE:
                self._greet(ready.pop(0))
                continue
            for i, msg in enumerate(ready):
                kind = msg["t"]
                if kind == "event" or kind == "events":
                    continue
                problem = _refusal(msg)
                if problem is None:
                    continue
                self._due = problem
                self._ready = ready[i + 1 :]
                if i:
                    return ready[:i]
                break
            else:
                self._ready = []
                return ready
        return []

    def _greet(self, hello: Message) -> None:
        if hello["t"] != "hello":
            self._fail(HandshakeRequired(f'first frame must be "hello", got "{hello["t"]}"'))
        elif hello["v"] != PROTOCOL_VERSION:
            self._fail(
                VersionUnsupported(
                    f"protocol version {hello['v']} is not supported; this daemon speaks "
                    f"version {PROTOCOL_VERSION}"
                )
            )
        else:
            self.hello = hello
            self.state = State.OPEN
            self.send(
                {"t": "welcome", "v": PROTOCOL_VERSION, "daemon": self._daemon, "web": self._web()}
            )

    @property
    def peer(self) -> str | None:
        """The client's name and pid from its hello, for logs."""
        return None if self.hello is None else f"{self.hello['client']}[{self.hello['pid']}]"

    # -- output --------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Queue a message for the peer (acks, replies; also after a fatal error)."""
        self._out += encode(message)

    def fail(self, code: str, message: str) -> None:
        """A fatal error the owner found (busy, forbidden, a store refusal…): tell, then close.

        Unlike the connection's own fatal errors, it is not kept as ``failure``.
        """
        self.send({"t": "error", "code": code, "message": message})
        self._close()

    def time_out(self) -> None:
        """The loop's clock ran out: no hello in time, or a frame stayed incomplete."""
        error = ProtocolError(
            f"no hello within {HANDSHAKE_TIMEOUT:g} s of connecting"
            if not self.greeted
            else f"a frame stayed incomplete for {HALF_FRAME_TIMEOUT:g} s"
        )
        error.code = "timeout"
        self._fail(error)

    def _report(self, error: ProtocolError) -> None:
        if error.req is not None:
            self.send(
                {"t": "error", "req": error.req, "code": error.code, "message": error.message}
            )
        else:
            self._fail(error)

    def _fail(self, error: ProtocolError) -> None:
        self.send({"t": "error", "code": error.code, "message": error.message})
        if self.failure is None:
            self.failure = error
        self._close()

    def _close(self) -> None:
        self.state = State.CLOSED
        self._ready, self._error, self._due = [], None, None
        self._held.clear()

    @property
    def pending_output(self) -> int:
        """Bytes queued for the peer and not yet taken by ``data_to_send``."""
        return len(self._out)

    def data_to_send(self) -> bytes:
        """Everything queued for the peer, to write in one go."""
        data = bytes(self._out)
        self._out.clear()
        return data


def _refusal(msg: Message) -> ProtocolError | None:
    """Why a greeted client may not send ``msg`` (not an event), if it may not."""
    kind = msg["t"]
    if kind not in FROM_CLIENT:
        # hello again, or a type only the daemon sends
        return UnknownType(f'"{kind}" is not something a client may send')
    if kind == "run.graph":
        try:
            payload_json({k: msg[k] for k in ("nodes", "edges", "levels")})
        except ProtocolError as exc:
            return BadField(exc.message.replace("payload", "graph"), req=msg["req"])
    return None


# -- the client's end ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome:
    """The daemon accepted the handshake."""

    message: Message


@dataclass(frozen=True, slots=True)
class Ack:
    """The events of ``run`` up to ``seq`` are durable."""

    run: str
    seq: int


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to request ``req``: ``data`` for ``ok``; ``code`` and ``message`` for ``error``.

    ``code`` is None for ``ok``.
    """

    req: int
    data: dict[str, Any] | None = None
    code: str | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class Refused:
    """A fatal error: the daemon refused the handshake, or ends the connection."""

    code: str
    message: str


ClientEvent = Welcome | Ack | Reply | Refused


class ClientConnection:
    """The client's end of one connection.

    It queues the ``hello`` at once (``data_to_send``). ``receive_data`` turns
    the daemon's bytes into events: first ``Welcome`` or ``Refused`` (a
    ``welcome`` of another version is refused here), then ``Ack``, ``Reply``
    (only for a ``req`` announced with ``expect_reply``, each answered once)
    and ``Refused`` for a fatal error. After a fatal error the daemon may
    still send acks and replies for what it had read; they are handed out
    too. Anything else the daemon sends raises a ProtocolError: the stream
    cannot be trusted any more, so the owner drops the connection.
    """

    def __init__(self, client: str, pid: int) -> None:
        self.state = State.HANDSHAKE
        self.welcome: Message | None = None
        self._decoder = FrameDecoder()
        self._out = bytearray(
            encode({"t": "hello", "v": PROTOCOL_VERSION, "client": client, "pid": pid})
        )
        self._waiting: set[int] = set()

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def expect_reply(self, req: int) -> None:
        """Request ``req`` goes out on this connection: its reply will be welcome."""
        self._waiting.add(req)

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """What the daemon's bytes say; ``b""`` at the end of the stream.

        Raises a ProtocolError for bytes that break the protocol (including a
        stream that ends inside a frame).
        """
        if not data:
            self.state = State.CLOSED
            self._decoder.eof()
            return []
        events: list[ClientEvent] = []
        for msg in self._decoder.feed(data):
            kind = msg["t"]
            if kind == "ack" and self.state is State.OPEN:
                events.append(Ack(msg["run"], msg["seq"]))
            elif kind == "error" and msg.get("req") is None:
                events.append(Refused(msg["code"], msg["message"]))
            elif self.state is State.HANDSHAKE:
                events.append(self._greeted(msg))
            elif kind == "ok" or kind == "error":
                events.append(self._reply(msg))
            else:
                raise UnknownType(f'"{kind}" is not something the daemon sends now')
        return events

    def _greeted(self, msg: Message) -> ClientEvent:
        if msg["t"] != "welcome":
            raise HandshakeRequired(
                f'the daemon\'s first frame must be "welcome", got "{msg["t"]}"'
            )
        if msg["v"] != PROTOCOL_VERSION:
            return Refused(
                "version_unsupported",
                f"the daemon speaks protocol version {msg['v']}; this client speaks "
                f"version {PROTOCOL_VERSION}",
            )
        self.state = State.OPEN
        self.welcome = msg
        return Welcome(msg)

    def _reply(self, msg: Message) -> Reply:
        req = msg["req"]
        if req not in self._waiting:
            raise BadField(
                f'{msg["t"]}: field "req" names no request waiting on this connection: {req}'
            )
        self._waiting.discard(req)
        if msg["t"] == "ok":
            return Reply(req, msg.get("data") or {})
        return Reply(req, None, msg["code"], msg["message"])
