"""D-Bus benchmark: change signals of a published service into the flow via dbus.source.

A publisher process (raw dbus-fast) owns com.victronenergy.bench on a private
dbus-daemon and sends N PropertiesChanged signals of /Value, as velib does. The
receiving side is measured twice in the same run, on the same bus:

- reference: a bare dbus-fast connection with one match rule and a message handler
  that takes the value out of each signal (the least a Python consumer can do);
- flow: a `dbus.source` node in the runtime, emitting one message per value.

To measure what the receiver can take (not how fast the publisher is), the
receiver's event loop is held while the publisher sends everything; the bus queues
the signals, and the clock starts when the receiver may read. Printed: signals per
second, CPU microseconds per value, and the flow / reference ratio.

    .venv/bin/python bench/dbus.py [--signals 50000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dbus_fast import Message, MessageType, NameFlag, Variant
from dbus_fast.aio import MessageBus

from flowengine.loader import load_flow
from flowengine.model import Message as FlowMessage
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.runner import NodeRunner
from flowengine.runtime import Runtime
from nodes.dbus.daemon import PrivateBus

NAME = "com.victronenergy.bench"
BUSITEM = "com.victronenergy.BusItem"
FLOW = f"""
id: bench
nodes:
  - {{id: src, type: dbus.source, service: {NAME}, paths: {{value: /Value}}}}
"""


# -- the publisher (a separate process) --------------------------------------------------

async def publish(address: str) -> None:
    """Own NAME, answer GetItems; on "go N" send N signals, then print "sent"."""
    bus = await MessageBus(bus_address=address).connect()

    def answer(msg: Message) -> Message | None:
        if msg.message_type is MessageType.METHOD_CALL and msg.member == "GetItems":
            return Message.new_method_return(msg, "a{sa{sv}}", [
                {"/Value": {"Value": Variant("d", -1.0), "Text": Variant("s", "-1W")}}])
        return None

    bus.add_message_handler(answer)
    # dbus-fast 5.2 drops its connection when a write meets a full socket (EAGAIN);
    # a wide send buffer keeps a burst in the kernel while the daemon catches up
    sock = bus._sock
    assert sock is not None
    for option in (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF):
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, 64 * 1024 * 1024)
                break
    await bus.request_name(NAME, NameFlag.DO_NOT_QUEUE)
    loop = asyncio.get_running_loop()
    while True:
        print("ready", flush=True)
        command, _, count = (await loop.run_in_executor(None, sys.stdin.readline)).partition(" ")
        if command != "go":
            break
        sent: asyncio.Future[None] | None = None
        for n in range(int(count)):
            sent = bus.send(Message.new_signal("/Value", BUSITEM, "PropertiesChanged", "a{sv}", [
                {"Value": Variant("d", float(n)), "Text": Variant("s", f"{n}W")}]))
            if n % 500 == 499:
                await sent  # keep our own write buffer small
        if sent is not None:
            await sent
        await asyncio.sleep(0.3)  # let the daemon take everything in
        print("sent", flush=True)
    bus.disconnect()


@contextmanager
def publisher(address: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, __file__, "--publish", address],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


async def measure(proc: subprocess.Popen[str], total: int, done: asyncio.Event,
                  received: Callable[[], int]) -> tuple[float, float]:
    """Let the publisher send everything while this loop is held; then time the reading."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"go {total}\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "sent"  # blocks the loop on purpose
    assert proc.stdout.readline().strip() == "ready"
    wall, cpu = time.perf_counter(), time.process_time()
    async with asyncio.timeout(120):
        await done.wait()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert received() >= total
    return wall, cpu


# -- receivers ---------------------------------------------------------------------------------

async def reference_run(address: str, proc: subprocess.Popen[str], total: int,
                        ) -> tuple[float, float]:
    bus = await MessageBus(bus_address=address).connect()
    done = asyncio.Event()
    count = 0
    last: Any = None

    def on_message(msg: Message) -> None:
        nonlocal count, last
        if msg.message_type is MessageType.SIGNAL and msg.member == "PropertiesChanged":
            last = msg.body[0]["Value"].value
            count += 1
            if count == total:
                done.set()

    bus.add_message_handler(on_message)
    await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                           interface="org.freedesktop.DBus", member="AddMatch",
                           signature="s", body=[f"type='signal',sender='{NAME}',"
                                                f"interface='{BUSITEM}'"]))
    try:
        return await measure(proc, total, done, lambda: count)
    finally:
        assert last == float(total - 1)
        bus.disconnect()


async def flow_run(proc: subprocess.Popen[str], total: int) -> tuple[float, float]:
    registry = Registry.default(plugins=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(FLOW)
        plan = plan_flow(load_flow(path), registry)
    runtime = Runtime(registry)
    done = asyncio.Event()
    count = 0

    def tap(runner: NodeRunner, port: str, msg: FlowMessage) -> None:
        nonlocal count
        count += 1
        if msg.value == float(total - 1):
            done.set()

    await runtime.start_flow(plan, tap=tap)
    count = 0  # the value read at start
    try:
        return await measure(proc, total, done, lambda: count)
    finally:
        await runtime.stop()


async def run_all(total: int) -> dict[str, Any]:
    async with PrivateBus() as address:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
        with publisher(address) as proc:
            await flow_run(proc, min(total, 5000))  # warm up imports and caches
            flow_wall, flow_cpu = await flow_run(proc, total)
            ref_wall, ref_cpu = await reference_run(address, proc, total)
    result: dict[str, Any] = {
        "signals": total,
        "flow": {"signals_per_s": total / flow_wall, "cpu_us_per_value": flow_cpu / total * 1e6},
        "reference": {"signals_per_s": total / ref_wall,
                      "cpu_us_per_value": ref_cpu / total * 1e6},
    }
    result["ratio_cpu"] = result["flow"]["cpu_us_per_value"] / \
        result["reference"]["cpu_us_per_value"]
    result["ratio_rate"] = result["reference"]["signals_per_s"] / \
        result["flow"]["signals_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--signals", type=int, default=50_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--publish", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        asyncio.run(publish(args.publish))
        return
    result = asyncio.run(run_all(args.signals))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    n = args.signals
    print(f"{n} PropertiesChanged signals from one published service, private dbus-daemon")
    print(f"{'':34}{'signals/s':>10}{'CPU µs/value':>14}")
    for name, label in (("flow", "dbus.source into the flow"),
                        ("reference", "raw dbus-fast handler")):
        r = result[name]
        print(f"{label:34}{r['signals_per_s']:>10.0f}{r['cpu_us_per_value']:>14.1f}")
    print(f"flow / raw dbus-fast CPU per value: {result['ratio_cpu']:.2f}x; "
          f"raw / flow rate: {result['ratio_rate']:.2f}x")


if __name__ == "__main__":
    main()
