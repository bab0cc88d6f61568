"""Errors of the web API; each carries its HTTP status and renders as JSON.

    ApiError              a request the API cannot answer      (status and code vary)
    ├── NotFound          no such run, graph, path or file     (404)
    ├── BadRequest        a parameter or run id prefix is bad  (400)
    ├── MethodNotAllowed  anything but GET or HEAD             (405)
    ├── Unauthorized      no web token, or not the current one (401)
    ├── Forbidden         a Host header that is not ours       (403)
    └── Unavailable       the daemon is shutting down          (503)

The body is always ``{"error": {"code": ..., "message": ...}}``. The read
side (``HistoryReader``) raises ``protocol.errors.Refusal`` with the store's
own codes (``unknown_run``, ``ambiguous_run``, ``bad_cursor``, ...);
``from_refusal`` turns its neutral kind into one of these.
"""

from __future__ import annotations

from typing import Any

from protocol.errors import BAD_REQUEST, NOT_FOUND, UNAVAILABLE, Refusal


class ApiError(Exception):
    status = 500

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class NotFound(ApiError):
    status = 404


class BadRequest(ApiError):
    status = 400


class MethodNotAllowed(ApiError):
    status = 405


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class Unavailable(ApiError):
    status = 503


# How the read side's kinds of refusal map onto the API's errors.
_BY_KIND: dict[str, type[ApiError]] = {
    NOT_FOUND: NotFound,
    BAD_REQUEST: BadRequest,
    UNAVAILABLE: Unavailable,
}


def from_refusal(refusal: Refusal) -> ApiError:
    """The API error for a refusal of the read side, with its code (other kinds are a 500)."""
    return _BY_KIND.get(refusal.kind, ApiError)(refusal.code, refusal.message)


def bad_parameter(name: str, value: str, expected: str) -> BadRequest:
    shown = value if len(value) <= 60 else value[:60] + "..."
    return BadRequest("bad_parameter", f"bad {name} {shown!r}: expected {expected}")
