"""``choo history import`` reads its file a line at a time, each line capped: a
huge or binary file is refused at its first bad line, in bounded memory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from choo.export import MAX_LINE
from tests.choo.support import CHOO, choo_env

SIZE = 50 * 1024 * 1024
CHUNK = 1024 * 1024
HEADER = (
    b'{"kind":"run","format":1,"id":"run_20260101_000000_abcd","repo_path":"/r",'
    b'"status":"completed","started_at":"2026-01-01T00:00:00.000Z",'
    b'"completed_at":"2026-01-01T00:00:01.000Z","parallelism":1,"total_units":0,'
    b'"completed_units":0,"failed_units":0,"blocked_units":0,"resume_count":0,'
    b'"dry_run":false,"tasks_dir":null,"error":null,"event_count":0,"last_seq":0}\n'
)


def write(path: Path, head: bytes, chunk: Callable[[], bytes]) -> Path:
    with open(path, "wb") as f:
        f.write(head)
        while f.tell() < SIZE:
            f.write(chunk())
    return path


# A parent of its own, so that its children's peak memory is choo's alone.
MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, stdin=subprocess.DEVNULL)
sys.stderr.write(done.stderr)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def import_file(path: Path, cwd: Path) -> tuple[int, str, int]:
    """Run ``choo history import PATH``: its exit code, its stderr, its peak memory (KiB)."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(CHOO), "history", "import", str(path)],
        cwd=cwd,
        env=choo_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    code, maxrss = done.stdout.split()
    return int(code), done.stderr, int(maxrss)


CASES = {
    "binary": (b"", lambda: os.urandom(CHUNK), "line 1: not UTF-8 text"),
    "one endless line": (b"", lambda: b"a" * CHUNK, "line 1: longer than 4.0 MiB"),
    "a huge second line": (HEADER, lambda: b"x" * CHUNK, "line 2: longer than 4.0 MiB"),
    "not an export": (b'{"kind": "event"}\n', lambda: b"{}\n" * (CHUNK // 3), "not a choo export"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_50_mb_file_that_is_not_an_export_is_refused_in_bounded_memory(
    case: str, tmp_path: Path
) -> None:
    head, chunk, says = CASES[case]
    small_code, small_err, small_rss = import_file(write_small(tmp_path), tmp_path)
    assert small_code == 1, small_err
    garbage = write(tmp_path / "garbage.ndjson", head, chunk)
    code, err, rss = import_file(garbage, tmp_path)
    assert code == 1
    assert says in err, err
    assert str(garbage) in err
    assert small_rss > 0 and rss > 0
    # The file is 50 MiB; reading it may add a few lines' worth (before: all of it).
    assert rss - small_rss < 4 * MAX_LINE // 1024, (rss, small_rss)


def write_small(tmp_path: Path) -> Path:
    path = tmp_path / "small.ndjson"
    path.write_bytes(b"{}\n")
    return path
