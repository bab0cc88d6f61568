"""The daemon refuses a socket peer whose uid is not its own, even when the
file permissions (opened up here on purpose) would let that peer connect."""

from __future__ import annotations

import contextlib
import os
import socket
import stat

import pytest
import trio

import protocol
from choo_daemon.daemon import Daemon
from protocol.home import Home
from tests.daemon.test_session import Peer

NOBODY = 65534

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="connecting as another user needs root (CI runs as root)",
)


def _exchange_as(uid: int, path: str, frame: bytes) -> tuple[int, bytes]:
    """In a forked child running as ``uid``: connect, send ``frame``, read until closed.

    Returns (the child's exit status, what it read). A fork rather than a
    subprocess, so that no interpreter has to be readable by that user.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plain system calls only, then _exit
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            assert os.getuid() == uid
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(path)
                # Refused already, maybe: what it said is still there to read.
                with contextlib.suppress(BrokenPipeError):
                    sock.sendall(frame)
                while True:
                    try:
                        chunk = sock.recv(65536)
                    except ConnectionResetError:
                        break  # closed on us with our hello unread: closed all the same
                    if not chunk:
                        break
                    os.write(write_end, chunk)
        except BaseException as exc:  # report anything, never return into pytest
            os.write(write_end, f"CHILD ERROR {exc!r}".encode())
            status = 1
        os._exit(status)
    os.close(write_end)
    received = b""
    with os.fdopen(read_end, "rb") as pipe:
        received = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), received


async def test_a_peer_with_another_uid_is_refused(daemon: Daemon, home: Home) -> None:
    assert stat.S_IMODE(home.socket.stat().st_mode) == 0o600
    # Open the way on purpose: only the daemon's own check stands in between.
    home.root.chmod(0o711)
    home.socket.chmod(0o666)
    hello = protocol.encode({"t": "hello", "v": 1, "client": "intruder", "pid": 1})
    status, received = await trio.to_thread.run_sync(
        _exchange_as, NOBODY, os.fspath(home.socket), hello
    )
    assert status == 0, received
    messages = protocol.FrameDecoder().feed(received)  # everything up to the close
    assert len(messages) == 1, messages
    error = messages[0]
    assert error["t"] == "error" and error["code"] == "forbidden"
    assert str(NOBODY) in error["message"] and str(os.getuid()) in error["message"]

    # Our own uid is still welcome, and the refused peer left nothing behind.
    peer = await Peer.connect(home)
    status_reply = await peer.request({"t": "status", "req": 1})
    assert status_reply["t"] == "ok" and status_reply["data"]["clients"] == 0
