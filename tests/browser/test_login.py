"""A browser logs in through the URL ``choo daemon start`` printed: the token
leaves the address bar, a cookie stays, and the page asked for is shown."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from tests.browser.conftest import Example
from tests.browser.support import Site


def test_the_printed_login_url_logs_a_browser_in(
    browser: Browser, site: Site, example: Example
) -> None:
    context = browser.new_context(base_url=site.url)
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        refused = page.goto("/")
        assert refused is not None and refused.status == 401
        expect(page.locator("body")).to_contain_text("choo daemon status")

        page.goto(f"{site.login}#/history?run={example.run_id}")
        expect(page).to_have_url(f"{site.url}/#/history?run={example.run_id}")
        expect(page.locator("g.node[data-unit='api']")).to_be_visible()
        (cookie,) = context.cookies(site.url)
        assert cookie["name"] == "choo_token" and cookie["httpOnly"], cookie
        assert cookie["sameSite"] == "Strict" and cookie["value"] in site.login
        # Script cannot read it.
        assert "choo_token" not in page.evaluate("document.cookie")
    finally:
        context.close()
