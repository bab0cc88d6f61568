"""The daemon's Unix socket: bind it private, and tell who is on the other end."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
from pathlib import Path

import trio

log = logging.getLogger("choo.daemon")

_PEERCRED = struct.Struct("3i")  # pid, uid, gid


def socket_answers(path: Path) -> bool:
    """True when something accepts connections on the socket file."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file nobody listens on (the caller holds the pid lock)."""
    if not path.exists() and not path.is_symlink():
        return
    if socket_answers(path):
        raise RuntimeError(f"{path} answers although no daemon holds the pid file; refusing")
    path.unlink()
    log.info("removed stale socket %s (nobody was listening)", path)


async def open_unix_listener(path: Path, backlog: int = 128) -> trio.SocketListener:
    """Bind a listening Unix socket at ``path`` with mode 0600."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the file is born 0600: no window where others can connect
    try:
        await sock.bind(os.fspath(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(backlog)
    return trio.SocketListener(sock)


def peer_uid(stream: trio.SocketStream) -> int | None:
    """The uid of the process at the other end of a Unix socket stream."""
    with contextlib.suppress(OSError, AttributeError):
        raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        return int(_PEERCRED.unpack(raw)[1])
    return None
