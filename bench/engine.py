"""Engine benchmark: messages through a 5-node chain of generic nodes, into a sink.

Prints messages per second and CPU microseconds per message for the engine, and for a
reference run side by side: the same five steps as plain asyncio tasks joined by
asyncio.Queue (the least an asyncio pipeline costs). The ratio is what to watch; the
absolute numbers depend on the machine (a Cerbo GX is about ten times slower).

    .venv/bin/python bench/engine.py [--messages 100000] [--window 64] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flowengine.loader import load_flow
from flowengine.model import Message
from flowengine.node import Node, node_type
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.runtime import Runtime


@dataclass(frozen=True)
class SinkConfig:
    pass


CHAIN = """
id: bench
nodes:
  - {id: scale, type: change, scale: 2.0, to: [calc]}
  - {id: calc, type: change, scale: 1.5, offset: 3, to: [check]}
  - {id: check, type: filter, minimum: -1.0e12, maximum: 1.0e12, to: [rename]}
  - {id: rename, type: change, topic: "out/{topic}", to: [round]}
  - {id: round, type: change, decimals: 1, to: [sink]}
  - {id: sink, type: bench.sink}
"""


@node_type("bench.sink", config=SinkConfig)
class Sink(Node[SinkConfig]):
    """The end of the chain: tells the driver which slot came out (the reference's sink)."""

    done: asyncio.Queue[int] | None = None

    def receive(self, port: str, msg: Message) -> bool:
        assert Sink.done is not None
        Sink.done.put_nowait(int(msg.topic[5:]))
        return True


async def _drive(inject: Callable[[int, int], None], done: asyncio.Queue[int], total: int,
                 window: int) -> float:
    """Keep `window` messages in flight (one per topic) until `total` came out."""
    start = time.process_time()
    sent = 0
    for slot in range(window):
        inject(slot, sent)
        sent += 1
    received = 0
    while received < total:
        slot = await done.get()
        received += 1
        if sent < total:
            inject(slot, sent)
            sent += 1
    return time.process_time() - start


async def engine_run(total: int, window: int) -> tuple[float, float]:
    registry = Registry.default(plugins=False)
    registry.add(Sink)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(CHAIN)
        plan = plan_flow(load_flow(path), registry)
    runtime = Runtime(registry)
    run = await runtime.start_flow(plan)
    done: asyncio.Queue[int] = asyncio.Queue()
    Sink.done = done
    topics = [f"t{slot}" for slot in range(window)]
    first = run.runners["scale"].mailbox

    def inject(slot: int, n: int) -> None:
        first.put("in", Message(topics[slot], float(n)))

    wall = time.perf_counter()
    cpu = await _drive(inject, done, total, window)
    wall = time.perf_counter() - wall
    await runtime.stop()
    return cpu, wall


async def reference_run(total: int, window: int) -> tuple[float, float]:
    """Five tasks, five queues, the same arithmetic: the floor for an asyncio pipeline."""
    steps: list[Callable[[tuple[str, Any]], tuple[str, Any]]] = [
        lambda m: (m[0], m[1] * 2.0),
        lambda m: (m[0], m[1] * 1.5 + 3),
        lambda m: m,
        lambda m: ("out/" + m[0], m[1]),
        lambda m: (m[0], round(m[1], 1)),
    ]
    queues: list[asyncio.Queue[tuple[str, Any]]] = [asyncio.Queue() for _ in range(6)]
    done: asyncio.Queue[int] = asyncio.Queue()

    async def stage(i: int) -> None:
        while True:
            item = steps[i](await queues[i].get())
            queues[i + 1].put_nowait(item)

    async def sink() -> None:
        while True:
            topic, _ = await queues[5].get()
            done.put_nowait(int(topic[5:]))

    tasks = [asyncio.create_task(stage(i)) for i in range(5)] + [asyncio.create_task(sink())]

    def inject(slot: int, n: int) -> None:
        queues[0].put_nowait((f"t{slot}", float(n)))

    wall = time.perf_counter()
    cpu = await _drive(inject, done, total, window)
    wall = time.perf_counter() - wall
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=64, help="messages in flight")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each, alternating; the least CPU of each counts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    asyncio.run(engine_run(2000, args.window))  # warm up imports and caches
    runs: dict[str, list[tuple[float, float]]] = {"engine": [], "reference": []}
    for _ in range(args.rounds):  # alternating, so both see the same load of the machine
        runs["engine"].append(asyncio.run(engine_run(args.messages, args.window)))
        runs["reference"].append(asyncio.run(reference_run(args.messages, args.window)))
    (engine_cpu, engine_wall), (ref_cpu, ref_wall) = (min(runs[k]) for k in runs)
    n = args.messages
    result = {
        "messages": n,
        "engine": {"msg_per_s": n / engine_wall, "cpu_us_per_msg": engine_cpu / n * 1e6},
        "reference": {"msg_per_s": n / ref_wall, "cpu_us_per_msg": ref_cpu / n * 1e6},
    }
    result["ratio_cpu"] = result["engine"]["cpu_us_per_msg"] / result["reference"]["cpu_us_per_msg"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{n} messages through a 5-node chain (change, change, filter, change, change)")
    print(f"{'':22}{'msg/s':>10}{'CPU µs/msg':>14}")
    for name in ("engine", "reference"):
        r = result[name]
        print(f"{name:22}{r['msg_per_s']:>10.0f}{r['cpu_us_per_msg']:>14.1f}")
    print(f"engine / reference CPU per message: {result['ratio_cpu']:.2f}x "
          "(reference: 5 bare asyncio tasks + queues doing the same arithmetic)")


if __name__ == "__main__":
    main()
