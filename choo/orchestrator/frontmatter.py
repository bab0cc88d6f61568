"""YAML frontmatter of task files: parse it, and rewrite a task's status in place.

A frontmatter block is a ``---`` line at the very top of the file (after an
optional UTF-8 BOM), YAML, then a closing ``---`` line. ``split`` parses it;
``set_status`` changes the ``status:`` value and leaves every other byte of
the file as it was, so that a user's comments, quoting, key order and line
endings survive the orchestrator marking a task complete.

Errors (each a ``choo.errors.ChooError``)::

    FrontmatterError          the frontmatter cannot be used (``line``: 1-based, or None)
    ├── UnclosedFrontmatter   an opening ``---`` without a closing one
    ├── InvalidYaml           the YAML does not parse
    └── NotAMapping           the YAML parses to something other than a mapping
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from choo.errors import ChooError
from choo.orchestrator import planfile

STATUSES: tuple[str, ...] = ("pending", "in_progress", "complete", "failed")
"""Every value a task's ``status:`` may take."""

_BOM = "\ufeff"
_DELIMITER = re.compile(r"---[ \t]*(?:\r\n|\n|\Z)")


class FrontmatterError(ChooError, ValueError):
    """The frontmatter cannot be used; ``line`` is the 1-based file line, if known."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class UnclosedFrontmatter(FrontmatterError):
    pass


class InvalidYaml(FrontmatterError):
    pass


class NotAMapping(FrontmatterError):
    pass


class Span(NamedTuple):
    """Where the frontmatter's YAML source lies: ``text[start:end]``.

    ``end`` is also where the closing ``---`` line starts.
    """

    start: int
    end: int


def split(text: str) -> tuple[dict[Any, Any] | None, str, Span | None]:
    """Split ``text`` into (frontmatter mapping, body, span of the YAML source).

    Without frontmatter the result is ``(None, text, None)``. An empty
    frontmatter block gives ``{}``. Raises a ``FrontmatterError``.
    """
    located = _locate(text)
    if located is None:
        return None, text, None
    span, body_start = located
    data = _load(text, span)
    return data, text[body_start:], span


def set_status(path: Path, status: str) -> None:
    """Rewrite the ``status:`` value in ``path``'s frontmatter, atomically.

    Only the value changes (inside its quotes, if it is quoted); a file
    without a ``status:`` key gets a ``status: X`` line at the end of its
    frontmatter, and a file without frontmatter gets a frontmatter block.
    Raises ``ValueError`` for an unknown status, ``FrontmatterError`` when the
    frontmatter is broken or its status cannot be rewritten safely.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}: expected one of {', '.join(STATUSES)}")
    # Line endings are kept as they are, so they are written back untouched; a
    # file replaced by a FIFO or a device is refused, never waited on.
    text = planfile.read_text(path, root=None, max_bytes=None)
    _atomic_write(path, _with_status(text, status))


def _locate(text: str) -> tuple[Span, int] | None:
    """Find the frontmatter block: (span of its YAML, offset where the body starts)."""
    offset = 1 if text.startswith(_BOM) else 0
    opening = _DELIMITER.match(text, offset)
    if opening is None:
        return None
    start = opening.end()
    for line in re.finditer(r"[^\n]*(?:\n|\Z)", text[start:]):
        if line.start() == line.end():
            break
        closing = _DELIMITER.fullmatch(line.group())
        if closing is not None:
            return Span(start, start + line.start()), start + line.end()
    raise UnclosedFrontmatter(
        "frontmatter opened with '---' on line 1 is never closed: add a '---' line after the YAML",
        line=1,
    )


def _load(text: str, span: Span) -> dict[Any, Any]:
    try:
        data = yaml.safe_load(text[span.start : span.end])
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, span) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NotAMapping(
            f"frontmatter must be a YAML mapping of 'key: value' lines, got {describe(data)}",
            line=_line_of(text, span.start),
        )
    return data


