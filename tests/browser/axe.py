"""axe-core for the accessibility audit, fetched from the npm registry at test time.

It is never served by the daemon: the tests inject it into a page whose
context bypasses the CSP (the daemon's forbids inline scripts). The tarball
is checked against the sha512 integrity the registry publishes for the
pinned version (and pinned here, so a cached copy is checked offline too),
and cached under ~/.cache/choo-tests/.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page

AXE_VERSION = "4.10.3"
AXE_INTEGRITY = (
    "sha512-"
    "Xm7bpRXnDSX2YE2YFfBk2FnF0ep6tmG7xPh8iHee8MIcrgq762Nkce856dYtJYLkuIoYZvGfTs/PbZhideTcEg=="
)
REGISTRY = "https://registry.npmjs.org/axe-core"
CACHE = Path.home() / ".cache" / "choo-tests"
SERIOUS = frozenset({"serious", "critical"})


class AxeFetchError(RuntimeError):
    """axe-core could not be fetched or did not match its published integrity."""


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def download() -> bytes:
    """The pinned tarball from the registry, checked against the registry's integrity and ours."""
    try:
        meta = httpx.get(f"{REGISTRY}/{AXE_VERSION}", timeout=30).raise_for_status().json()
        published = meta["dist"]["integrity"]
        tarball = httpx.get(meta["dist"]["tarball"], timeout=120, follow_redirects=True)
        data = tarball.raise_for_status().content
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise AxeFetchError(
            f"could not fetch axe-core {AXE_VERSION} from {REGISTRY}: {exc}; "
            f"the accessibility tests need the npm registry once (then {CACHE} holds it)"
        ) from exc
    if published != AXE_INTEGRITY:
        raise AxeFetchError(
            f"the registry's integrity for axe-core {AXE_VERSION} is {published}, "
            f"but tests/browser/axe.py pins {AXE_INTEGRITY}: check the release, then the pin"
        )
    if integrity_of(data) != published:
        raise AxeFetchError(
            f"axe-core {AXE_VERSION}'s tarball does not match its integrity {published}"
        )
    return data


def axe_source() -> str:
    """axe.min.js of the pinned version, from the cache or the registry."""
    cached = CACHE / f"axe-core-{AXE_VERSION}.tgz"
    data = cached.read_bytes() if cached.exists() else b""
    if integrity_of(data) != AXE_INTEGRITY:
        data = download()
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(cached)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("package/axe.min.js")
        if member is None:
            raise AxeFetchError(f"{cached} holds no package/axe.min.js")
        return member.read().decode()


def serious_violations(page: Page, source: str) -> list[dict[str, Any]]:
    """Run axe on the page as it is now: its serious and critical violations, briefly."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=source)
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"][:5]],
            "summary": v["nodes"][0].get("failureSummary", "") if v["nodes"] else "",
        }
        for v in result
        if v["impact"] in SERIOUS
    ]
