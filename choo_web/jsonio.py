"""JSON out: one dict per response, serialised with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Response


def dumps(data: Any) -> bytes:
    return orjson.dumps(data)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, mimetype="application/json")
