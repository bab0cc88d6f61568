"""Run a child process with a timeout, keep its output's tail, and make sure
it and everything it started are gone when we are cancelled or time out.

With ``on_line``, stdout is handed over line by line while the child runs
(an agent's JSON stream is read as it comes, not after exit); stderr then
keeps a tail of its own (``Completed.errors``), so that its lines do not
mix into the stream, unless ``merge_stderr`` asks for both in one.

A child that cannot be started (a program missing or not executable, an
argument over the kernel's limit) raises ``StartFailed`` with a reason a
user can act on; once started, its failure is never an exception.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

from choo.errors import ChooError
from protocol.redact import redact_tail

KEEP_BYTES = 64 * 1024
KILL_GRACE = 2.0
# Linux refuses one argv or environment string longer than this (with its
# NUL), MAX_ARG_STRLEN = 32 pages: "Argument list too long" (E2BIG).
MAX_ARG_BYTES = 128 * 1024 - 1
# A line longer than this (no newline in sight) is handed over cut, so that
# a child writing garbage cannot make us hold all of it.
MAX_LINE_BYTES = 16 * 1024 * 1024

LineHandler = Callable[[str], None]


class StartFailed(ChooError):
    """The child could not be started; ``reason`` says why, for a user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Completed:
    exit_code: int | None  # None when it timed out
    output: str  # stdout (and stderr unless kept apart), the last KEEP_BYTES of it
    duration_ms: int
    timed_out: bool
    errors: str = ""  # stderr's tail, when it was kept apart from stdout

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def tail(self, chars: int = 2000) -> str:
        """The output's end, scrubbed of secrets before it is cut at a line's start."""
        return redact_tail(self.output, chars)


def argv_problem(argv: list[str] | str) -> str | None:
    """Why the kernel would refuse ``argv``, said before trying; None if it would not."""
    for n, arg in enumerate([argv] if isinstance(argv, str) else argv):
        size = len(arg.encode("utf-8", errors="surrogateescape"))
        if size > MAX_ARG_BYTES:
            return (
                f"argument {n} of the command is {size / 1024:.0f} KiB, over the "
                f"{(MAX_ARG_BYTES + 1) // 1024} KiB the system allows in one argument"
            )
    return None


async def run_process(
    argv: list[str] | str,
    *,
    cwd: Path,
    timeout: float,
    stdin: bytes | None = None,
    shell: bool = False,
    env: Mapping[str, str] | None = None,
    on_line: LineHandler | None = None,
    merge_stderr: bool = True,
) -> Completed:
    """Run ``argv`` (a shell command when ``shell``); never raises for its failure.

    Raises StartFailed when it cannot be started at all.
    """
    problem = argv_problem(argv)
    if problem is not None:
        raise StartFailed(problem)
    apart = on_line is not None and not merge_stderr
    started = time.monotonic()
    try:
        proc = await trio.lowlevel.open_process(
            argv,
            cwd=os.fspath(cwd),
            shell=shell,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if apart else subprocess.STDOUT,
            start_new_session=True,  # its own process group, so we can end all of it
        )
    except OSError as exc:
        raise StartFailed(_start_error(argv, exc)) from None
    output, errors = bytearray(), bytearray()
    finished = False
    try:
        with trio.move_on_after(timeout) as deadline:
            async with trio.open_nursery() as nursery:
                if stdin is not None:
                    nursery.start_soon(_feed, proc, stdin)
                if apart:
                    assert proc.stderr is not None
                    nursery.start_soon(_collect, proc.stderr, errors, None)
                assert proc.stdout is not None
                await _collect(proc.stdout, output, on_line)
                await proc.wait()
            finished = True
    finally:
        # Not only when the child still runs: a child that exited but left
        # a background process holding its output open is just as unfinished.
        if not finished:
            with trio.CancelScope(shield=True):
                await _end_group(proc)
    return Completed(
        exit_code=None if deadline.cancelled_caught else proc.returncode,
        output=output.decode("utf-8", errors="replace"),
        duration_ms=int((time.monotonic() - started) * 1000),
        timed_out=deadline.cancelled_caught,
        errors=errors.decode("utf-8", errors="replace"),
    )


def _start_error(argv: list[str] | str, exc: OSError) -> str:
    program = argv if isinstance(argv, str) else argv[0]
    what = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError):
        what = "no such program (is it installed and on PATH?)"
    elif isinstance(exc, PermissionError):
        what = "permission denied (is it executable?)"
    return f"could not start `{program}`: {what}"


async def _feed(proc: trio.Process, data: bytes) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await proc.stdin.send_all(data)
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await proc.stdin.aclose()


async def _collect(
    stream: trio.abc.ReceiveStream, output: bytearray, on_line: LineHandler | None
) -> None:
    partial = bytearray()
    while chunk := await stream.receive_some(65536):
        output += chunk
        if len(output) > 2 * KEEP_BYTES:
            del output[:-KEEP_BYTES]
        if on_line is not None:
            partial += chunk
            _hand_over(partial, on_line)
    del output[:-KEEP_BYTES]
    if on_line is not None and partial:
        on_line(_text(partial))  # the last line had no newline (a stream cut short)


def _hand_over(partial: bytearray, on_line: LineHandler) -> None:
    start = 0
    while (end := partial.find(b"\n", start)) >= 0:
        on_line(_text(partial[start:end]))
        start = end + 1
    del partial[:start]
    if len(partial) > MAX_LINE_BYTES:
        on_line(_text(partial))
        partial.clear()


def _text(line: bytes | bytearray) -> str:
    return bytes(line).decode("utf-8", errors="replace").removesuffix("\r")


async def _end_group(proc: trio.Process) -> None:
    """SIGTERM the process group, give it KILL_GRACE, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with trio.move_on_after(KILL_GRACE):
        await proc.wait()
    # Also when the leader is gone: what it started may outlive it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with trio.move_on_after(5.0):
        await proc.wait()
