"""What one wake-up of an idle process costs on this machine, in CPU.

A process that sleeps and is woken pays for the wake-up itself (the kernel, cold caches)
before it does any work; at a few hundred wake-ups a minute that is a large part of an
idle runtime's CPU (`bench/soak.py` prints how often the runtime wakes). Three ways to
sleep 10 ms, each repeated and timed with `time.process_time()`:

- a bare `epoll_wait` with a timeout (the floor: the kernel's share);
- an asyncio loop woken by a `call_later` callback (the loop's turn added);
- an asyncio task in `asyncio.sleep` (what `NodeContext.every` and `after` do).

    .venv/bin/python bench/wakeup.py [--times 300] [--period-ms 10]
"""

from __future__ import annotations

import argparse
import asyncio
import select
import time


def bare(times: int, period: float) -> float:
    poller = select.epoll()
    start = time.process_time()
    for _ in range(times):
        poller.poll(period)
    poller.close()
    return (time.process_time() - start) / times


async def callbacks(times: int, period: float) -> float:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = [times]

    def tick() -> None:
        left[0] -= 1
        if left[0]:
            loop.call_later(period, tick)
        else:
            done.set_result(None)

    start = time.process_time()
    loop.call_later(period, tick)
    await done
    return (time.process_time() - start) / times


async def task(times: int, period: float) -> float:
    start = time.process_time()
    for _ in range(times):
        await asyncio.sleep(period)
    return (time.process_time() - start) / times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--times", type=int, default=300)
    parser.add_argument("--period-ms", type=float, default=10.0)
    args = parser.parse_args()
    period = args.period_ms / 1000
    print(f"CPU per wake-up after sleeping {args.period_ms:g} ms ({args.times} each):")
    print(f"  epoll_wait, bare              {bare(args.times, period) * 1e6:7.1f} µs")
    print(f"  asyncio, a call_later         "
          f"{asyncio.run(callbacks(args.times, period)) * 1e6:7.1f} µs")
    print(f"  asyncio, a task's sleep       {asyncio.run(task(args.times, period)) * 1e6:7.1f} µs")


if __name__ == "__main__":
    main()
