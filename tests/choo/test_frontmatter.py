"""Frontmatter parsing and the byte-preserving status rewrite."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from choo.orchestrator.frontmatter import (
    FrontmatterError,
    InvalidYaml,
    NotAMapping,
    Span,
    UnclosedFrontmatter,
    set_status,
    split,
)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- split ---------------------------------------------------------------------------------


def test_split_returns_mapping_body_and_span_of_the_yaml() -> None:
    text = "---\ntask: 2\ndepends_on: [1]\n---\n# Title\nbody\n"
    meta, body, span = split(text)
    assert meta == {"task": 2, "depends_on": [1]}
    assert body == "# Title\nbody\n"
    assert span == Span(4, 28)
    assert text[span.start : span.end] == "task: 2\ndepends_on: [1]\n"


def test_split_without_frontmatter_gives_none_and_the_whole_text() -> None:
    text = "# Title\n\n---\nnot: frontmatter\n---\n"
    assert split(text) == (None, text, None)


def test_split_needs_the_opening_line_at_the_very_top() -> None:
    text = "\n---\ntask: 1\n---\n"
    assert split(text) == (None, text, None)


def test_split_empty_frontmatter_is_an_empty_mapping() -> None:
    assert split("---\n---\nbody") == ({}, "body", Span(4, 4))


def test_split_comment_only_frontmatter_is_an_empty_mapping() -> None:
    assert split("---\n# just a note\n---\nbody")[0] == {}


def test_split_handles_crlf_and_trailing_blanks_on_delimiters() -> None:
    meta, body, _ = split("--- \r\ntask: 3\r\n---\t\r\nbody\r\n")
    assert meta == {"task": 3}
    assert body == "body\r\n"


def test_split_skips_a_utf8_bom() -> None:
    assert split("\ufeff---\ntask: 1\n---\nx")[:2] == ({"task": 1}, "x")


def test_split_accepts_closing_delimiter_at_end_of_file() -> None:
    assert split("---\ntask: 1\n---") == ({"task": 1}, "", Span(4, 12))


def test_split_does_not_close_on_a_longer_dash_line() -> None:
    meta, body, _ = split("---\na: |\n  ----\n---\nb")
    assert meta == {"a": "----\n"}
    assert body == "b"


def test_unclosed_frontmatter_is_an_error_at_line_1() -> None:
    with pytest.raises(UnclosedFrontmatter) as caught:
        split("---\ntask: 1\n# Title\n")
    assert caught.value.line == 1
    assert "never closed" in str(caught.value)
    assert "add a '---' line" in str(caught.value)


def test_just_an_opening_delimiter_is_unclosed() -> None:
    with pytest.raises(UnclosedFrontmatter):
        split("---\n")


def test_invalid_yaml_reports_the_file_line() -> None:
    text = "---\ntask: 1\nstatus: pending\ndepends_on: [1, 2\nbackpressure: x\n---\nbody\n"
    with pytest.raises(InvalidYaml) as caught:
        split(text)
    # The flow sequence opened on file line 4 runs into `backpressure:` on line 5.
    assert caught.value.line == 5
    assert str(caught.value).startswith("invalid YAML at line 5: ")


def test_invalid_yaml_line_counts_the_bom_free_first_line() -> None:
    with pytest.raises(InvalidYaml) as caught:
        split("\ufeff---\na: b: c\n---\n")
    assert caught.value.line == 2


def test_unprintable_character_is_invalid_yaml_with_its_line() -> None:
    with pytest.raises(InvalidYaml) as caught:
        split("---\ntask: 1\ntitle: a\x07b\n---\n")
    assert caught.value.line == 3
    assert str(caught.value) == "invalid YAML at line 3: the character U+0007 is not allowed"


@pytest.mark.parametrize(
    ("yaml_text", "kind"),
    [("- 1\n- 2\n", "a list"), ("just words\n", 'the text "just words"'), ("42\n", "an integer")],
)
def test_frontmatter_that_is_not_a_mapping_is_an_error(yaml_text: str, kind: str) -> None:
    with pytest.raises(NotAMapping) as caught:
        split(f"---\n{yaml_text}---\n")
    assert str(caught.value) == (
        f"frontmatter must be a YAML mapping of 'key: value' lines, got {kind}"
    )


def test_frontmatter_errors_share_a_base() -> None:
    for error in (UnclosedFrontmatter, InvalidYaml, NotAMapping):
        assert issubclass(error, FrontmatterError)
        assert issubclass(error, ValueError)


# -- set_status ----------------------------------------------------------------------------


def test_set_status_preserves_every_other_byte_of_a_crlf_file(tmp_path: Path) -> None:
    before = (
        b"---\r\n"
        b"# a comment about the task  \r\n"
        b"task: 3   \r\n"
        b"status_note: status is tricky  # status: pending\r\n"
        b"status: in_progress # set by hand\r\n"
        b"meta: {status: pending}\r\n"
        b"depends_on: [1, 2]\r\n"
        b"backpressure: 'pytest -q'\r\n"
        b"---\r\n"
        b"# Routes\r\n"
        b"\r\n"
        b"status: pending in the body is just text   \r\n"
    )
    path = write_bytes(tmp_path / "03-routes.md", before)
    set_status(path, "complete")
    assert path.read_bytes() == before.replace(
        b"status: in_progress # set", b"status: complete # set"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'status: "pending"', b'status: "complete"'),
        (b"status: 'pending'", b"status: 'complete'"),
        (b"status:    pending   ", b"status:    complete   "),
        (b"status: ~", b"status: complete"),
        (b"status:", b"status: complete"),
        (b"status:   ", b"status: complete   "),
        (b"status: ''", b"status: 'complete'"),
        (b"status: pend\n  ing", b"status: complete"),
    ],
)
def test_set_status_rewrites_only_the_value(tmp_path: Path, line: bytes, expected: bytes) -> None:
    path = write_bytes(tmp_path / "01-a.md", b"---\ntask: 1\n" + line + b"\nx: 2\n---\nbody\n")
    set_status(path, "complete")
    assert path.read_bytes() == b"---\ntask: 1\n" + expected + b"\nx: 2\n---\nbody\n"
    assert split(path.read_text())[0] == {"task": 1, "status": "complete", "x": 2}


def test_set_status_adds_a_line_at_the_end_when_absent(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "01-a.md", b"---\r\ntask: 1\r\nstatus_note: x\r\n---\r\nbody")
    set_status(path, "failed")
    assert path.read_bytes() == b"---\r\ntask: 1\r\nstatus_note: x\r\nstatus: failed\r\n---\r\nbody"


def test_set_status_adds_a_line_to_an_empty_frontmatter(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "01-a.md", b"---\n---\nbody\n")
    set_status(path, "complete")
    assert path.read_bytes() == b"---\nstatus: complete\n---\nbody\n"


def test_set_status_adds_frontmatter_to_a_file_without_one(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "01-a.md", b"# Title\r\nbody\r\n")
    set_status(path, "complete")
    assert path.read_bytes() == b"---\r\nstatus: complete\r\n---\r\n# Title\r\nbody\r\n"


def test_set_status_keeps_a_bom_first(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "01-a.md", "\ufeff# T\n".encode())
    set_status(path, "complete")
    assert path.read_bytes() == "\ufeff---\nstatus: complete\n---\n# T\n".encode()


def test_set_status_rewrites_every_duplicate_status_key(tmp_path: Path) -> None:
    path = write_bytes(
        tmp_path / "01-a.md", b"---\nstatus: failed\ntask: 1\nstatus: pending\n---\n"
    )
    set_status(path, "complete")
    assert path.read_bytes() == b"---\nstatus: complete\ntask: 1\nstatus: complete\n---\n"


def test_set_status_in_a_flow_mapping(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "01-a.md", b"---\n{task: 1, status: pending}\n---\n")
    set_status(path, "complete")
    assert path.read_bytes() == b"---\n{task: 1, status: complete}\n---\n"


def test_set_status_keeps_non_ascii_text(tmp_path: Path) -> None:
    before = "---\ntitle: café ☕\nstatus: pending\n---\nnaïve body\n".encode()
    path = write_bytes(tmp_path / "01-a.md", before)
    set_status(path, "in_progress")
    assert path.read_bytes() == before.replace(b"pending", b"in_progress")


@pytest.mark.parametrize(
    "frontmatter",
    [
        b"{task: 1}\n",  # nowhere to add a line
        b"status: [pending]\n",
        b"status: |\n  pending\n",
        b"base: &s pending\nstatus: *s\n",
        b"status: &s pending\nother: *s\n",
        b"status: !!str pending\n",
    ],
)
def test_set_status_refuses_what_it_cannot_rewrite_safely(
    tmp_path: Path, frontmatter: bytes
) -> None:
    before = b"---\n" + frontmatter + b"---\nbody\n"
    path = write_bytes(tmp_path / "01-a.md", before)
    with pytest.raises(FrontmatterError):
        set_status(path, "complete")
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"---\nstatus: pending\n", UnclosedFrontmatter),
        (b"---\nstatus: [\n---\n", InvalidYaml),
        (b"---\n- status\n---\n", NotAMapping),
    ],
)
def test_set_status_on_broken_frontmatter_raises_and_leaves_the_file(
    tmp_path: Path, data: bytes, error: type[FrontmatterError]
) -> None:
    path = write_bytes(tmp_path / "01-a.md", data)
    with pytest.raises(error):
        set_status(path, "complete")
    assert path.read_bytes() == data


def test_set_status_rejects_an_unknown_status(tmp_path: Path) -> None:
    before = b"---\nstatus: pending\n---\n"
    path = write_bytes(tmp_path / "01-a.md", before)
    with pytest.raises(ValueError, match="expected one of pending, in_progress, complete, failed"):
        set_status(path, "done")
    assert path.read_bytes() == before


def test_set_status_replaces_the_file_and_keeps_its_mode(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "01-a.md", b"---\nstatus: pending\n---\n")
    path.chmod(0o640)
    inode = path.stat().st_ino
    set_status(path, "complete")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01-a.md"]


def test_set_status_leaves_the_original_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = b"---\nstatus: pending\n---\n"
    path = write_bytes(tmp_path / "01-a.md", before)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        set_status(path, "complete")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01-a.md"]
