"""The private folder a run's prompt files live in, and the clean-up of
folders that killed runs left behind.

Each orchestrator makes one folder in the system's temporary folder,
``choo-prompts-<run id>-<pid>-<random>``, mode 0700 (``tempfile.mkdtemp``),
so that no other user can read a prompt or swap a file under an agent.
A prompt file lives there for one attempt; the folder goes when the run
ends. A run killed with SIGKILL cannot remove its own: each new one first
removes the folders of the user's whose pid no longer runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from choo.errors import ChooError

PREFIX = "choo-prompts-"
# mkdtemp's random part is [a-z0-9_]; the run ID is cleaned to that too.
_NAME = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_]+-(?P<pid>\d+)-[a-z0-9_]+")


class PromptFileError(ChooError):
    """A prompt file could not be written (a full disk, a folder gone)."""


class PromptDir:
    """One run's prompt folder: a file per attempt, removed after it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def prompt_file(self, name: str, text: str) -> Iterator[Path]:
        """``text`` in a file of the folder (mode 0600) while the block runs."""
        path = self.path / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".md")
        try:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with open(fd, "w", encoding="utf-8") as f:
                    f.write(text)
            except OSError as exc:
                raise PromptFileError(
                    f"could not write the prompt file {path}: {exc.strerror or exc}"
                ) from None
            yield path
        finally:
            with contextlib.suppress(OSError):
                path.unlink()


@contextlib.contextmanager
def open_prompt_dir(run_id: str, *, base: Path | None = None) -> Iterator[PromptDir]:
    """A new private folder for ``run_id``'s prompts, removed at the end.

    Folders that dead runs left in ``base`` (the temporary folder) go first.
    """
    base = base or Path(tempfile.gettempdir())
    remove_stale(base)
    tag = re.sub(r"[^A-Za-z0-9_]", "_", run_id)
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{tag}-{os.getpid()}-", dir=base))
    try:
        yield PromptDir(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale(base: Path) -> list[Path]:
    """Remove this user's prompt folders in ``base`` whose run's pid is gone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match is None or not _ours(entry) or _alive(int(match["pid"])):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _ours(entry: os.DirEntry[str]) -> bool:
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    return entry.is_dir(follow_symlinks=False) and st.st_uid == os.getuid()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: that pid runs
    return True
