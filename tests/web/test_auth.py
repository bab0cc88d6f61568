"""Web access by token: every route but /api/health refuses a request without
it (each route of the app's url_map, so that a new one cannot slip through),
a login URL trades it for a cookie, a rotated token is taken at once, and
another local user, who cannot read CHOO_HOME/web.token, is refused."""

from __future__ import annotations

import os
import socket
import stat
from http.cookies import SimpleCookie

import httpx
import pytest
import trio
from werkzeug.routing import Rule

from choo_daemon.daemon import Daemon
from choo_web.app import create_app
from choo_web.auth import COOKIE
from protocol.home import Home, TokenFile, ensure_token, read_token, rotate_token
from tests.web.support import History, bearer, ev, open_sse

NOBODY = 65534
WRONG = "0" * 64
# A value for each argument a route may have (a new argument: add it here).
ARGUMENTS = {"run": "run_auth", "path": "app.js"}


def data_routes(daemon: Daemon) -> list[str]:
    """A URL for every route of the app but /api/health."""
    app = create_app(daemon.status, reader=daemon.reader, live=daemon.hub, token=lambda: None)
    urls = app.url_map.bind("127.0.0.1")
    rules: list[Rule] = list(app.url_map.iter_rules())
    assert len(rules) > 10, rules
    return [
        urls.build(rule.endpoint, {a: ARGUMENTS[a] for a in rule.arguments})
        for rule in rules
        if rule.rule != "/api/health"
    ]


def refused(response: httpx.Response) -> bool:
    if response.status_code != 401:
        return False
    assert response.headers["www-authenticate"] == 'Bearer realm="choo"'
    if response.request.method == "HEAD":
        return True
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    assert "choo daemon status" in error["message"], error
    return True


async def test_the_daemon_makes_a_private_token_at_its_first_start(
    daemon: Daemon, home: Home
) -> None:
    token = read_token(home)
    assert token is not None and len(token) == 64 and int(token, 16) >= 0
    assert stat.S_IMODE(home.token.stat().st_mode) == 0o600
    assert ensure_token(home) == token, "a start keeps the token there is"


def test_a_file_that_holds_no_token_is_replaced(home: Home) -> None:
    home.root.mkdir(mode=0o700, exist_ok=True)
    home.token.write_text("not a token\n")
    assert read_token(home) is None
    token = ensure_token(home)
    assert read_token(home) == token and stat.S_IMODE(home.token.stat().st_mode) == 0o600


async def test_every_route_but_health_refuses_a_request_without_the_token(
    daemon: Daemon, home: Home, history: History
) -> None:
    await history.start("run_auth")
    assert daemon.web_url is not None
    routes = data_routes(daemon)
    wrong_cookie = {"Cookie": f"{COOKIE}={WRONG}"}
    async with httpx.AsyncClient(base_url=daemon.web_url, timeout=30) as client:
        for url in routes:
            for method in ("GET", "HEAD"):
                assert refused(await client.request(method, url)), (method, url)
            assert refused(await client.get(url, headers={"Authorization": f"Bearer {WRONG}"}))
            assert refused(await client.get(url, headers={"Authorization": "Basic eDp5"}))
            assert refused(await client.get(url, headers=wrong_cookie)), url
            assert refused(await client.get(url + "?token=" + WRONG)), url
            # The same URL with the token is answered (HEAD: streams send no body).
            shown = await client.head(url, headers=bearer(home))
            assert shown.status_code != 401, (url, shown.text)
        assert refused(await client.get("/api/no-such-route"))
        assert refused(await client.post("/api/history/runs"))


async def test_health_answers_without_the_token_and_holds_no_history(
    daemon: Daemon, home: Home, history: History
) -> None:
    await history.start("run_secret_name")
    assert daemon.web_url is not None
    async with httpx.AsyncClient(base_url=daemon.web_url) as client:
        open_health = await client.get("/api/health")
        assert open_health.status_code == 200 and open_health.json() == {"ok": True}
        for header in (f"Bearer {WRONG}", "Basic eDp5"):
            wrong = await client.get("/api/health", headers={"Authorization": header})
            assert wrong.status_code == 200 and wrong.json() == {"ok": True}
        full = await client.get("/api/health", headers=bearer(home))
    assert "run_secret_name" in full.json()["active_runs"]


async def test_a_login_url_trades_the_token_for_a_cookie_and_redirects_to_the_clean_url(
    daemon: Daemon, home: Home, history: History
) -> None:
    await history.start("run_auth")
    token = read_token(home)
    assert daemon.web_url is not None and token is not None
    async with httpx.AsyncClient(base_url=daemon.web_url) as client:
        login = await client.get(f"/?token={token}")
        assert login.status_code == 303 and login.headers["location"] == "/"
        assert login.headers["cache-control"] == "no-store"
        (header,) = login.headers.get_list("set-cookie")
        cookie = SimpleCookie(header)[COOKIE]
        assert cookie.value == token and cookie["path"] == "/" and cookie["httponly"]
        assert cookie["samesite"] == "Strict"
        assert (await client.get("/")).status_code == 200, "the cookie logs in"
        assert (await client.get("/api/history/runs/run_auth")).status_code == 200

    async with httpx.AsyncClient(base_url=daemon.web_url) as client:
        deep = await client.get(f"/api/history/runs?limit=1&token={token}&repo=%2Fr%20x")
        assert deep.status_code == 303
        assert deep.headers["location"] == "/api/history/runs?limit=1&repo=%2Fr+x"
        bad = await client.get(f"/?token={WRONG}")
        assert refused(bad) and "set-cookie" not in bad.headers
        assert "token in this URL" in bad.json()["error"]["message"]
    # Only ever a path of this site, never "//elsewhere".
    head = await raw_head(daemon.web_url, f"//evil.example/?token={token}")
    assert head.startswith(b"HTTP/1.1 303 ") and b"\r\nlocation: /evil.example/\r\n" in head


