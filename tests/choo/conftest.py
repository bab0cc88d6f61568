"""Fixtures for the orchestrator's tests; the helpers they use are in support.py."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.home import Home
from tests.choo.support import CHOO, History, Repo, choo_env, make_repo


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No user configuration or CHOO_* settings leak in; daemons take a free port."""
    for key in list(os.environ):
        if key.startswith("CHOO_") and key != "CHOO_HOME":
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.setenv("CHOO_DAEMON_PORT", "0")
    monkeypatch.setenv("COLUMNS", "250")  # rich: no wrapped lines to search in


@pytest.fixture
def repo_factory(tmp_path: Path) -> Callable[..., Repo]:
    def factory(
        files: dict[str, str], *, name: str = "repo", config: dict[str, Any] | None = None
    ) -> Repo:
        return make_repo(tmp_path / name, files, config=config)

    return factory


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``choo`` in the background; whatever is still running at the end is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(CHOO), *args],
            cwd=cwd,
            env=env or choo_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.fixture
def history(home: Home) -> History:
    return History(home)


@pytest.fixture
def full_spool(home: Home) -> Iterator[Path]:
    """CHOO_HOME/spool on a 64 KiB tmpfs, already full: a real disk-full spool."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    home.spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    spool = str(home.spool)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", spool], check=True)
    try:
        with open(home.spool / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        yield home.spool
    finally:
        subprocess.run(["umount", spool], check=True)
