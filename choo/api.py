"""Reading the history through the daemon's HTTP API (httpx).

The CLI reads history the way the browser does, so both see the same
thing and the daemon stays the only owner of the database.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from choo import daemonctl
from choo.errors import ChooError
from protocol.home import Home, read_token


class HistoryUnavailable(ChooError):
    """No daemon runs, so history cannot be read; the message says how to start it."""


class HistoryError(ChooError):
    """The API answered with an error (unknown run, bad parameter)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def api_error(response: httpx.Response) -> HistoryError:
    """The HistoryError an error response stands for (its JSON, or its first bytes)."""
    try:
        error = orjson.loads(response.content)["error"]
        return HistoryError(response.status_code, error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        return HistoryError(response.status_code, "http_error", response.text[:200])


class HistoryAPI:
    def __init__(self, base_url: str, timeout: float = 10.0, *, token: str | None = None) -> None:
        """``token``: the daemon's web token, sent as a Bearer header."""
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=self.headers)

    @classmethod
    def connect(cls, home: Home) -> HistoryAPI:
        status = daemonctl.query_status(home)
        if status is None or not status.get("web"):
            raise HistoryUnavailable(
                f"no daemon is running for {home.root}; start it with `choo daemon start`"
            )
        return cls(status["web"], token=read_token(home))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HistoryAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        try:
            response = self._http.get(path, params=query)
        except httpx.HTTPError as exc:
            raise HistoryUnavailable(
                f"the daemon's web API at {self.base_url} failed: {exc}"
            ) from None
        if response.status_code >= 400:
            raise api_error(response)
        return orjson.loads(response.content)

    def list_runs(self, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/history/runs", **params)
        return result

    def get_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/api/history/runs/{run_id}")
        return result

    def task_table(self, *, repo: str, limit: int, last: int) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/history/tasks", repo=repo, limit=limit, last=last)
        return result
