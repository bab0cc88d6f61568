#!/usr/bin/env python3
"""Fuzz a real daemon process for a while; a canary client must keep being served.

Starts ``python -m choo_daemon --home TMP --port 0``, then for ``--seconds``
hammers its socket from several connections at once with random and mutated
frames (valid frames with bits flipped, cut short, lengths altered or junk
spliced in; random msgpack values; maps with a real "t" and random fields;
raw bytes), while a canary client streams events and checks every ack.

Prints the frames tried, the connections opened, the canary's events acked,
and whether the daemon survived; exits 1 if it did not (or the canary stalled).

Usage: .venv/bin/python scripts/fuzz_daemon.py [--seconds 60] [--workers 4] [--seed N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
import trio  # noqa: E402

import protocol  # noqa: E402

HEADER = struct.Struct(">I")
NOW = "2026-01-20T14:30:52.123Z"
TYPES = sorted(set(protocol.SCHEMAS) - {"shutdown"})  # shutdown would stop it by design
FIELDS = sorted({f[0] for fields in protocol.SCHEMAS.values() for f in fields})
CANARY_BATCH = 50
CANARY_TIMEOUT = 10.0


class Stats:
    frames = 0
    connections = 0
    bytes = 0
    canary_acked = 0
    canary_error: str | None = None


# -- what the fuzzing connections send ----------------------------------------


def random_char(rng: random.Random) -> str:
    code = rng.randrange(0, 0x2FFFF)
    return chr(code) if not 0xD800 <= code <= 0xDFFF else "\ufffd"  # no lone surrogates


def random_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(10 if depth < 4 else 7)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice([0, 1, -1, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, rng.randrange(-9, 999)])
    if pick == 3:
        return rng.choice([0.5, float("inf"), float("nan"), -0.0, 1e308])
    if pick == 4:
        return "".join(random_char(rng) for _ in range(rng.randrange(12)))
    if pick == 5:
        return rng.randbytes(rng.randrange(12))
    if pick == 6:
        return rng.choice(["run_fuzz", "hello", "event", "ok", "\x00", "🚀", "a" * 200])
    if pick in (7, 8):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {
        rng.choice([*FIELDS, "t", "x"]): random_value(rng, depth + 1)
        for _ in range(rng.randrange(5))
    }


def frame(value: Any) -> bytes:
    body = msgpack.packb(value, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def valid_message(rng: random.Random) -> dict[str, Any]:
    run = "run_fuzz"
    return rng.choice(
        [
            {"t": "hello", "v": 1, "client": "fuzz", "pid": 1},
            {"t": "run.start", "req": 1, "run": run, "repo_path": "/fuzz", "started_at": NOW,
             "parallelism": 1, "total_units": 1},
            {"t": "event", "run": run, "seq": 1, "time": NOW, "type": "task.started",
             "payload": {"n": 1}},
            {"t": "events", "run": run,
             "items": [[2, NOW, "task.started", "u", 1, None, {"a": [1]}, None]]},
            {"t": "status", "req": 2},
            {"t": "run.complete", "req": 3, "run": run, "status": "failed", "completed_at": NOW,
             "completed_units": 0, "failed_units": 1, "blocked_units": 0},
        ]
    )  # fmt: skip


def mutated(rng: random.Random) -> bytes:
    data = bytearray(protocol.encode(valid_message(rng)))
    how = rng.randrange(4)
    if how == 0:  # flip bits
        for _ in range(rng.randrange(1, 5)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == 1:  # cut short
        del data[rng.randrange(len(data)) :]
    elif how == 2:  # alter the length
        size = rng.choice(
            [rng.randrange(2**32), len(data) - 4 + rng.randrange(-8, 9), 0, protocol.MAX_FRAME + 1]
        )
        data[:4] = HEADER.pack(max(0, min(size, 2**32 - 1)))
    else:  # splice in junk
        i = rng.randrange(len(data) + 1)
        data[i:i] = rng.randbytes(rng.randrange(1, 17))
    return bytes(data)


def typed_map(rng: random.Random) -> bytes:
    kind = rng.choice(TYPES)
    msg: dict[str, Any] = {"t": kind}
    for name, *_ in protocol.SCHEMAS[kind]:
        if rng.random() < 0.75:
            msg[name] = random_value(rng)
    return frame(msg)


def fuzz_frame(rng: random.Random) -> bytes:
    pick = rng.randrange(4)
    if pick == 0:
        return mutated(rng)
    if pick == 1:
        return frame(random_value(rng))
    if pick == 2:
        return typed_map(rng)
    return rng.randbytes(rng.randrange(1, 65))


# -- the clients --------------------------------------------------------------


async def fuzz_worker(socket_path: str, rng: random.Random, deadline: float) -> None:
    hello = protocol.encode({"t": "hello", "v": 1, "client": "fuzz", "pid": os.getpid()})
    while trio.current_time() < deadline:
        try:
            stream = await trio.open_unix_socket(socket_path)
        except OSError:
            await trio.sleep(0.01)  # busy (connection limit) or briefly unavailable
            continue
        Stats.connections += 1
        frames = [fuzz_frame(rng) for _ in range(rng.randrange(1, 11))]
        data = (hello if rng.random() < 0.6 else b"") + b"".join(frames)
        Stats.frames += len(frames)
        Stats.bytes += len(data)
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while data:
                    size = rng.randrange(1, 400)
                    await stream.send_all(data[:size])
                    data = data[size:]
                with trio.move_on_after(0.02):
                    while await stream.receive_some(65536):
                        pass


async def canary(socket_path: str, deadline: float) -> None:
    """Streams events in batches and checks that every batch is acked in time."""
    decoder = protocol.FrameDecoder()
    inbox: list[dict[str, Any]] = []
    stream = await trio.open_unix_socket(socket_path)

    async def receive() -> dict[str, Any]:
        with trio.fail_after(CANARY_TIMEOUT):
            while not inbox:
                data = await stream.receive_some(65536)
                if not data:
                    raise EOFError("the daemon closed the canary's connection")
                inbox.extend(decoder.feed(data))
        return inbox.pop(0)

    run = f"run_canary_{os.getpid()}"
    async with stream:
        await stream.send_all(
            protocol.encode({"t": "hello", "v": 1, "client": "canary", "pid": os.getpid()})
            + protocol.encode(
                {"t": "run.start", "req": 1, "run": run, "repo_path": "/canary",
                 "started_at": NOW, "parallelism": 1, "total_units": 1}
            )
        )  # fmt: skip
        assert (await receive())["t"] == "welcome"
        assert (await receive())["t"] == "ok"
        seq = 0
        while trio.current_time() < deadline:
            batch = [
                {"t": "event", "run": run, "seq": n, "time": NOW, "type": "task.started",
                 "payload": {"n": n, "text": "canary 🐤"}}
                for n in range(seq + 1, seq + CANARY_BATCH + 1)
            ]  # fmt: skip
            seq += CANARY_BATCH
            await stream.send_all(protocol.encode_many(batch))
            while Stats.canary_acked < seq:
                reply = await receive()
                if reply["t"] != "ack":
                    raise RuntimeError(f"the canary got {reply}")
                Stats.canary_acked = reply["seq"]
            await trio.sleep(0.005)
        await stream.send_all(protocol.encode({"t": "status", "req": 2}))
        while (reply := await receive())["t"] == "ack":
            pass
        if reply.get("req") != 2 or reply["t"] != "ok":
            raise RuntimeError(f"status after the fuzzing: {reply}")


async def hammer(socket_path: str, seconds: float, workers: int, seed: int) -> None:
    deadline = trio.current_time() + seconds
    async with trio.open_nursery() as nursery:
        for i in range(workers):
            nursery.start_soon(fuzz_worker, socket_path, random.Random(seed + i), deadline)

        async def watched_canary() -> None:
            try:
                await canary(socket_path, deadline)
            except Exception as exc:  # reported in the summary, the fuzzing goes on
                Stats.canary_error = f"{type(exc).__name__}: {exc}"

        nursery.start_soon(watched_canary)


# -- the daemon process ---------------------------------------------------------


def start_daemon(home: Path) -> subprocess.Popen[bytes]:
    log = open(home / "fuzz-daemon.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "choo_daemon", "--home", str(home), "--port", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    socket_path = home / "daemon.sock"
    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode} while starting")
        if socket_path.exists():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the daemon did not open its socket within 10 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=4, help="fuzzing connections at once")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)

    home = Path(tempfile.mkdtemp(prefix="chf", dir="/tmp"))
    home.chmod(0o700)
    proc = start_daemon(home)
    started = time.monotonic()
    try:
        trio.run(hammer, str(home / "daemon.sock"), args.seconds, args.workers, seed)
        survived = proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    elapsed = time.monotonic() - started
    ok = survived and Stats.canary_error is None and proc.returncode == 0
    print(f"fuzz_daemon: {elapsed:.0f} s, seed {seed}, {args.workers} fuzzing connections at once")
    print(f"  frames tried        : {Stats.frames:,} ({Stats.bytes:,} bytes)")
    print(f"  connections         : {Stats.connections:,}")
    print(f"  canary events acked : {Stats.canary_acked:,}")
    print(f"  canary              : {Stats.canary_error or 'served throughout'}")
    verdict = "yes" if survived else "NO"
    print(f"  daemon survived     : {verdict}; exit code on SIGTERM {proc.returncode}")
    if ok:
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"  daemon log          : {home / 'fuzz-daemon.log'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
