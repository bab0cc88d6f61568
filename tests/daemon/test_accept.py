"""The daemon's accept loop outlives a process out of file descriptors (EMFILE)."""

from __future__ import annotations

import contextlib
import os
import resource
import socket

import pytest
import trio

import protocol
from choo_daemon.daemon import Daemon
from protocol.home import Home


async def test_the_daemon_accepts_again_after_running_out_of_file_descriptors(
    daemon: Daemon, home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection that comes while the process has no free descriptor
    waits in the backlog; once descriptors are free again it is served, and
    the daemon never stopped."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    client = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    held: list[int] = []
    # A low limit, so that filling it takes a few dozen descriptors, not a million.
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 32, hard))
    try:
        with contextlib.suppress(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        await client.connect(os.fspath(home.socket))  # queued: no descriptor needed here
        with trio.fail_after(10):
            while "EMFILE" not in caplog.text:
                await trio.sleep(0.02)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with client, trio.fail_after(10):
        await client.send(protocol.encode({"t": "hello", "v": 1, "client": "t", "pid": 1}))
        decoder = protocol.FrameDecoder()
        messages: list[protocol.Message] = []
        while not messages:
            data = await client.recv(65536)
            assert data, "the daemon closed the connection"
            messages = decoder.feed(data)
    assert messages[0]["t"] == "welcome"
    assert daemon.status()["pid"] == os.getpid()
