"""run_process: output, exit codes, stdin, and nothing left behind after a timeout or a cancel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from choo.orchestrator.process import StartFailed, argv_problem, run_process
from tests.choo.support import kill_quietly, pid_gone


def wait_gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not pid_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def test_output_exit_code_and_stdin(tmp_path: Path) -> None:
    result = await run_process(
        ["sh", "-c", "cat; echo to-stderr >&2; pwd; exit 3"],
        cwd=tmp_path,
        timeout=10,
        stdin=b"from stdin\n",
    )
    assert result.exit_code == 3
    assert not result.ok
    assert not result.timed_out
    assert result.output.splitlines() == ["from stdin", "to-stderr", str(tmp_path)]


async def test_shell_command(tmp_path: Path) -> None:
    result = await run_process("echo a | tr a b && test -d .", cwd=tmp_path, timeout=10, shell=True)
    assert result.ok
    assert result.output == "b\n"


@pytest.mark.parametrize(
    "script",
    [
        # The shell waits for its child when the timeout hits.
        "sleep 30 & echo $! > child.pid; echo started; wait",
        # The shell is gone already, but its child still holds the output open.
        "sleep 30 & echo $! > child.pid; echo started",
    ],
    ids=["leader-alive", "leader-exited"],
)
async def test_timeout_kills_the_whole_process_group(tmp_path: Path, script: str) -> None:
    started = trio.current_time()
    result = await run_process(["sh", "-c", script], cwd=tmp_path, timeout=0.5)
    child = int((tmp_path / "child.pid").read_text())
    try:
        assert result.timed_out
        assert result.exit_code is None
        assert result.output == "started\n"
        assert trio.current_time() - started < 5
        assert wait_gone(child), f"the agent's child {child} outlived the timeout"
    finally:
        kill_quietly(child)


async def test_cancel_kills_the_whole_process_group(tmp_path: Path) -> None:
    with trio.move_on_after(0.5):
        await run_process(
            ["sh", "-c", "sleep 30 & echo $! > child.pid; wait"], cwd=tmp_path, timeout=60
        )
    child = int((tmp_path / "child.pid").read_text())
    try:
        assert wait_gone(child), f"the agent's child {child} outlived the cancel"
    finally:
        kill_quietly(child)


async def test_output_keeps_the_tail(tmp_path: Path) -> None:
    result = await run_process(
        ["sh", "-c", "yes x | head -c 300000; echo THE-END"], cwd=tmp_path, timeout=10
    )
    assert result.ok
    assert len(result.output) <= 64 * 1024
    assert result.output.endswith("x\nTHE-END\n")
    assert result.tail(8) == "THE-END\n"


async def test_lines_are_handed_over_while_the_child_runs(tmp_path: Path) -> None:
    got: list[tuple[str, bool]] = []

    def on_line(line: str) -> None:
        got.append((line, (tmp_path / "exited").exists()))
        if line == "two":
            (tmp_path / "go").touch()

    script = (
        "printf 'one\\ntwo\\n'; while [ ! -e go ]; do sleep 0.02; done; "
        "echo oops >&2; printf 'three\\r\\nlast-without-newline'; touch exited"
    )
    result = await run_process(
        ["sh", "-c", script], cwd=tmp_path, timeout=10, on_line=on_line, merge_stderr=False
    )
    assert result.ok
    assert [line for line, _ in got] == ["one", "two", "three", "last-without-newline"]
    assert not got[0][1] and not got[1][1], "the first lines came before the child went on"
    assert result.errors == "oops\n"  # stderr apart, not among the lines
    assert "oops" not in result.output


async def test_a_child_that_cannot_start_raises_start_failed(tmp_path: Path) -> None:
    with pytest.raises(StartFailed, match=r"could not start `./nope`: no such program"):
        await run_process(["./nope"], cwd=tmp_path, timeout=10)
    (tmp_path / "not-executable").write_text("true\n")
    with pytest.raises(StartFailed, match="permission denied"):
        await run_process([str(tmp_path / "not-executable")], cwd=tmp_path, timeout=10)
    big = "x" * (128 * 1024)
    with pytest.raises(StartFailed, match="argument 1 of the command is 128 KiB, over the 128 KiB"):
        await run_process(["echo", big], cwd=tmp_path, timeout=10)
    assert argv_problem(["echo", big[:-1]]) is None


async def test_the_child_gets_the_environment_given(tmp_path: Path) -> None:
    result = await run_process(
        ["sh", "-c", 'echo "$ONLY_HERE"'], cwd=tmp_path, timeout=10, env={"ONLY_HERE": "yes"}
    )
    assert result.output == "yes\n"
