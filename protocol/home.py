"""Where a daemon's files live inside CHOO_HOME.

Shared by the daemon and its clients so both sides agree on the layout.
Pure path arithmetic: nothing here creates or reads a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS), NUL included.
MAX_SOCKET_PATH = 100


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

    def socket_path_problem(self) -> str | None:
        """Say why the socket path cannot be used, or None if it can."""
        size = len(os.fsencode(self.socket))
        if size > MAX_SOCKET_PATH:
            return (
                f"socket path {self.socket} is {size} bytes, over the {MAX_SOCKET_PATH}-byte "
                "limit for Unix sockets; set CHOO_HOME to a shorter folder"
            )
        return None
