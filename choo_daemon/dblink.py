"""The daemon's link to its database process (see ``choo_daemon.dbproc``).

DbProcessError          the database process failed a request
├── Passing             ... for a reason that may pass (disk full, read-only file)
└── DbProcessGone       it is not there any more (it died, or its socket broke)
"""

from __future__ import annotations

import logging
import pickle
from collections import deque
from pathlib import Path
from typing import Any, Generic, TypeVar

import trio

from choo_daemon.dbmsg import Answer, Close, Failed, Request
from choo_daemon.dbwire import ANSWER_HEADER, REQUEST_HEADER, SLOTS, Started, start_process

log = logging.getLogger("choo.daemon")

R = TypeVar("R")


class DbProcessError(Exception):
    def __init__(self, why: str, detail: str = "") -> None:
        super().__init__(why)
        self.why = why
        self.detail = detail


class Passing(DbProcessError):
    """A failure of the disk or the file: the same request may pass later."""


class DbProcessGone(DbProcessError):
    """The database process has ended (or its socket broke)."""


class Pending(Generic[R]):
    """A request sent; its answer comes in the order requests were sent."""

    __slots__ = ("answer", "done")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.answer: Answer | None = None

    def resolve(self, answer: Answer) -> None:
        self.answer = answer
        self.done.set()


class DbProcess:
    """The daemon's handle on the database process (used from the trio thread).

    Requests may be sent before the answers to earlier ones come back: the
    process then starts on the next batch the moment it has committed one.
    ``serve_answers`` must run meanwhile, in the caller's nursery.
    """

    SLOTS = SLOTS

    def __init__(self, started: Started) -> None:
        self.proc = started.proc
        self._sock = started.sock
        self._shared = started.shared
        self._stream: trio.SocketStream | None = None
        self._buffer = bytearray()
        self._send_lock = trio.Lock()
        self._waiting: deque[Pending[Any]] = deque()
        self._broken: str | None = None
        self._closing = False

    @classmethod
    def spawn(cls, database: Path) -> DbProcess:
        """Start the process; it opens nothing until asked to. Blocking, but quick."""
        return cls(start_process(database))

    async def serve_answers(self) -> None:
        """Read answers and hand each to its request, until the process closes.

        Shielded: cancelled or not, the daemon's last requests (the batches
        in flight, "close") still get their answers; ``aclose`` ends it.
        Raises DbProcessGone if the process ends before it was asked to.
        """
        stream = self._open_stream()
        with trio.CancelScope(shield=True):
            try:
                while True:
                    answer = await self._receive(stream)
                    self._waiting.popleft().resolve(answer)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                if self._closing:
                    self._lost(None)
                    return
                await self._wait_exit(0.5)  # it closed its socket: it is exiting
                self._lost(exc)
                raise DbProcessGone(self._gone_why(exc)) from None

    async def submit(self, request: Request[R], *, slot: int | None = None) -> Pending[R]:
        """Send a request (through memory file ``slot``, or the socket); don't wait."""
        pending: Pending[R] = Pending()
        async with self._send_lock:
            if self._broken is not None:
                raise DbProcessGone(self._broken)
            self._waiting.append(pending)
            with trio.CancelScope(shield=True):  # half a request would be out of step
                try:
                    if slot is None:
                        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
                        frame = REQUEST_HEADER.pack(len(data), -1) + data
                    else:
                        size = self._shared[slot].dump(request)
                        frame = REQUEST_HEADER.pack(size, slot)
                    await self._open_stream().send_all(frame)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    await self._wait_exit(0.5)
                    self._lost(exc)
        return pending

    @staticmethod
    async def result(pending: Pending[R]) -> R:
        """The value the process answered, or raise DbProcessError."""
        await pending.done.wait()
        answer = pending.answer
        if isinstance(answer, Failed):
            if answer.kind == "passing":
                raise Passing(answer.why)
            if answer.kind == "gone":
                raise DbProcessGone(answer.why)
            raise DbProcessError(answer.why, answer.detail)
        assert answer is not None
        value: R = answer.value
        return value

    async def request(self, request: Request[R]) -> R:
        """Send one request (through the socket) and return its value."""
        return await self.result(await self.submit(request))

    def _lost(self, exc: BaseException | None) -> None:
        why = self._gone_why(exc) if exc is not None else "the database process was closed"
        self._broken = why
        while self._waiting:
            self._waiting.popleft().resolve(Failed("gone", why))

    async def aclose(self, timeout: float = 10.0) -> None:
        """Ask the process to checkpoint and exit; kill it if it does not.

        Shielded: the daemon closes it on its way out, cancelled or not.
        """
        with trio.CancelScope(shield=True):
            if self._broken is None and self.proc.poll() is None:
                with trio.move_on_after(timeout):
                    try:
                        self._closing = True
                        await self.request(Close())
                    except DbProcessError as exc:
                        log.warning("closing the database: %s", exc.why)
            if not await self._wait_exit(timeout):
                log.warning("the database process did not exit; killing it")
                self.proc.kill()
                await self._wait_exit(timeout)
            if self._stream is not None:
                await self._stream.aclose()
            else:
                self._sock.close()
            for f in self._shared:
                f.close()

    def _open_stream(self) -> trio.SocketStream:
        if self._stream is None:
            self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(self._sock))
        return self._stream

    async def _receive(self, stream: trio.SocketStream) -> Answer:
        buffer = self._buffer
        while True:
            if len(buffer) >= ANSWER_HEADER.size:
                (size,) = ANSWER_HEADER.unpack_from(buffer)
                if len(buffer) >= ANSWER_HEADER.size + size:
                    answer = pickle.loads(
                        memoryview(buffer)[ANSWER_HEADER.size : ANSWER_HEADER.size + size]
                    )
                    del buffer[: ANSWER_HEADER.size + size]
                    return answer  # type: ignore[no-any-return]
            data = await stream.receive_some(1 << 20)
            if not data:
                raise trio.BrokenResourceError("the database process closed its socket")
            buffer += data

    async def _wait_exit(self, timeout: float) -> bool:
        """Whether the process has exited (and is reaped) within ``timeout``.

        The wait runs in a worker thread that is left behind on timeout, so
        that the timeout holds (a plain ``to_thread`` call cannot be cut short).
        """
        with trio.move_on_after(timeout):
            await trio.to_thread.run_sync(self.proc.wait, abandon_on_cancel=True)
        return self.proc.poll() is not None

    def _gone_why(self, exc: BaseException | None = None) -> str:
        code = self.proc.poll()
        if code is None:
            return f"lost the database process (pid {self.proc.pid}): {exc}"
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return f"the database process (pid {self.proc.pid}) ended with {how}"
