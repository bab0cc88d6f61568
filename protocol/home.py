"""The on-disk contract in CHOO_HOME, shared by the daemon and its clients.

The one module of ``protocol/`` that touches disk. The daemon and the CLI
meet in this folder as much as on the socket: the CLI checks the folder
before it starts a daemon, probes the pid file to see whether one is alive,
writes spool files for the next daemon to import, and counts them; the
daemon does the same checks and reads the same files. Each rule is written
here once, so that both sides agree without either importing the other:

- the layout (``Home``): where the socket, pid file, log, database and
  spool live;
- the folder's safety (``check_home``, ``prepare_home``): a missing folder
  is created, mode 0700; an existing one must be a folder, owned by the
  user, and not writable by group or others. Anything else is refused with
  a message naming the folder and what to do. An existing folder is never
  chmod-ed: with ``CHOO_HOME=/tmp`` that would change ``/tmp`` for everyone.
  ``private_umask`` makes what the daemon and its database process create
  (history.db and its -wal/-shm, the log) readable by the user alone;
- the pid file probe (``read_pid``, ``is_locked``): a daemon holds an OS
  lock on it for its whole life (taking it is the daemon's own business);
- spool files (``SPOOL_SUFFIX``, ``new_spool_name``, ``spool_files``): named
  so that they sort oldest first; anything else in the folder (a temporary
  file being written) is not one;
- the web token (``read_token``, ``ensure_token``, ``rotate_token``,
  ``TokenFile``): 64 hex characters in ``web.token`` (0600), which every web
  request but ``/api/health`` must show. The daemon makes it at its first
  start; the CLI reads it to build a login URL and to send it as a Bearer
  header. A new token replaces the file (a new inode), so that a running
  daemon sees the change at its next request.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
import secrets
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS), NUL included.
MAX_SOCKET_PATH = 100
PRIVATE_UMASK = 0o077  # files 0600, folders 0700
SPOOL_SUFFIX = ".frames"
TOKEN_BYTES = 32  # 64 hex characters
TOKEN_PATTERN = re.compile(r"[0-9a-f]{64}")


class HomeError(Exception):
    """CHOO_HOME cannot be used; the message names the folder and what to do."""


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_env(cls, override: str | os.PathLike[str] | None = None) -> Home:
        """CHOO_HOME (or ``override``), else ``~/.choo``; always absolute."""
        raw = override or os.environ.get("CHOO_HOME") or Path.home() / ".choo"
        return cls(Path(raw).expanduser().absolute())

    @property
    def socket(self) -> Path:
        return self.root / "daemon.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "daemon.pid"

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"

    @property
    def database(self) -> Path:
        return self.root / "history.db"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def token(self) -> Path:
        return self.root / "web.token"

    def socket_path_problem(self) -> str | None:
        """Say why the socket path cannot be used, or None if it can."""
        size = len(os.fsencode(self.socket))
        if size > MAX_SOCKET_PATH:
            return (
                f"socket path {self.socket} is {size} bytes, over the {MAX_SOCKET_PATH}-byte "
                "limit for Unix sockets; set CHOO_HOME to a shorter folder"
            )
        return None


# --- the folder ----------------------------------------------------------------


def private_umask() -> None:
    """From now on, files and folders this process creates are the user's alone."""
    os.umask(PRIVATE_UMASK)


