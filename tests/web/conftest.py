"""Fixtures: a real daemon (tests/conftest.py), an HTTP client on its web port, and a writer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from choo_daemon.daemon import Daemon
from protocol.home import Home
from tests.daemon.test_session import Peer
from tests.web.support import History, bearer


@pytest.fixture
async def web(daemon: Daemon, home: Home) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the daemon's web API, sending its token."""
    assert daemon.web_url is not None
    async with httpx.AsyncClient(
        base_url=daemon.web_url, headers=bearer(home), timeout=30
    ) as client:
        yield client


@pytest.fixture
async def history(daemon: Daemon, home: Home) -> AsyncIterator[History]:
    peer = await Peer.connect(home)
    Peer.open.remove(peer)
    try:
        yield History(peer)
    finally:
        await peer.stream.aclose()
