"""The daemon's HTTP side: a quart-trio app served by hypercorn.

The app only reads. It is built by ``create_app`` from what the daemon
passes in (a status function, later the store's read side), so that this
package never reaches into the daemon's internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, jsonify
from quart_trio import QuartTrio

log = logging.getLogger("choo.web")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def create_app(status: Callable[[], dict[str, Any]]) -> QuartTrio:
    app = QuartTrio("choo_web")

    @app.get("/api/health")
    async def health() -> Response:
        return jsonify({"ok": True, **status()})

    @app.after_request
    async def add_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    return app


async def serve_web(
    app: QuartTrio,
    host: str,
    port: int,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns; started() with the URL."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = 2.0
    config.include_server_header = False

    class _Status:
        def started(self, binds: list[str] | None = None) -> None:
            url = binds[0] if binds else f"http://{host}:{port}"
            task_status.started(url)

    await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=_Status())
