"""CHOO_HOME handled with care: a file, a folder of someone else's or one that
others can write are refused with a clear error (and never chmod-ed); what
choo creates there is the user's alone."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from protocol.home import Home
from tests.choo.support import Repo, choo_env, plan_md, run_choo, stop_daemon, task_md

NOBODY = 65534
PLAN = {"a/IMPLEMENTATION_PLAN.md": plan_md(), "a/01-one.md": task_md(1, "One")}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run what is started inside with this umask (subprocesses inherit it)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def daemon_process(home: Path) -> subprocess.CompletedProcess[str]:
    """The daemon process itself, as `choo daemon start` would run it."""
    return subprocess.run(
        [sys.executable, "-m", "choo_daemon", "--home", str(home), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def assert_refused_everywhere(root: Path, repo: Repo, *needles: str) -> None:
    """`choo daemon start`, `choo run`, `choo daemon status` and the daemon
    process each refuse ``root`` with a message naming it, and no traceback."""
    env = choo_env(CHOO_HOME=str(root))
    before = repo.snapshot()
    results = {
        "daemon start": run_choo("daemon", "start", "--port", "0", cwd=repo.root, env=env),
        "run": run_choo("run", "specs/tasks", cwd=repo.root, env=env),
        "daemon status": run_choo("daemon", "status", cwd=repo.root, env=env),
    }
    for what, result in results.items():
        text = one_line(result.stdout + result.stderr)
        assert result.returncode == 2, (what, text)
        assert f"CHOO_HOME {root}" in text and "set CHOO_HOME" in text, (what, text)
        for needle in needles:
            assert needle in text, (what, needle, text)
        assert "Traceback" not in text, (what, text)
    # The run's first use of CHOO_HOME is the plan's lock, taken before anything starts.
    assert "could not lock the plan, so nothing was run" in one_line(results["run"].stderr)
    assert repo.agent_log() == [] and repo.snapshot() == before, "the run did work"

    direct = daemon_process(root)
    assert direct.returncode == 1, direct.stderr
    assert f"CHOO_HOME {root}" in direct.stderr, direct.stderr
    assert "Traceback" not in direct.stderr, direct.stderr


def test_a_choo_home_that_is_a_file_is_refused_clearly(
    repo_factory: Callable[..., Repo], tmp_path: Path
) -> None:
    repo = repo_factory(PLAN)
    root = Path(f"/tmp/chf{os.getpid()}")
    root.write_text("not a folder\n")
    try:
        assert_refused_everywhere(root, repo, "is a file, not a folder")
        assert root.read_text() == "not a folder\n"
    finally:
        root.unlink()


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o720], ids=["0777", "1777", "0720"])
def test_a_choo_home_others_can_write_is_refused_and_never_chmodded(
    repo_factory: Callable[..., Repo], home: Home, mode: int
) -> None:
    repo = repo_factory(PLAN)
    home.root.chmod(mode)
    who = "group and others" if mode & 0o002 else "group"
    assert_refused_everywhere(home.root, repo, f"can be written by {who}", f"(mode {mode:04o})")
    assert mode_of(home.root) == mode, "the folder's mode was changed"
    assert list(home.root.iterdir()) == [], "something was created in it"


def test_a_choo_home_of_another_user_is_refused_and_left_alone(
    repo_factory: Callable[..., Repo], home: Home
) -> None:
    repo = repo_factory(PLAN)
    if os.geteuid() == 0:
        root = home.root
        os.chown(root, NOBODY, NOBODY)
        owner = f"uid {NOBODY}"
    else:  # not root: any folder of someone else's will do
        root = Path("/")
        owner = "uid 0"
    before = os.stat(root)
    assert_refused_everywhere(root, repo, "not to you", owner)
    after = os.stat(root)
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)
    if root == home.root:
        assert list(root.iterdir()) == []


def test_a_folder_choo_creates_is_private_and_so_are_its_files(
    repo_factory: Callable[..., Repo], home: Home
) -> None:
    repo = repo_factory(PLAN)
    root = home.root / "made" / "here"
    env = choo_env(CHOO_HOME=str(root))
    with umask(0o022):  # a usual umask: without care, files would be 0644
        started = run_choo("daemon", "start", "--port", "0", cwd=home.root, env=env)
    assert started.returncode == 0, started.stderr
    try:
        # Events written, so that the WAL and its index exist while it runs.
        ran = run_choo("run", "--dry-run", "specs/tasks", cwd=repo.root, env=env)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert mode_of(root) == 0o700
        for name in ("history.db", "history.db-wal", "history.db-shm", "daemon.log"):
            assert mode_of(root / name) == 0o600, name
    finally:
        stop = run_choo("daemon", "stop", cwd=home.root, env=env)
        assert stop.returncode == 0, stop.stderr


def test_an_existing_private_enough_home_is_used_as_it_is(home: Home) -> None:
    # Readable by others but writable by the user alone: used, and not chmod-ed.
    home.root.chmod(0o755)
    with umask(0o022):
        started = run_choo("daemon", "start", "--port", "0", cwd=home.root)
    assert started.returncode == 0, started.stderr
    stop_daemon(home)
    assert mode_of(home.root) == 0o755
    assert mode_of(home.database) == 0o600
    assert mode_of(home.log) == 0o600
