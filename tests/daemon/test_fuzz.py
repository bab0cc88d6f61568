"""Fuzzing a running daemon: random and mutated frames over several connections.

After every example a separate, well-behaved client still completes a
handshake, a run.start, a batch of events and their acks; and the daemon's
task is still running (if it had crashed, the test's nursery would raise).
The daemon keeps one home and database across the examples.
The number of frames tried is printed at the end of the module
(``scripts/fuzz_daemon.py`` does the same against a daemon process, for longer).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol
from choo_daemon.daemon import Daemon, DaemonOptions
from protocol.home import Home
from tests.conftest import Summary
from tests.daemon.test_session import NOW, Peer, event

STATS = {"examples": 0, "frames": 0, "connections": 0, "bytes": 0}
_runs = itertools.count(1)


@pytest.fixture
def report_frames(summary: Summary) -> Iterator[None]:
    yield
    summary(
        f"fuzz: {STATS['frames']} frames tried over {STATS['connections']} connections "
        f"in {STATS['examples']} examples ({STATS['bytes']} bytes); the daemon served "
        "a good client after every one"
    )


# -- what a fuzzing connection sends -------------------------------------------

HEADER = struct.Struct(">I")
# Everything a client may send, except "shutdown", which would stop the daemon
# by design rather than by accident.
TYPES = sorted(set(protocol.SCHEMAS) - {"shutdown"})
FIELDS = sorted({f[0] for fields in protocol.SCHEMAS.values() for f in fields})

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from(["run_fuzz", "hello", "event", "-" * 5 + "BEGIN", "\x00", "🚀"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.sampled_from(FIELDS)), inner, max_size=5
        ),
    ),
    max_leaves=20,
)


def frame(value: Any) -> bytes:
    body = msgpack.packb(value, use_bin_type=True)
    return HEADER.pack(len(body)) + body


@st.composite
def typed_maps(draw: st.DrawFn) -> dict[str, Any]:
    """A map with a real "t" and fields of the right names with random values."""
    kind = draw(st.sampled_from(TYPES))
    msg: dict[str, Any] = {"t": kind}
    for name, *_ in protocol.SCHEMAS[kind]:
        if draw(st.booleans()) or draw(st.booleans()):
            msg[name] = draw(values)
    if kind in ("events",) and draw(st.booleans()):
        msg["items"] = draw(st.lists(st.lists(values, min_size=0, max_size=9), max_size=4))
    return msg


def valid_messages(run: str) -> list[dict[str, Any]]:
    return [
        {"t": "hello", "v": 1, "client": "fuzz", "pid": 1},
        {"t": "run.start", "req": 1, "run": run, "repo_path": "/fuzz", "started_at": NOW,
         "parallelism": 1, "total_units": 1},
        event(run, 1, payload={"n": 1, "s": "x"}),
        {"t": "events", "run": run, "items": [[2, NOW, "task.started", "u", 1, None, {}, None]]},
        {"t": "status", "req": 2},
        {"t": "run.graph", "req": 3, "run": run, "nodes": [{"id": "u"}], "edges": [],
         "levels": [["u"]]},
    ]  # fmt: skip


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid frame with bytes flipped, cut short, or its length altered."""
    msg = draw(st.sampled_from(valid_messages("run_fuzz")))
    data = bytearray(protocol.encode(msg))
    how = draw(st.sampled_from(["flip", "truncate", "length", "splice"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "truncate":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif how == "length":
        size = draw(
            st.one_of(
                st.integers(0, 2**32 - 1),
                st.integers(max(0, len(data) - 8), len(data) + 8),
                st.sampled_from([0, 1, protocol.MAX_FRAME, protocol.MAX_FRAME + 1]),
            )
        )
        data[:4] = HEADER.pack(size)
    else:
        junk = draw(st.binary(min_size=1, max_size=16))
        i = draw(st.integers(0, len(data)))
        data[i:i] = junk
    return bytes(data)


frames = st.one_of(
    mutated_frames(),
    values.map(frame),
    typed_maps().map(frame),
    st.binary(min_size=1, max_size=64),
)


@st.composite
def connections(draw: st.DrawFn) -> tuple[bool, list[bytes], list[int]]:
    """(greet first, frames, chunk sizes): one fuzzing connection's script."""
    greet = draw(st.booleans())
    sent = draw(st.lists(frames, min_size=1, max_size=8))
    chunks = draw(st.lists(st.integers(1, 300), min_size=1, max_size=6))
    return greet, sent, chunks


# -- the test -------------------------------------------------------------------


async def fuzz_connection(home: Home, greet: bool, sent: list[bytes], chunks: list[int]) -> None:
    STATS["connections"] += 1
    stream = await trio.open_unix_socket(os.fspath(home.socket))
    async with stream:
        data = b"".join(sent)
        if greet:
            data = protocol.encode({"t": "hello", "v": 1, "client": "fuzz", "pid": 1}) + data
        STATS["frames"] += len(sent)
        STATS["bytes"] += len(data)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            for size in itertools.cycle(chunks):
                if not data:
                    break
                await stream.send_all(data[:size])
                data = data[size:]
            # Read whatever it answers for a moment; then hang up.
            with trio.move_on_after(0.05):
                while await stream.receive_some(65536):
                    pass


async def good_client_works(home: Home) -> None:
    run = f"run_good_{next(_runs)}"
    peer = await Peer.connect(home)  # handshake
    try:
        reply = await peer.start_run(run)
        assert reply["t"] == "ok", reply
        await peer.send(*(event(run, n, payload={"n": n}) for n in range(1, 21)))
        acked = 0
        while acked < 20:
            ack = await peer.receive()
            assert ack["t"] == "ack" and ack["run"] == run, ack
            acked = ack["seq"]
        assert (await peer.request({"t": "status", "req": 9}))["t"] == "ok"
    finally:
        Peer.open.remove(peer)
        await peer.stream.aclose()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(connections(), min_size=1, max_size=4))
async def test_fuzzed_frames_never_stop_the_daemon(
    home: Home, report_frames: None, scripts: list[tuple[bool, list[bytes], list[int]]]
) -> None:
    # pytest-trio runs each example in a trio loop of its own, so the daemon
    # (the same thing the ``daemon`` fixture starts) is started here, on the
    # same home and database every time.
    STATS["examples"] += 1
    home.root.mkdir(mode=0o700, exist_ok=True)
    async with trio.open_nursery() as outer:
        daemon: Daemon = await outer.start(Daemon(DaemonOptions(home=home, port=0)).serve)
        async with trio.open_nursery() as nursery:
            for greet, sent, chunks in scripts:
                nursery.start_soon(fuzz_connection, home, greet, sent, chunks)
        await good_client_works(home)
        daemon.request_shutdown()


@pytest.mark.parametrize("days", [2**63 - 1, 10**9, 36501, 0, -(2**63)])
async def test_a_prune_request_for_an_impossible_age_is_refused_not_fatal(
    daemon: Daemon, home: Home, days: int
) -> None:
    # Found by scripts/fuzz_daemon.py: a huge day count overflowed the date
    # arithmetic inside a background job, and the job's crash took the daemon down.
    peer = await Peer.connect(home)
    reply = await peer.request({"t": "history.prune", "req": 5, "older_than_days": days})
    assert reply["t"] == "error" and reply["req"] == 5 and reply["code"] == "bad_field"
    assert str(days) in reply["message"]
    await good_client_works(home)
