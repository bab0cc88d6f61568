"""The memo of finished runs' answers: kept by key, the least recently used dropped first."""

from __future__ import annotations

from choo_web.memo import Memo


async def test_answers_are_kept_by_key_within_the_byte_limit() -> None:
    computed: list[str] = []

    def make(name: str, size: int):  # type: ignore[no-untyped-def]
        async def compute() -> bytes:
            computed.append(name)
            return name.encode() * size

        return compute

    memo = Memo(max_bytes=10)
    assert await memo.answer("a", make("a", 4)) == b"aaaa"
    assert await memo.answer("a", make("a", 4)) == b"aaaa"
    assert await memo.answer("b", make("b", 4)) == b"bbbb"
    assert await memo.answer("a", make("a", 4)) == b"aaaa"  # a is now the latest used
    assert await memo.answer("c", make("c", 4)) == b"cccc"  # 12 bytes: b goes
    assert await memo.answer("b", make("b", 4)) == b"bbbb"
    assert computed == ["a", "b", "c", "b"]
    assert await memo.answer(None, make("n", 1)) == b"n"  # no key: never kept
    assert await memo.answer(None, make("n", 1)) == b"n"
    assert await memo.answer("big", make("x", 11)) == b"x" * 11  # over the limit: not kept
    assert computed == ["a", "b", "c", "b", "n", "n", "x"]
    assert memo.statistics() == {"answers": 2, "bytes": 8, "hits": 2}
