"""The daemon log: what a client sends cannot forge a line of it, nor drive the
terminal of whoever reads it."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from typing import Any

import protocol
from choo_daemon.logformat import CONTINUATION, OneLineFormatter
from protocol.home import Home, is_locked
from tests.choo.support import wait_until

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ choo")


class RawClient:
    def __init__(self, home: Home) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(os.fspath(home.socket))
        self.decoder = protocol.FrameDecoder()
        self.inbox: list[dict[str, Any]] = []

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.sock.sendall(protocol.encode(message))
        while not self.inbox:
            data = self.sock.recv(65536)
            assert data, "the daemon closed the connection"
            self.inbox += self.decoder.feed(data)
        return self.inbox.pop(0)


def test_a_client_name_with_a_newline_stays_on_its_log_line(daemon_process: Home) -> None:
    home = daemon_process
    client = RawClient(home)
    try:
        _forge(client)
    finally:
        client.sock.close()
    wait_until(lambda: not is_locked(home.root / "daemon.pid"), what="the daemon to stop")

    log = home.log.read_text()
    assert "asked the daemon to shut down" in log
    for line in log.splitlines():
        assert RECORD.match(line) or line.startswith(CONTINUATION), line
    (said,) = [line for line in log.splitlines() if "asked the daemon to shut down" in line]
    assert "x\\x0aFAKE LINE ␛[31mred␛]0;title\\x07\\x0d[" in said
    assert not any(c in log for c in "\x1b\x07\r")


def _forge(client: RawClient) -> None:
    name = "x\nFAKE LINE \x1b[31mred\x1b]0;title\x07\r"
    hello = {"t": "hello", "v": 1, "client": name, "pid": os.getpid()}
    assert client.request(hello)["t"] == "welcome"
    bad = {"t": "run.start", "req": 1, "run": "r\nFORGED run", "repo_path": "/r\n/p"}
    assert client.request(bad)["t"] == "error"
    assert client.request({"t": "shutdown", "req": 2})["t"] == "ok"


def test_a_traceback_keeps_its_lines_each_marked_as_part_of_the_record() -> None:
    formatter = OneLineFormatter()
    try:
        raise ValueError("bad\n2026-01-01 00:00:00,000 INFO choo.daemon: forged")
    except ValueError:
        record = logging.LogRecord(
            "choo.daemon", logging.ERROR, __file__, 1, "from %s", ("a\nb",), sys.exc_info()
        )
    text = formatter.format(record)
    first, *rest = text.splitlines()
    assert first.endswith("choo.daemon: from a\\x0ab")
    assert rest and all(line.startswith(CONTINUATION) for line in rest)
