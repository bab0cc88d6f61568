"""Output tails are scrubbed before they are cut, and cut at a line's start:
a private key longer than the tail, or a token the cut falls into, leaves
nothing of itself in ``output_tail`` (issue 14)."""

from __future__ import annotations

import random

from choo.orchestrator.agentcall import _said
from choo.orchestrator.agentstream import TextParser
from choo.orchestrator.process import Completed
from protocol.redact import MARK
from tests.protocol.test_redact import ALNUM, FILLER, _pem, _pieces

KEY, _ = _pem(random.Random(1414), "RSA PRIVATE KEY", lines=50)
BODY = KEY.splitlines()[1:-1]
TOKEN = "".join(random.Random(1415).choice(ALNUM) for _ in range(36))
OUTPUT = f"{FILLER}$ cat deploy/id_rsa\n{KEY}\n$ echo $GH_TOKEN\ngh{'p'}_{TOKEN}\nok\n"


def _leaks(tail: str) -> list[str]:
    lines = [line for line in BODY if line[:16] in tail]
    return lines + [piece for piece in _pieces(TOKEN, 8) if piece in tail]


def test_a_process_tail_holds_no_key_line_and_no_part_of_a_token() -> None:
    for chars in (20, 30, 45, 1000, 2000, 3000, 10_000):
        tail = Completed(1, OUTPUT, 5, False).tail(chars)
        assert len(tail) <= chars
        assert not _leaks(tail), chars
        assert tail.endswith("ok\n")
    assert MARK in Completed(1, OUTPUT, 5, False).tail(2000)


def test_a_process_tail_starts_at_a_line_start() -> None:
    done = Completed(0, "alpha line\nbeta line\ngamma\n", 5, False)
    assert done.tail(len("ta line\ngamma\n")) == "gamma\n"
    assert done.tail(100) == "alpha line\nbeta line\ngamma\n"


def test_an_agents_words_and_its_stderr_are_scrubbed_before_they_are_cut() -> None:
    parser = TextParser()
    for line in OUTPUT.splitlines():
        parser.feed(line)
    for chars in (30, 2000, 8000):
        assert not _leaks(parser.text_tail(chars)), chars
        done = Completed(1, "", 5, False, errors=OUTPUT)
        said = _said(parser, done, chars)
        assert len(said) <= chars
        assert not _leaks(said), chars
