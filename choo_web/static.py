"""The UI's files: sent by Quart's ``send_from_directory``, never from outside their folder.

Quart joins the path safely (no ``..``, no absolute path), sends only files,
reads them off the event loop (quart-trio's file body), and answers
conditional requests: with ``Cache-Control: no-cache`` a reload revalidates
each file and gets a 304 while it has not changed. What it does not check is
added here: empty or ``.`` parts (``/static/./x``) are refused, and so is a
link inside the folder that leads out of it.
"""

from __future__ import annotations

from pathlib import Path

import trio
from quart import Response, send_from_directory
from quart_trio.wrappers.response import TrioFileBody, TrioResponse
from werkzeug.exceptions import NotFound as NoFile

from choo_web.errors import NotFound

STATIC_DIR = Path(__file__).with_name("static")

# Python 3.11's own table, which Quart asks, says application/javascript
# unless the system's mime.types says otherwise: name the standard type.
_JAVASCRIPT = "text/javascript"


def _inside(root: Path, path: str) -> bool:
    """Whether ``path`` names a place inside ``root``, with every link followed."""
    parts = path.split("/")
    if any(part in ("", ".", "..") or "\\" in part or "\0" in part for part in parts):
        return False
    base = root.resolve()
    return base.joinpath(*parts).resolve().is_relative_to(base)


async def send_static(root: Path, path: str) -> Response:
    """The file ``path`` inside ``root``, to be revalidated on each use; else NotFound."""
    try:
        if not _inside(root, path):
            raise NoFile()
        javascript = path.endswith((".js", ".mjs"))
        response = await send_from_directory(
            root, path, mimetype=_JAVASCRIPT if javascript else None
        )
    except NoFile:
        raise NotFound("not_found", f"no file {path!r} in the web UI's static folder") from None
    response.headers["Cache-Control"] = "no-cache"
    return response


class _FileBody(TrioFileBody):
    """quart-trio's file body, closing its file when cancelled while it opens it.

    Hypercorn cancels a HEAD request's handler once the headers are out,
    which can be between opening the file and entering the body: quart-trio
    would then leave the file open until the garbage collector finds it.
    """

    async def __aenter__(self) -> _FileBody:
        try:
            await super().__aenter__()
        except BaseException:
            if self.file is not None:
                with trio.CancelScope(shield=True):
                    await self.file.aclose()
            raise
        return self


class StaticResponse(TrioResponse):
    """The app's response class, so that ``send_from_directory`` uses ``_FileBody``."""

    file_body_class = _FileBody
