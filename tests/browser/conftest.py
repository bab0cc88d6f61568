"""Fixtures for the browser tests: one daemon, one browser, one history writer per session.

The daemon is a subprocess with a CHOO_HOME of its own, so the per-test
``home`` fixture (tests/conftest.py) does not touch it. ``choo run`` on a
copy of examples/ starts as soon as the daemon is up and runs while the
first tests do; ``example`` waits for it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Site,
    Writer,
    example_repo,
    log_in,
    new_site,
    remove_site,
    start_example_run,
)


@dataclass
class Example:
    repo: Path
    run_id: str


@dataclass
class Session:
    site: Site
    repo: Path
    proc: subprocess.Popen[str]


@pytest.fixture(scope="session")
def session() -> Iterator[Session]:
    site = new_site()
    repo = example_repo()
    try:
        site.start()
        proc = start_example_run(site, repo)
        yield Session(site, repo, proc)
        if proc.poll() is None:  # no test waited for it: stop it as a user would
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.communicate()
    finally:
        remove_site(site)
        shutil.rmtree(repo, ignore_errors=True)


@pytest.fixture(scope="session")
def site(session: Session) -> Site:
    return session.site


@pytest.fixture(scope="session")
def example(session: Session) -> Example:
    """The example plan, run to completion by the installed ``choo run``."""
    proc = session.proc
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    runs = session.site.get_json("/api/history/runs", repo=str(session.repo))["runs"]
    assert len(runs) == 1, runs
    return Example(session.repo, runs[0]["id"])


@pytest.fixture(scope="session")
def writer(site: Site) -> Iterator[Writer]:
    w = Writer(site.home)
    yield w
    w.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class PageErrors(list[str]):
    """JavaScript errors seen by a page; a test may expect some console noise."""

    def __init__(self) -> None:
        super().__init__()
        self.allowed: list[str] = []  # substrings of console errors the test expects


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(browser: Browser, site: Site, page_errors: PageErrors) -> Iterator[Page]:
    """A page of a browser context logged in through the printed login URL."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=site.url)
    context.set_default_timeout(10_000)
    log_in(context, site)
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors.append(f"page error: {error}"))

    def console(message: object) -> None:
        if getattr(message, "type", "") != "error":
            return
        text = str(getattr(message, "text", ""))
        if any(part in text for part in page_errors.allowed):
            return
        page_errors.append(f"console error: {text}")

    page.on("console", console)
    yield page
    context.close()
    assert not page_errors, page_errors
