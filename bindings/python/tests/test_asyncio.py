"""asyncio: claim_async, send_async and messages_async wait on the engine's
waker thread, which resolves the coroutine's future through the loop's
call_soon_threadsafe: no thread per waiter, no polling. Run with
asyncio.run (no plugin needed)."""

import asyncio
import math
import threading
import time

import pytest

import shmq


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "q")


def test_claim_async_is_woken_by_a_send_from_another_thread(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=64) as q:

        def later():
            time.sleep(0.1)
            with shmq.Queue.open(path) as p:
                p.send(b"hello")

        async def main():
            t = threading.Thread(target=later)
            t.start()
            m = await q.claim_async(timeout=10.0)
            t.join()
            return m

        m = asyncio.run(main())
        assert m.data == b"hello"
        m.ack()


def test_timeouts_mean_what_they_mean_for_claim_and_send(path):
    with shmq.Queue.create(path, capacity=2, max_message_size=64) as q:

        async def main():
            with pytest.raises(shmq.Empty):
                await q.claim_async(timeout=0)
            start = time.monotonic()
            with pytest.raises(shmq.Timeout):
                await q.claim_async(timeout=0.1)
            assert time.monotonic() - start >= 0.09
            assert await q.send_async(b"a", timeout=0) == 0
            await q.send_async(b"b")
            with pytest.raises(shmq.Full):
                await q.send_async(b"c", timeout=0)
            with pytest.raises(shmq.Timeout):
                await q.send_async(b"c", timeout=0.05)
            with pytest.raises(shmq.InvalidArgument):
                await q.claim_async(timeout=-1)

        asyncio.run(main())
        assert q.stats().waiting_consumers == 0
        assert q.stats().waiting_producers == 0


def _deadline_within(m, ttl, before_ns, after_ns):
    """The message's deadline is its commit time plus ``ttl`` seconds, the
    commit made between ``before_ns`` and ``after_ns`` (CLOCK_MONOTONIC; the
    engine may stamp it with the coarse clock, up to a tick behind)."""
    assert m.expires_ns is not None
    committed = m.expires_ns - int(ttl * 1e9)
    assert before_ns - 100_000_000 <= committed <= after_ns


def test_send_async_takes_a_ttl_as_send_does(path):
    with shmq.Queue.create(path, capacity=2, max_message_size=64) as q, \
            shmq.Queue.open(path) as c:

        async def main():
            # Without a ttl (and no default on the queue): no deadline.
            await q.send_async(b"none")
            m = c.claim(timeout=0)
            assert m.data == b"none" and m.expires_ns is None
            m.ack()
            # The fast path (room at once) carries the ttl...
            before = time.monotonic_ns()
            await q.send_async(b"fast", ttl=7200.0)
            m = c.claim(timeout=0)
            _deadline_within(m, 7200.0, before, time.monotonic_ns())
            m.ack()
            # ...and so does a send that waited for room.
            await q.send_async(b"a")
            await q.send_async(b"b")
            task = asyncio.ensure_future(q.send_async(b"waited", timeout=10.0, ttl=5400.0))
            await asyncio.sleep(0.05)
            assert not task.done() and q.stats().waiting_producers == 1
            before = time.monotonic_ns()
            c.claim(timeout=0).ack()
            await task
            after = time.monotonic_ns()
            c.claim(timeout=0).ack()
            m = c.claim(timeout=0)
            assert m.data == b"waited"
            _deadline_within(m, 5400.0, before, after)
            m.ack()
            # Checked as send's: negative or infinite is refused.
            for bad in (-1.0, math.inf, math.nan):
                with pytest.raises(shmq.InvalidArgument):
                    await q.send_async(b"x", ttl=bad)

        asyncio.run(main())


def test_send_async_ttl_outlives_the_queue_default(path):
    with shmq.Queue.create(path, capacity=8, message_ttl=0.01) as q:

        async def main():
            await q.send_async(b"old")
            await q.send_async(b"mine", ttl=3600.0)
            await q.send_async(b"default", ttl=0)  # 0: the queue's default, as send's

        asyncio.run(main())
        time.sleep(0.06)
        m = q.claim(timeout=0)
        assert m.data == b"mine"
        m.ack()
        with pytest.raises(shmq.Empty):
            q.claim(timeout=0)
        assert [d.reason for d in q.dead_letters()] == ["expired", "expired"]
        assert q.stats().expired == 2


