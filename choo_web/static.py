"""The UI's files, served from one folder and never from outside it."""

from __future__ import annotations

from pathlib import Path

import trio

STATIC_DIR = Path(__file__).with_name("static")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}


def find_static(root: Path, path: str) -> Path | None:
    """The file ``path`` names inside ``root``, or None (missing, or outside root)."""
    parts = path.split("/")
    if any(part in ("", ".", "..") or "\\" in part or "\0" in part for part in parts):
        return None
    base = root.resolve()
    candidate = base.joinpath(*parts).resolve()  # follows links, so check after
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


async def read_static(root: Path, path: str) -> tuple[bytes, str] | None:
    """(content, content type) of a static file, read off the loop; None if not servable."""

    def read() -> tuple[bytes, str] | None:
        found = find_static(root, path)
        if found is None:
            return None
        try:
            return found.read_bytes(), content_type(found)
        except OSError:
            return None

    return await trio.to_thread.run_sync(read)
