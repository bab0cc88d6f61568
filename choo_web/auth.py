"""Web access by token: every route but ``/api/health`` needs it.

The daemon hands the app a function giving the current token (``None``: no
token, so nothing is served). A request shows it one of three ways:

- ``Authorization: Bearer <token>`` (programs: ``choo history``, scripts);
- the ``choo_token`` cookie (browsers);
- ``?token=<token>`` on any URL, once: the login URL that ``choo daemon
  status`` prints. It is answered with a 303 to the same URL without the
  token, setting the cookie (HttpOnly, SameSite=Strict), so that the token
  leaves the address bar and the browser's history.

Comparisons are constant-time. A token that changes (``choo daemon token
--rotate``) is refused at the next request, and an event stream opened with
it ends at its next message or heartbeat.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from quart import Response, g, request

from choo_web.errors import Unauthorized

COOKIE = "choo_token"
QUERY = "token"
# Answer without the token (with no history: see ``authorized``).
OPEN_ENDPOINTS = frozenset({"health"})
COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest a browser keeps a cookie; rotating ends it
HOW_TO = (
    "open the login URL that `choo daemon status` (or `choo daemon token`) prints, or send "
    "`Authorization: Bearer <token>` with the token in CHOO_HOME/web.token"
)

Token = Callable[[], str | None]


def install_token_check(app: Any, token: Token) -> None:
    """Refuse (401) every request without the current token, but for OPEN_ENDPOINTS."""

    @app.before_request  # type: ignore[untyped-decorator]
    async def check_token() -> Response | None:
        expected = token()
        if request.endpoint in OPEN_ENDPOINTS:
            with contextlib.suppress(Unauthorized):  # another scheme: answered all the same
                if same(_credential()[0], expected):
                    g.token = expected
            return None
        offered = request.args.get(QUERY)
        if offered is not None:
            _check(offered, expected, "the token in this URL")
            return _log_in(offered)
        given, what = _credential()
        _check(given, expected, what)
        g.token = expected  # streams check it is still the one
        return None


def authorized() -> bool:
    """Whether this request showed the token (for the routes that answer without it)."""
    return g.get("token") is not None


def _credential() -> tuple[str | None, str]:
    """The token this request shows (header, else cookie), and where it is."""
    header = request.headers.get("Authorization")
    if header is None:
        return request.cookies.get(COOKIE), "the login cookie"
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("unauthorized", f"only Bearer authorization is taken; {HOW_TO}")
    return given.strip(), "the Bearer token"


def _check(given: str | None, expected: str | None, what: str) -> None:
    if given is None:
        raise Unauthorized("unauthorized", f"this needs choo's web token: {HOW_TO}")
    if not same(given, expected):
        raise Unauthorized(
            "unauthorized",
            f"{what} is not the daemon's token (it may have been replaced with "
            f"`choo daemon token --rotate`); {HOW_TO}",
        )


def same(given: str | None, expected: str | None) -> bool:
    """Whether ``given`` is the token, in time that does not depend on where they differ."""
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _log_in(token: str) -> Response:
    """303 to this URL without its token, setting the login cookie."""
    raw = request.query_string.decode("utf-8", "replace")
    query = urlencode([(k, v) for k, v in parse_qsl(raw, keep_blank_values=True) if k != QUERY])
    # One leading slash: "//host/" would send the browser to another site.
    path = quote(request.path.lstrip("/"), safe="/:@!$&'()*+,;=~")
    location = f"/{path}" + (f"?{query}" if query else "")
    response = Response("", status=303)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="Strict",
    )
    return response


def until_revoked(stream: AsyncIterable[bytes], token: Token) -> AsyncIterator[bytes]:
    """``stream``, ended once the token of this request is no longer the daemon's.

    Called while handling the request (it reads the token checked for it).
    """
    return _while_same(stream, token, g.get("token"))


async def _while_same(
    stream: AsyncIterable[bytes], token: Token, opened_with: str | None
) -> AsyncIterator[bytes]:
    async with aclosing(aiter(stream)) as chunks:  # type: ignore[type-var]
        async for chunk in chunks:
            if not same(opened_with, token()):
                return
            yield chunk
