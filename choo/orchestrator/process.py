"""Run a child process with a timeout, keep its output's tail, and make sure
it and everything it started are gone when we are cancelled or time out."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import trio

KEEP_BYTES = 64 * 1024
KILL_GRACE = 2.0


@dataclass(frozen=True)
class Completed:
    exit_code: int | None  # None when it timed out
    output: str  # stdout and stderr, interleaved, the last KEEP_BYTES of it
    duration_ms: int
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def tail(self, chars: int = 2000) -> str:
        return self.output[-chars:]


async def run_process(
    argv: list[str] | str,
    *,
    cwd: Path,
    timeout: float,
    stdin: bytes | None = None,
    shell: bool = False,
) -> Completed:
    """Run ``argv`` (a shell command when ``shell``); never raises for its failure."""
    started = time.monotonic()
    proc = await trio.lowlevel.open_process(
        argv,
        cwd=os.fspath(cwd),
        shell=shell,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so we can end all of it
    )
    output = bytearray()
    finished = False
    try:
        with trio.move_on_after(timeout) as deadline:
            async with trio.open_nursery() as nursery:
                if stdin is not None:
                    nursery.start_soon(_feed, proc, stdin)
                await _collect(proc, output)
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
    )


async def _feed(proc: trio.Process, data: bytes) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await proc.stdin.send_all(data)
    await proc.stdin.aclose()


async def _collect(proc: trio.Process, output: bytearray) -> None:
    assert proc.stdout is not None
    while chunk := await proc.stdout.receive_some(65536):
        output += chunk
        if len(output) > 2 * KEEP_BYTES:
            del output[:-KEEP_BYTES]
    del output[:-KEEP_BYTES]


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
