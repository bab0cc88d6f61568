"""DNS-rebinding host check, security headers, and static files that stay in their folder."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from choo_daemon.daemon import Daemon
from choo_web.app import SECURITY_HEADERS, create_app, serve_web
from protocol.home import Home, TokenFile
from tests.web.support import History, bearer, open_sse


def client_of(url: str) -> httpx.AsyncClient:
    """A client of the app at ``url``, sending the test daemon's token."""
    return httpx.AsyncClient(base_url=url, headers=bearer(Home.from_env()))


async def raw_get(url: str, target: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """GET ``target`` byte for byte (httpx would normalise ".."), with the token."""
    parsed = httpx.URL(url)
    assert parsed.port is not None
    auth = bearer(Home.from_env())["Authorization"]
    stream = await trio.open_tcp_stream(parsed.host, parsed.port)
    async with stream:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
            "Connection: close\r\n\r\n"
        )
        await stream.send_all(request.encode())
        data = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(httpx.Headers(_headers(head))["content-length"])
            while len(body) < length:
                body += await stream.receive_some(65536)
    return int(head.split()[1]), body


def _headers(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(name, value.strip()) for name, _, value in (line.partition(":") for line in lines)]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A static folder with a secret file next to it (and a link pointing at it)."""
    static = tmp_path / "static"
    (static / "js").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><title>choo</title>")
    (static / "js" / "app.js").write_text("export const x = 1;\n")
    (static / "style.css").write_text("body { color: black }\n")
    (tmp_path / "secret.txt").write_text("SECRET")
    os.symlink(tmp_path / "secret.txt", static / "link.txt")
    return static


@pytest.fixture
async def serve_app(daemon: Daemon, nursery: trio.Nursery) -> AsyncIterator[Any]:
    """Start another app on the daemon's reader and hub, with other options; yields its URL."""
    stop = trio.Event()

    async def start(**options: Any) -> str:
        token = TokenFile(daemon.home.token).current
        app = create_app(
            daemon.status, reader=daemon.reader, live=daemon.hub, token=token, **options
        )
        url: str = await nursery.start(serve_web, app, "127.0.0.1", 0, stop.wait)
        return url

    yield start
    stop.set()


@pytest.mark.parametrize(
    "host",
    ["localhost", "LocalHost:8080", "127.0.0.1", "127.0.0.1:1", "[::1]", "[::1]:8080",
     "ui.localhost:8080", "localhost."],
)  # fmt: skip
async def test_local_host_names_are_served(web: httpx.AsyncClient, host: str) -> None:
    response = await web.get("/api/health", headers={"Host": host})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil.example",
     "[::2]:8080", "10.0.0.1", "localhostx"],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/api/health", "/api/history/runs", "/", "/api/nope"])
async def test_other_host_names_are_refused(web: httpx.AsyncClient, host: str, path: str) -> None:
    response = await web.get(path, headers={"Host": host})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "forbidden_host" and repr(host) in error["message"]
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


async def test_the_configured_host_is_served(serve_app: Any) -> None:
    url = await serve_app(allowed_hosts=["choo.lan"])
    async with client_of(url) as client:
        assert (await client.get("/api/health", headers={"Host": "choo.lan:8080"})).is_success
        assert (await client.get("/api/health", headers={"Host": "other.lan"})).status_code == 403


async def test_every_response_carries_the_security_headers(
    web: httpx.AsyncClient, history: History
) -> None:
    await history.start("run_h")
    await history.complete("run_h")
    responses = [
        await web.get("/api/health"),
        await web.get("/api/history/runs"),
        await web.get("/api/history/runs/nope"),
        await web.post("/api/repos"),
        await web.get("/static/nothing.js"),
        await web.get("/api/history/runs?limit=x"),
    ]
    async with open_sse(web, "/api/history/runs/run_h/stream") as sse:
        stream_headers = sse.headers
    for headers in [*(r.headers for r in responses), stream_headers]:
        for name, value in SECURITY_HEADERS.items():
            assert headers[name] == value, name
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert SECURITY_HEADERS["Referrer-Policy"] == "no-referrer"


