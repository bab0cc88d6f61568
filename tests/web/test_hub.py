"""The live hub on its own: who gets which batch, and who gets dropped."""

from __future__ import annotations

import trio

from choo_daemon import hub as hub_module
from choo_daemon.dbmsg import Outcome
from choo_daemon.hub import LiveHub
from choo_daemon.store import EventRow
from choo_daemon.writer import Committed


def rows(run: str, *seqs: int) -> list[EventRow]:
    time = "2026-01-01T00:00:00.000Z"
    return [(run, s, time, "task.started", None, None, None, None, None) for s in seqs]


def outcome(rows: list[EventRow], changes: list[tuple[str, str]] | None = None) -> Committed:
    out = Committed(Outcome(runs_changed=changes or []), [])
    out._rows = rows  # as if made from the events of a batch
    return out


async def test_publishing_without_subscribers_only_counts() -> None:
    hub = LiveHub()
    hub.publish(outcome(rows("a", 1, 2)))
    assert hub.statistics() == {
        "subscribers": 0,
        "run_subscribers": 0,
        "live_subscribers": 0,
        "batches_published": 1,
        "batches_delivered": 0,
        "subscribers_dropped": 0,
    }


async def test_run_subscribers_get_their_run_and_live_ones_share_everything() -> None:
    hub = LiveHub()
    with (
        hub.subscribe(run_id="a") as run_a,
        hub.subscribe(run_id="c") as run_c,
        hub.subscribe() as all_1,
        hub.subscribe() as all_2,
    ):
        mixed = rows("a", 1) + rows("b", 1) + rows("a", 2)
        hub.publish(outcome(mixed, [("b", "run.start"), ("a", "run.complete")]))
        mine = await run_a.receive()
        assert mine is not None
        assert list(mine.rows) == rows("a", 1, 2) and list(mine.changes) == [("a", "run.complete")]
        one, two = await all_1.receive(), await all_2.receive()
        assert one is not None and one is two  # the same object: publish copies nothing
        assert list(one.rows) == mixed
        with trio.move_on_after(0.01) as nothing:
            await run_c.receive()  # run c was in no batch
        assert nothing.cancelled_caught
        assert hub.statistics()["run_subscribers"] == 2
    assert hub.statistics()["subscribers"] == 0


async def test_a_repository_filter_skips_batches_of_runs_known_elsewhere() -> None:
    hub = LiveHub()
    hub.remember_repo("a", "/a")
    hub.remember_repo("b", "/b")
    with hub.subscribe(repo="/a") as sub:
        hub.publish(outcome(rows("b", 1)))  # only /b: skipped
        hub.publish(outcome(rows("x", 1)))  # unknown run: delivered, the stream decides
        hub.publish(outcome(rows("b", 2) + rows("a", 1)))
        got = [await sub.receive(), await sub.receive()]
        assert [[r[:2] for r in b.rows] for b in got if b] == [
            [("x", 1)],
            [("b", 2), ("a", 1)],
        ]


async def test_a_subscriber_that_falls_behind_is_dropped_and_publish_goes_on() -> None:
    hub = LiveHub(buffer_events=5)
    with hub.subscribe(run_id="a") as slow, hub.subscribe(run_id="a") as keeping_up:
        for n in range(1, 40, 3):
            hub.publish(outcome(rows("a", n, n + 1, n + 2)))
            batch = await keeping_up.receive()
            assert batch is not None and batch.rows[0][1] == n
        assert slow.dropped and not keeping_up.dropped
        assert await slow.receive() is None  # at once, buffered batches or not
        stats = hub.statistics()
        assert stats["subscribers_dropped"] == 1 and stats["subscribers"] == 1


async def test_a_single_large_batch_is_accepted_by_an_idle_subscriber() -> None:
    hub = LiveHub(buffer_events=10)
    with hub.subscribe() as sub:
        hub.publish(outcome(rows("a", *range(1, 101))))
        batch = await sub.receive()
        assert batch is not None and len(batch.rows) == 100 and not sub.dropped


async def test_closing_ends_subscriptions_after_what_they_hold() -> None:
    hub = LiveHub()
    with hub.subscribe() as sub:
        hub.publish(outcome(rows("a", 1)))
        hub.close()
        assert await sub.receive() is not None
        assert await sub.receive() is None and not sub.dropped
    with hub.subscribe() as late:
        assert await late.receive() is None


async def test_the_repository_cache_stays_small() -> None:
    hub = LiveHub()
    for n in range(hub_module.REPO_CACHE_SIZE + 10):
        hub.remember_repo(f"run{n}", "/r")
    assert hub.repo_of("run0") is None and hub.repo_of("run9") is None
    assert hub.repo_of(f"run{hub_module.REPO_CACHE_SIZE + 9}") == "/r"