def test_many_coroutines_lose_and_double_nothing(path):
    per, producers, consumers = 500, 4, 4
    total = per * producers
    with shmq.Queue.create(path, capacity=8, max_message_size=64) as q:
        seen = set()

        async def producer(n):
            with shmq.Queue.open(path) as p:
                for i in range(per):
                    await p.send_async(f"{n}:{i}".encode())

        async def consumer():
            with shmq.Queue.open(path) as c:
                while len(seen) < total:
                    try:
                        m = await c.claim_async(timeout=0.05)
                    except shmq.Timeout:
                        continue
                    assert m.data not in seen, "delivered twice"
                    seen.add(m.data)
                    m.ack()

        async def main():
            await asyncio.gather(*[producer(n) for n in range(producers)],
                                 *[consumer() for _ in range(consumers)])

        asyncio.run(main())
        assert len(seen) == total
        assert q.stats().depth == 0


def test_a_cancelled_claim_leaves_no_sleeper_behind(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=64) as q:
        with shmq.Queue.open(path) as c:

            async def main():
                task = asyncio.ensure_future(c.claim_async())
                await asyncio.sleep(0.05)
                assert q.stats().waiting_consumers == 1
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert q.stats().waiting_consumers == 0
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(c.claim_async(), 0.05)
                assert q.stats().waiting_consumers == 0
                # The handle still works.
                q.send(b"after")
                m = await c.claim_async(timeout=1.0)
                assert m.data == b"after"
                m.ack()

            asyncio.run(main())


def test_messages_async_yields_until_the_timeout(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=64) as q:
        for i in range(5):
            q.send(str(i).encode())

        async def main():
            got = []
            async for m in q.messages_async(timeout=0.1):
                got.append(m.data)
                m.ack()
            return got

        assert asyncio.run(main()) == [str(i).encode() for i in range(5)]


def test_a_delayed_message_becomes_claimable_by_time(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=64) as q:
        start = time.monotonic()
        q.send(b"later", delay=0.2)

        async def main():
            return await q.claim_async(timeout=5.0)

        m = asyncio.run(main())
        took = time.monotonic() - start
        assert m.data == b"later"
        assert 0.18 <= took < 4.0
        m.ack()


def test_an_idle_async_consumer_leaves_the_loop_idle(path):
    """While a claim waits, the loop and the process sleep: over half a
    second the process uses a few ms of CPU at most (a generous bound)."""
    with shmq.Queue.create(path, capacity=8, max_message_size=64) as q:

        async def main():
            task = asyncio.ensure_future(q.claim_async(timeout=10.0))
            await asyncio.sleep(0.05)
            cpu0, t0 = time.process_time(), time.monotonic()
            await asyncio.sleep(0.5)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
            with shmq.Queue.open(path) as p:
                p.send(b"wake")
            m = await task
            m.ack()
            return cpu, wall

        cpu, wall = asyncio.run(main())
        print(f"idle asyncio consumer: {cpu * 1e3:.2f} ms CPU over {wall:.2f} s")
        assert cpu < 0.05


def _child_claims_async(q, out):
    """In a forked child: the inherited Queue (which opens the child's own
    handle) waits asynchronously, on the child's own waker thread."""

    async def main():
        return await q.claim_async(timeout=10.0)

    m = asyncio.run(main())
    out.put(m.data)
    m.ack()


def test_a_forked_child_waits_on_its_own_waker_thread(path):
    import multiprocessing

    with shmq.Queue.create(path, capacity=8, max_message_size=64) as q:
        # The parent's waker thread runs before the fork.
        with pytest.raises(shmq.Timeout):
            asyncio.run(q.claim_async(timeout=0.02))
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        child = ctx.Process(target=_child_claims_async, args=(q, out))
        child.start()
        deadline = time.monotonic() + 10
        while q.stats().waiting_consumers == 0:
            assert time.monotonic() < deadline, "the child never waited"
            time.sleep(0.005)
        q.send(b"to the child")
        assert out.get(timeout=10) == b"to the child"
        child.join(10)
        assert child.exitcode == 0