def check_home(home: Home) -> None:
    """Raise HomeError unless CHOO_HOME is missing or a private folder of the user's."""
    root = home.root
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return
    except OSError as exc:  # a parent that is a file, or cannot be searched
        raise HomeError(
            f"cannot use CHOO_HOME {root}: {exc.strerror}; set CHOO_HOME to a folder of yours"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        kind = "a file" if stat.S_ISREG(st.st_mode) else "not a folder"
        raise HomeError(
            f"CHOO_HOME {root} is {kind}, not a folder; set CHOO_HOME to a folder "
            "(choo creates it if it is missing), or move the file out of the way"
        )
    me = os.geteuid()
    if st.st_uid != me:
        raise HomeError(
            f"CHOO_HOME {root} belongs to {_user(st.st_uid)}, not to you ({_user(me)}); "
            "choo keeps history only in a folder of your own: set CHOO_HOME to another "
            "folder (choo creates it, mode 0700)"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        who = " and ".join(w for bit, w in ((0o020, "group"), (0o002, "others")) if mode & bit)
        # A sticky folder (/tmp) is shared on purpose: never suggest closing it.
        fix = (
            ""
            if mode & stat.S_ISVTX
            else f", or, if this folder is for choo alone, `chmod 700 {root}`"
        )
        raise HomeError(
            f"CHOO_HOME {root} can be written by {who} (mode {mode:04o}); choo will not keep "
            "history there, and does not change a folder's mode itself: set CHOO_HOME to a "
            f"folder of your own (choo creates it, mode 0700){fix}"
        )


def prepare_home(home: Home) -> None:
    """Check CHOO_HOME (see ``check_home``), creating it 0700 if it is missing."""
    check_home(home)
    root = home.root
    try:
        root.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass  # checked above, or made by a racing start: checked again below
    except OSError as exc:
        raise HomeError(
            f"cannot create CHOO_HOME {root}: {exc.strerror}; set CHOO_HOME to a folder "
            "you can write"
        ) from None
    else:
        # mkdir's mode passes through the umask, which may remove more than
        # we want; this folder is ours, just made.
        os.chmod(root, 0o700)
    check_home(home)


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


# --- the pid file --------------------------------------------------------------


def read_pid(path: Path) -> int | None:
    """The pid recorded in a pid file, or None when absent or unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def is_locked(path: Path) -> bool:
    """True while some process holds the pid file's lock (a daemon is alive)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):  # no file, or CHOO_HOME is not a folder
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def lock_exclusive(path: Path, open_file: Callable[[Path], int]) -> int | None:
    """Take the exclusive OS lock of the file at ``path``: its descriptor, or
    None when another process holds it.

    ``open_file`` opens (or creates) it. A holder that ends may unlink the
    file between our open and our lock; then we would hold an orphan inode,
    so we start again on the new file.
    """
    while True:
        fd = open_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


# --- spool files ---------------------------------------------------------------


def new_spool_name() -> str:
    """A new spool file's name: unique, and sorting after every earlier one."""
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    return f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SPOOL_SUFFIX}"


def spool_files(spool: Path) -> list[Path]:
    """Spool files waiting to be imported, oldest first."""
    try:
        return sorted(p for p in spool.iterdir() if p.name.endswith(SPOOL_SUFFIX))
    except FileNotFoundError:
        return []


def spool_status(spool: Path) -> dict[str, Any]:
    files = spool_files(spool)
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


# --- the web token ---------------------------------------------------------------


def read_token(home: Home) -> str | None:
    """The web token, or None when its file is missing or holds no token."""
    return _token_in(home.token)


def ensure_token(home: Home) -> str:
    """The web token, made first if there is none (or its file holds none)."""
    token = read_token(home)
    while token is None:
        if home.token.exists():
            return rotate_token(home)  # not a token: nobody can be using it
        # Two starts at once: one makes it, the other reads that one.
        _write_token(home.token, secrets.token_hex(TOKEN_BYTES), replace=False)
        token = read_token(home)
    return token


def rotate_token(home: Home) -> str:
    """Replace the web token by a new one; the old one stops working at once."""
    token = secrets.token_hex(TOKEN_BYTES)
    _write_token(home.token, token, replace=True)
    return token


class TokenFile:
    """The token of a token file as it is now, read again only when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int, int] | None = None
        self._token: str | None = None

    def current(self) -> str | None:
        try:
            st = os.stat(self.path)
        except OSError:
            self._seen, self._token = None, None
            return None
        seen = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        if seen != self._seen:
            self._seen, self._token = seen, _token_in(self.path)
        return self._token


def _token_in(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return text if TOKEN_PATTERN.fullmatch(text) else None


def _write_token(path: Path, token: str, *, replace: bool) -> None:
    """Write ``token`` to a new file (0600) that takes ``path``'s place whole.

    ``replace`` False leaves a file already there (made by a racing start).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(fd, "w", encoding="ascii") as f:
            f.write(token + "\n")
        if replace:
            os.replace(temporary, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
