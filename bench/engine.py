"""Engine benchmark: messages through a 5-node chain of generic nodes, into a sink.

Prints messages per second and CPU microseconds per message for the engine, and for a
reference run side by side: the same five steps as plain asyncio tasks joined by
asyncio.Queue (the least an asyncio pipeline costs). The ratio is what to watch; the
absolute numbers depend on the machine (a Cerbo GX is about ten times slower).

    .venv/bin/python bench/engine.py [--messages 100000] [--window 64] [--rounds 3]
                                     [--rate 1000] [--paced 3000] [--json]

Also printed: the cost of each extra node in a chain at a low rate (`--rate` msg/s, each
message waking the loop on its own), from chains of 1 and 21 change nodes: the
difference of their CPU per message, divided by 20.
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


async def engine_run(total: int, window: int, *, queued: bool = False) -> tuple[float, float]:
    """The chain in the engine. Messages enter it as a source node's emit hands them on
    (`NodeRunner.deliver`); `queued`: through the first node's mailbox instead, as when
    that node was busy (the path of every message before direct delivery)."""
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
    first = run.runners["scale"]
    enter = first.mailbox.put if queued else first.deliver

    def inject(slot: int, n: int) -> None:
        enter("in", Message(topics[slot], float(n)))

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


LONG_CHAIN = 21  # against 1 node: 20 extra hops, well above the noise of a loop wake-up


def _chain(length: int) -> str:
    lines = [f"  - {{id: n{i}, type: change, scale: 1.5, offset: 1, to: [n{i + 1}]}}"
             for i in range(length)]
    return "id: paced\nnodes:\n" + "\n".join(lines) + f"\n  - {{id: n{length}, type: bench.sink}}\n"


async def paced_run(length: int, rate: float, total: int) -> float:
    """CPU seconds for `total` messages at `rate` msg/s through `length` change nodes: each
    message wakes the loop on its own, as telemetry does."""
    registry = Registry.default(plugins=False)
    registry.add(Sink)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "paced.yaml"
        path.write_text(_chain(length))
        plan = plan_flow(load_flow(path), registry)
    runtime = Runtime(registry)
    run = await runtime.start_flow(plan)
    done: asyncio.Queue[int] = asyncio.Queue()
    Sink.done = done
    first = run.runners["n0"]
    start_cpu, start = time.process_time(), time.perf_counter()
    for n in range(total):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        first.deliver("in", Message(f"out/t{n % 64}", float(n)))  # what the sink reads
    while done.qsize() < total:
        await asyncio.sleep(0.01)
    cpu = time.process_time() - start_cpu
    await runtime.stop()
    return cpu


def _verdict(value: float, goal: float) -> str:
    return f"goal ≤ {goal:g}: {'meets' if value <= goal else 'misses'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=64, help="messages in flight")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each, alternating; the least CPU of each counts")
    parser.add_argument("--rate", type=float, default=1000,
                        help="msg/s for the cost of each extra node")
    parser.add_argument("--paced", type=int, default=3000,
                        help="messages per paced run (0: skip the paced runs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    asyncio.run(engine_run(2000, args.window))  # warm up imports and caches
    n = args.messages
    runs: dict[str, list[tuple[float, float]]] = {"engine": [], "engine_queued": [],
                                                  "reference": []}
    for _ in range(args.rounds):  # alternating, so all see the same load of the machine
        runs["engine"].append(asyncio.run(engine_run(n, args.window)))
        runs["engine_queued"].append(asyncio.run(engine_run(n, args.window, queued=True)))
        runs["reference"].append(asyncio.run(reference_run(n, args.window)))
    result: dict[str, Any] = {"messages": n}
    for name, measured in runs.items():
        cpu, wall = min(measured)
        result[name] = {"msg_per_s": n / wall, "cpu_us_per_msg": cpu / n * 1e6}
    ref = result["reference"]["cpu_us_per_msg"]
    result["ratio_cpu"] = result["engine"]["cpu_us_per_msg"] / ref
    result["ratio_cpu_queued"] = result["engine_queued"]["cpu_us_per_msg"] / ref
    if args.paced:
        short, long_ = [], []
        for _ in range(args.rounds):
            short.append(asyncio.run(paced_run(1, args.rate, args.paced)))
            long_.append(asyncio.run(paced_run(LONG_CHAIN, args.rate, args.paced)))
        result["per_extra_node_us"] = \
            (min(long_) - min(short)) / (LONG_CHAIN - 1) / args.paced * 1e6
        result["paced"] = {"rate": args.rate, "messages": args.paced,
                           "cpu_us_per_msg_1_node": min(short) / args.paced * 1e6,
                           f"cpu_us_per_msg_{LONG_CHAIN}_nodes": min(long_) / args.paced * 1e6}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{n} messages through a 5-node chain (change, change, filter, change, change) "
          f"into a sink, {args.window} in flight; least CPU of {args.rounds} rounds")
    print(f"{'':34}{'msg/s':>10}{'CPU µs/msg':>12}{'/ reference':>13}")
    labels = {"engine": "engine (entered as a source emits)",
              "engine_queued": "engine (first node's queue)", "reference": "reference"}
    for name, label in labels.items():
        r = result[name]
        ratio = r["cpu_us_per_msg"] / ref
        print(f"{label:34}{r['msg_per_s']:>10.0f}{r['cpu_us_per_msg']:>12.1f}{ratio:>12.2f}x")
    print(f"engine / reference CPU per message: {result['ratio_cpu']:.2f}x, "
          f"{_verdict(result['ratio_cpu'], 1.5)} (reference: 5 bare asyncio tasks + queues "
          "doing the same arithmetic)")
    if args.paced:
        p = result["paced"]
        long_cpu = p[f"cpu_us_per_msg_{LONG_CHAIN}_nodes"]
        print(f"each extra node at {args.rate:.0f} msg/s: {result['per_extra_node_us']:.2f} µs "
              f"CPU, {_verdict(result['per_extra_node_us'], 4)} (chains of 1 and {LONG_CHAIN} "
              f"change nodes: {p['cpu_us_per_msg_1_node']:.1f} and {long_cpu:.1f} µs per "
              f"message, {args.paced} messages each)")


if __name__ == "__main__":
    main()
