"""The URLs that log in: ``choo daemon start``, ``status``, ``token`` and ``choo run``
print one, it works in a browser's way (cookie, then the page), and ``choo daemon
token --rotate`` makes the running daemon refuse the old one at once."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from protocol.home import Home, read_token
from tests.choo.support import make_repo, plan_md, run_choo, task_md
from tests.conftest import choo

LOGIN = re.compile(r"log in: (\S+)")


def opens(url: str) -> bool:
    """Whether ``url`` logs a cookie-keeping client in: 303, then the page itself."""
    with httpx.Client() as client:
        login = client.get(url)
        if login.status_code != 303:
            return False
        page = client.get(httpx.URL(url).join(login.headers["location"]))
        return page.status_code == 200 and "choo_token" in client.cookies


@pytest.fixture
def started(home: Home) -> Iterator[str]:
    """``choo daemon start``'s output."""
    result = choo("daemon", "start", "--port", "0")
    assert result.returncode == 0, result.stderr
    yield result.stdout
    choo("daemon", "stop")


def test_start_and_status_print_a_url_that_logs_in(started: str, home: Home) -> None:
    token = read_token(home)
    assert token is not None
    (url,) = LOGIN.findall(started)
    assert url.endswith(f"/?token={token}") and opens(url)
    status = choo("daemon", "status")
    assert LOGIN.findall(status.stdout) == [url]
    shown = json.loads(choo("daemon", "status", "--json").stdout)
    assert shown["login"] == url
    again = choo("daemon", "start")
    assert LOGIN.findall(again.stdout) == [url], "already running: the same URL"
    bare = httpx.get(url.split("?")[0])
    assert bare.status_code == 401 and "choo daemon status" in bare.json()["error"]["message"]


def test_token_prints_the_url_and_rotate_makes_a_new_one_at_once(started: str, home: Home) -> None:
    (old,) = LOGIN.findall(started)
    printed = choo("daemon", "token")
    assert printed.returncode == 0 and printed.stdout.strip() == old
    shown = json.loads(choo("daemon", "token", "--json").stdout)
    assert shown["login"] == old and shown["token_file"] == str(home.token)

    rotated = choo("daemon", "token", "--rotate")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip().splitlines()[-1]
    assert new != old and new.endswith(f"?token={read_token(home)}")
    assert opens(new) and not opens(old)
    web = json.loads(choo("daemon", "status", "--json").stdout)["web"]
    stale = httpx.get(f"{web}/api/history/runs", headers={"Authorization": f"Bearer {old[-64:]}"})
    assert stale.status_code == 401
    assert choo("history", "list", "--all").returncode == 0, "the CLI reads the new token"


def test_token_without_a_daemon_makes_one_and_says_how_to_start(home: Home) -> None:
    result = choo("daemon", "token")
    assert result.returncode == 0, result.stderr
    assert "choo daemon start" in result.stdout and read_token(home) is not None
    assert json.loads(choo("daemon", "token", "--json").stdout)["login"] is None


def test_a_run_prints_urls_that_log_in(tmp_path: Path, home: Home) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {"u/IMPLEMENTATION_PLAN.md": plan_md(), "u/01-one.md": task_md(1, "One")},
    )
    try:
        result = run_choo("run", "specs/tasks", cwd=repo.root)
        assert result.returncode == 0, result.stdout + result.stderr
        (run_id, live) = re.findall(r"run (run_\w+) · live at (\S+)", result.stdout)[0]
        (history,) = re.findall(r"history: (\S+)", result.stdout)
        assert opens(live)
        assert history == f"{live}#/history?run={run_id}"
        assert history.startswith("http://127.0.0.1:") and f"?token={read_token(home)}#" in history
    finally:
        choo("daemon", "stop")
