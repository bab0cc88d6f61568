"""daemonctl.start against a daemon that dies while starting."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from choo import daemonctl
from choo.config import load
from protocol.home import Home
from protocol.settings import default


def test_a_daemon_killed_while_starting_is_started_again(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = daemonctl._spawn
    spawned: list[subprocess.Popen[bytes]] = []

    def spawn(home: Home, settings: Any) -> subprocess.Popen[bytes]:
        if not spawned:  # the first one is killed before it can answer
            proc = subprocess.Popen(["sleep", "30"])
            proc.kill()
            proc.wait()
        else:
            proc = real(home, daemonctl.DaemonSettings(port=0))
        spawned.append(proc)
        return proc

    monkeypatch.setattr(daemonctl, "_spawn", spawn)
    result = daemonctl.start(home)
    assert len(spawned) == 2
    assert result.status["web"] and not result.already_running
    assert daemonctl.stop(home) == result.status["pid"]


def test_a_daemon_that_fails_to_start_is_not_retried(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def spawn(home: Home, settings: Any) -> subprocess.Popen[bytes]:
        calls.append(1)
        return subprocess.Popen(["false"])

    monkeypatch.setattr(daemonctl, "_spawn", spawn)
    with pytest.raises(daemonctl.DaemonControlError, match="exited with code 1"):
        daemonctl.start(home, timeout=5)
    assert calls == [1]


def test_a_repository_does_not_choose_the_daemons_address_port_or_retention(
    tmp_path: Path,
) -> None:
    (tmp_path / ".choo.yaml").write_text(
        "daemon: {host: 0.0.0.0, port: 9999}\nhistory.retention_days: 1\n"
    )
    settings = daemonctl.DaemonSettings.from_config(load(tmp_path, env={}))
    argv = daemonctl.daemon_command(Home(tmp_path / "home"), settings)
    assert argv[argv.index("--host") + 1] == default("daemon.host")
    assert argv[argv.index("--port") + 1] == str(default("daemon.port"))
    assert argv[argv.index("--retention-days") + 1] == str(default("history.retention_days"))