async def raw_head(url: str, target: str) -> bytes:
    """The status line and headers of a GET of ``target`` sent byte for byte."""
    parsed = httpx.URL(url)
    assert parsed.port is not None
    async with await trio.open_tcp_stream(parsed.host, parsed.port) as stream:
        await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
    return data.partition(b"\r\n\r\n")[0] + b"\r\n"


async def test_an_event_stream_needs_the_token(
    daemon: Daemon, home: Home, history: History, web: httpx.AsyncClient
) -> None:
    await history.start("run_auth")
    assert daemon.web_url is not None
    async with httpx.AsyncClient(base_url=daemon.web_url, timeout=30) as client:
        for url in ("/api/live", "/api/history/runs/run_auth/stream"):
            async with client.stream("GET", url) as response:
                await response.aread()
                assert refused(response), url
    await history.send([ev("run_auth", 1)])
    cookie = {"Cookie": f"{COOKIE}={read_token(home)}"}
    async with (
        httpx.AsyncClient(base_url=daemon.web_url) as plain,
        open_sse(plain, "/api/history/runs/run_auth/stream", cookie) as sse,
    ):
        message = await sse.next()
        assert message is not None and message.id == "1"


async def test_a_rotated_token_is_taken_at_once_and_the_old_one_refused(
    daemon: Daemon, home: Home, history: History, web: httpx.AsyncClient
) -> None:
    await history.start("run_auth")
    await history.send([ev("run_auth", 1)])
    old = bearer(home)
    assert (await web.get("/api/history/runs")).status_code == 200
    async with open_sse(web, "/api/history/runs/run_auth/stream") as sse:
        first = await sse.next()
        assert first is not None and first.id == "1"
        rotate_token(home)
        assert refused(await web.get("/api/history/runs", headers=old))
        assert (await web.get("/api/history/runs", headers=bearer(home))).status_code == 200
        # A stream opened with the old token ends at its next message.
        await history.send([ev("run_auth", 2)])
        while (message := await sse.block()) is not None:
            assert message.event != "event", "an event sent after the token changed"


def test_a_token_file_is_read_again_only_when_it_changes(home: Home) -> None:
    home.root.mkdir(mode=0o700, exist_ok=True)
    watched = TokenFile(home.token)
    assert watched.current() is None
    first = ensure_token(home)
    assert watched.current() == first
    second = rotate_token(home)
    assert watched.current() == second != first
    home.token.unlink()
    assert watched.current() is None, "no file: nothing is served"


# -- another local user -----------------------------------------------------------


def _as_other_user(uid: int, token_path: str, port: int, target: str) -> tuple[int, bytes]:
    """In a forked child running as ``uid``: try to read the token file, then
    GET ``target`` from the web port. Returns (exit status, what it saw).

    A fork rather than a subprocess, as in tests/daemon/test_peer_uid.py.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plain system calls only, then _exit
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            try:
                with open(token_path, "rb") as f:
                    os.write(write_end, b"READ " + f.read())
            except PermissionError:
                os.write(write_end, b"TOKEN UNREADABLE\n")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                sock.sendall(request.encode())
                os.write(write_end, _response(sock))
        except BaseException as exc:  # report anything, never return into pytest
            os.write(write_end, f"CHILD ERROR {exc!r}".encode())
            status = 1
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        received = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), received


def _response(sock: socket.socket) -> bytes:
    """One HTTP response with a Content-Length, read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(httpx.Headers(_header_lines(head))["content-length"])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _header_lines(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(name, value.strip()) for name, _, value in (line.partition(":") for line in lines)]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="acting as another user needs root (CI runs as root)",
)
@pytest.mark.parametrize(
    "target", ["/api/history/runs", "/api/history/runs/run_auth/events", "/", "/api/live"]
)
async def test_another_local_user_is_refused(
    daemon: Daemon, home: Home, history: History, target: str
) -> None:
    await history.start("run_auth")
    assert daemon.web_url is not None
    port = httpx.URL(daemon.web_url).port
    assert port is not None
    # Open the folder on purpose: the token file's own mode is what stands in between.
    home.root.chmod(0o711)
    status, seen = await trio.to_thread.run_sync(
        _as_other_user, NOBODY, os.fspath(home.token), port, target
    )
    assert status == 0, seen
    assert seen.startswith(b"TOKEN UNREADABLE\n"), seen
    response = seen.removeprefix(b"TOKEN UNREADABLE\n")
    assert response.startswith(b"HTTP/1.1 401 "), response
    assert b'"code":"unauthorized"' in response and b"run_auth" not in response