def _yaml_error(exc: yaml.YAMLError, text: str, span: Span) -> InvalidYaml:
    if isinstance(exc, yaml.reader.ReaderError):
        line = _line_of(text, span.start + exc.position)
        char = exc.character  # a code point
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        message = f"invalid YAML at line {line}: the character {shown} is not allowed"
        return InvalidYaml(message, line=line)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError):
        what = exc.problem or exc.context or "cannot parse"
        if exc.context and exc.problem:
            what = f"{exc.problem} ({exc.context})"
    else:
        what = str(exc)
    if mark is None:
        return InvalidYaml(f"invalid YAML in frontmatter: {what}")
    line = _line_of(text, span.start) + mark.line
    return InvalidYaml(f"invalid YAML at line {line}: {what}", line=line)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


_KINDS = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "a mapping",
    type(None): "nothing (null)",
}


def describe(value: object) -> str:
    """Name a YAML value for an error message: 'a list', 'the text "x"'."""
    if isinstance(value, str):
        return f'the text "{value}"'
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def _with_status(text: str, status: str) -> str:
    located = _locate(text)
    if located is None:
        first_break = text.find("\n")
        newline = "\r\n" if first_break > 0 and text[first_break - 1] == "\r" else "\n"
        bom = _BOM if text.startswith(_BOM) else ""
        body = text[len(bom) :]
        return f"{bom}---{newline}status: {status}{newline}---{newline}{body}"
    span, _ = located
    _load(text, span)  # report broken YAML as the reader would see it
    source = text[span.start : span.end]
    root = yaml.compose(source, Loader=yaml.SafeLoader)
    if root is None:
        return _insert_status_line(text, span, status)
    assert isinstance(root, MappingNode)  # _load checked it is a mapping
    pairs = [(key, value) for key, value in root.value if _is_status_key(key)]
    if not pairs:
        if root.flow_style:
            raise FrontmatterError(
                "cannot add a status to a flow-style '{...}' frontmatter: "
                "write it as 'key: value' lines",
                line=_line_of(text, span.start),
            )
        return _insert_status_line(text, span, status)
    ranges = [_value_range(key, value, source, _line_of(text, span.start)) for key, value in pairs]
    # Replace from the end so earlier offsets stay valid; every duplicate
    # key is rewritten, so whichever one a YAML reader keeps says `status`.
    for start, end, prefix in sorted(ranges, reverse=True):
        source = source[:start] + prefix + status + source[end:]
    return text[: span.start] + source + text[span.end :]


def _is_status_key(key: Node) -> bool:
    return isinstance(key, ScalarNode) and key.value == "status"


def _value_range(key: Node, value: Node, source: str, first_line: int) -> tuple[int, int, str]:
    """The offsets, within the YAML source, of the characters to replace, and a prefix.

    The prefix is a space for an empty ``status:``, which needs one after its colon.
    """
    line = first_line + value.start_mark.line
    if not isinstance(value, ScalarNode) or value.style not in (None, "'", '"'):
        raise FrontmatterError(
            "status must be a single word such as 'pending', not a list, mapping or block scalar",
            line=line,
        )
    start, end = value.start_mark.index, value.end_mark.index
    # An alias's node lives at its anchor, elsewhere in the file; an anchored
    # or tagged value would need its decoration rewritten too.
    if start < key.end_mark.index or source[start:end].startswith(("&", "!")):
        raise FrontmatterError(
            "status uses a YAML anchor, alias or tag: write the status as a plain word",
            line=first_line + key.start_mark.line,
        )
    if value.style is not None:
        return start + 1, end - 1, ""  # keep the user's quotes
    return start, end, " " if start == end else ""


def _insert_status_line(text: str, span: Span, status: str) -> str:
    opening = text[: span.start]
    newline = "\r\n" if opening.endswith("\r\n") else "\n"
    return text[: span.end] + f"status: {status}{newline}" + text[span.end :]


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader never sees half a file."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
