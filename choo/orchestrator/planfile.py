"""Read a plan's files (``IMPLEMENTATION_PLAN.md``, task files) so that no file can
hang choo, exhaust its memory or bring in a file from outside the repository.

A plan may come from a repository someone else wrote. Its files are read
only when they are:

- regular files: a FIFO would block the read forever, a device such as
  ``/dev/zero`` never ends; both are refused before they are opened (and
  opened without blocking, checked again, in case the file was swapped);
- inside the repository, symbolic links resolved: a task file linked to
  ``~/.ssh/id_ed25519`` would be sent to the agent as its prompt. The
  repository is the git top level holding the tasks folder (the nearest
  folder above it with a ``.git``); outside git, the tasks folder's parent;
- at most ``plan.max_file_bytes`` long (1 MiB by default).

``PlanFileRefused`` says which rule a file broke; discovery reports it as a
problem naming the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from choo.errors import ChooError
from choo.term import size
from protocol.settings import default

DEFAULT_MAX_BYTES: int = default("plan.max_file_bytes")

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


class PlanFileRefused(ChooError):
    """A plan's file is not read: not a regular file, outside the repository, or too big."""


def repository_of(tasks_dir: Path) -> Path:
    """The folder a plan's files must stay in (resolved): the nearest folder at
    or above ``tasks_dir`` holding ``.git`` (a folder, or a worktree's file),
    else ``tasks_dir``'s parent. The walk goes up the path as written, so a
    tasks folder that is a link elsewhere still belongs to the repository
    that holds the link."""
    start = Path(os.path.abspath(tasks_dir))
    for folder in (start, *start.parents):
        if os.path.lexists(folder / ".git"):
            return folder.resolve()
    return start.parent.resolve()


def read_text(path: Path, *, root: Path | None, max_bytes: int | None = DEFAULT_MAX_BYTES) -> str:
    """The UTF-8 text of ``path``, a file of a plan whose repository is ``root``.

    Raises PlanFileRefused (see the module), OSError when it cannot be read,
    UnicodeDecodeError when it is not UTF-8. Line endings are kept as they are.
    A file read again during a run (discovery checked it) may pass ``root``
    None and ``max_bytes`` None: then only a regular file is read.
    """
    real = Path(os.path.realpath(path))
    if root is not None and not real.is_relative_to(root):
        raise PlanFileRefused(
            f"links to {real}, outside the repository {root}: plan files are read only "
            "inside it; copy the file into the repository instead of linking to it"
        )
    _check(os.stat(path), max_bytes)  # before opening: opening a FIFO or device acts on it
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        _check(os.fstat(fd), max_bytes)  # the file opened is the file checked
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise PlanFileRefused(_too_big(max_bytes))  # it grew while being read
    return data.decode("utf-8")


def _check(st: os.stat_result, max_bytes: int | None) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "something else")
        raise PlanFileRefused(
            f"is {kind}, not a regular file: plan and task files must be ordinary files"
        )
    if max_bytes is not None and st.st_size > max_bytes:
        raise PlanFileRefused(f"is {size(st.st_size)}: {_too_big(max_bytes)}")


def _too_big(max_bytes: int) -> str:
    return (
        f"larger than plan.max_file_bytes ({max_bytes:,} bytes); make the file smaller, "
        "or raise plan.max_file_bytes in .choo.yaml"
    )
