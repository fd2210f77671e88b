"""TransientExecutor: the loop's blocking calls run in threads that end afterwards."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time

import pytest
from conftest import run

from flowengine.threads import TransientExecutor, install


async def settle(count: int, timeout_s: float = 5.0) -> int:
    """threading.active_count() once it is `count` (or the timeout passed)."""
    deadline = time.monotonic() + timeout_s
    while threading.active_count() != count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return threading.active_count()


def test_a_host_name_lookup_leaves_no_thread_behind() -> None:
    before = threading.active_count()

    async def lookups(transient: bool) -> int:
        loop = asyncio.get_running_loop()
        if transient:
            install(loop)
        infos = await loop.getaddrinfo("localhost", 1883, type=socket.SOCK_STREAM)
        assert infos and all(info[4][1] == 1883 for info in infos)
        await asyncio.sleep(0)
        # measured while the loop (and its executor) still lives
        return await settle(before, 5.0 if transient else 0.3)

    assert run(lookups(transient=True)) == before
    # the stock executor keeps its worker for the loop's life: what this replaces
    assert run(lookups(transient=False)) == before + 1


def test_calls_beyond_max_workers_wait_and_all_complete_in_order() -> None:
    executor = TransientExecutor(max_workers=2)
    lock, running, most = threading.Lock(), [0], [0]

    def job(n: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return n * n

    futures = [executor.submit(job, n) for n in range(10)]
    assert [f.result(timeout=5) for f in futures] == [n * n for n in range(10)]
    assert most[0] == 2
    executor.shutdown(wait=True)
    assert executor.workers == 0


def test_errors_reach_the_caller_and_the_worker_goes_on() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        install(loop)

        def broken() -> None:
            raise ValueError("no such host")

        with pytest.raises(ValueError, match="no such host"):
            await loop.run_in_executor(None, broken)
        assert await asyncio.to_thread(sum, [1, 2, 3]) == 6

    run(scenario())


def test_shutdown_waits_for_running_calls_and_refuses_new_ones() -> None:
    executor = TransientExecutor(max_workers=1)
    release = threading.Event()
    first = executor.submit(release.wait, 5)
    queued = executor.submit(lambda: "never")
    assert queued.cancel()  # still waiting for the one worker
    waiter = threading.Thread(target=executor.shutdown, kwargs={"wait": True})
    waiter.start()
    time.sleep(0.05)
    assert waiter.is_alive()  # the running call holds shutdown
    release.set()
    waiter.join(5)
    assert not waiter.is_alive() and first.result() is True
    assert executor.workers == 0
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(print)


def test_shutdown_can_cancel_what_waits() -> None:
    executor = TransientExecutor(max_workers=1)
    release = threading.Event()
    running = executor.submit(release.wait, 5)
    waiting = [executor.submit(lambda: 1) for _ in range(3)]
    executor.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in waiting)
    release.set()
    assert running.result(timeout=5) is True
    with pytest.raises(concurrent.futures.CancelledError):
        waiting[0].result()
