"""Errors of the web API; each carries its HTTP status and renders as JSON.

    ApiError              a request the API cannot answer      (status and code vary)
    ├── NotFound          no such run, graph, path or file     (404)
    ├── BadRequest        a parameter or run id prefix is bad  (400)
    ├── MethodNotAllowed  anything but GET or HEAD             (405)
    ├── Forbidden         a Host header that is not ours       (403)
    └── Unavailable       the daemon is shutting down          (503)

The body is always ``{"error": {"code": ..., "message": ...}}``. The read
side (``HistoryReader``) raises these with the store's own codes
(``unknown_run``, ``ambiguous_run``, ``bad_cursor``, ``bad_parameter``).
"""

from __future__ import annotations

from typing import Any


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


class Forbidden(ApiError):
    status = 403


class Unavailable(ApiError):
    status = 503


# How the store's error codes map onto the API's errors.
_BY_CODE: dict[str, type[ApiError]] = {
    "unknown_run": NotFound,
    "no_graph": NotFound,
    "ambiguous_run": BadRequest,
    "bad_cursor": BadRequest,
    "bad_parameter": BadRequest,
}


def from_code(code: str, message: str) -> ApiError:
    """The API error for a read-side error code (unknown codes are a 500)."""
    return _BY_CODE.get(code, ApiError)(code, message)


def bad_parameter(name: str, value: str, expected: str) -> BadRequest:
    shown = value if len(value) <= 60 else value[:60] + "..."
    return BadRequest("bad_parameter", f"bad {name} {shown!r}: expected {expected}")