async def test_static_files_and_their_types(serve_app: Any, site: Path) -> None:
    url = await serve_app(static_dir=site)
    async with client_of(url) as client:
        index = await client.get("/")
        assert index.status_code == 200 and index.text.startswith("<!doctype html>")
        assert index.headers["content-type"] == "text/html; charset=utf-8"
        js = await client.get("/static/js/app.js")
        assert js.text == "export const x = 1;\n"
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        css = await client.get("/static/style.css")
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert css.headers["x-content-type-options"] == "nosniff"


async def test_static_files_are_revalidated_and_unchanged_ones_not_sent_again(
    serve_app: Any, site: Path
) -> None:
    url = await serve_app(static_dir=site)
    async with client_of(url) as client:
        first = await client.get("/static/js/app.js")
        assert first.headers["cache-control"] == "no-cache" and "expires" not in first.headers
        etag = first.headers["etag"]
        again = await client.get("/static/js/app.js", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["cache-control"] == "no-cache"
        assert again.headers["x-content-type-options"] == "nosniff"
        (site / "js" / "app.js").write_text("export const x = 2;\n")
        changed = await client.get("/static/js/app.js", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.text == "export const x = 2;\n"
        head = await client.head("/static/style.css")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    "target",
    [
        "/static/../secret.txt",
        "/static/js/../../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/..%2fsecret.txt",
        "/static/js%2f..%2f..%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/link.txt",  # a link inside that points outside
        "/static/js",  # a folder
        "/static/",
        "/static/./style.css",
        "/static/nothing.css",
        "/static/style.css%00.js",
    ],
)
async def test_static_paths_cannot_leave_the_folder(
    serve_app: Any, site: Path, target: str
) -> None:
    url = await serve_app(static_dir=site)
    status, body = await raw_get(url, target)
    assert status == 404, body
    assert b"SECRET" not in body and b"root:" not in body
    assert b'"code":"not_found"' in body


@pytest.mark.parametrize(
    "target", ["/static/../app.py", "/static/%2e%2e%2fapp.py", "/static/../__init__.py"]
)
async def test_the_daemon_never_serves_its_own_code(daemon: Daemon, target: str) -> None:
    assert daemon.web_url is not None
    status, body = await raw_get(daemon.web_url, target)
    assert status == 404 and b"import" not in body


async def test_a_missing_index_is_a_json_404(serve_app: Any, tmp_path: Path) -> None:
    url = await serve_app(static_dir=tmp_path / "empty")
    async with client_of(url) as client:
        response = await client.get("/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "index.html" in response.json()["error"]["message"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "path",
    ["/", "/static/app.js", "/api/history/runs", "/api/history/runs/run_w",
     "/api/history/runs/run_w/events", "/api/history/runs/run_w/stream", "/api/live"],
)  # fmt: skip
async def test_state_changing_methods_are_refused_and_change_nothing(
    web: httpx.AsyncClient, history: History, method: str, path: str
) -> None:
    await history.start("run_w")
    before = (await web.get("/api/history/runs")).json()
    response = await web.request(method, path, json={"status": "completed", "run": "run_x"})
    assert response.status_code == 405, response.text
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, HEAD"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert (await web.get("/api/history/runs")).json() == before


async def test_a_foreign_host_is_refused_before_the_method_is_looked_at(
    web: httpx.AsyncClient,
) -> None:
    response = await web.post("/api/repos", headers={"Host": "evil.example"}, json={})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden_host"


async def test_the_ui_page_carries_a_csp_without_inline_script(web: httpx.AsyncClient) -> None:
    page = await web.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = {
        part.split()[0]: part.split()[1:]
        for part in page.headers["content-security-policy"].split(";")
        if part.strip()
    }
    assert csp["script-src"] == ["'self'"] and csp["default-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert "unsafe" not in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in page.text  # no inline script for a CSP to have to allow
