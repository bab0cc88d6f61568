"""JSON out: one dict per response, serialised with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Response


def dumps(data: Any) -> bytes:
    return orjson.dumps(data)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, mimetype="application/json")


def json_text_response(text: bytes, status: int = 200) -> Response:
    """A response whose body is JSON already written (by the store)."""
    return Response(text, status=status, mimetype="application/json")
