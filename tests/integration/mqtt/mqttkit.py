"""MQTT test kit: a test client and running one flow against a mosquitto (testkit)."""

from __future__ import annotations

import contextlib
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from testkit.mosquitto import Mosquitto
from testkit.mqtt import Listener, Received, client

from flowengine.connections import Connections
from flowengine.loader import load_flow
from flowengine.model import Message
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.runner import NodeRunner
from flowengine.runtime import FlowRun, Runtime
from nodes.mqtt.broker import Broker

__all__ = ["Listener", "Received", "Tap", "client", "running", "settle"]


async def settle(broker: Broker) -> None:
    """Wait until the broker has handled what `broker` sent so far (its subscriptions).

    A marker published to a topic the same client subscribes to comes back only after
    the broker has processed every packet sent before it on that connection.
    """
    from conftest import eventually

    marker = f"test/settle/{broker.client_id}/{time.monotonic_ns()}"
    seen: list[bytes] = []
    sub = broker.subscribe(marker, lambda _t, payload, _r: seen.append(payload), qos=1)
    broker.publish(marker, "x", qos=1)
    await eventually(lambda: bool(seen), timeout=5)
    sub.cancel()


Tap = Callable[[NodeRunner, str, Message], None]


@contextlib.asynccontextmanager
async def running(flow_yaml: str, server: Mosquitto, directory: Path, *,
                  tap: Tap | None = None, **main: Any) -> AsyncIterator[tuple[Runtime, FlowRun]]:
    """Run one flow in this process with `main` pointing at `server`."""
    registry = Registry.default(plugins=False)
    path = directory / "flow.yaml"
    path.write_text(textwrap.dedent(flow_yaml))
    plan = plan_flow(load_flow(path), registry)
    settings = server.settings(**{"client_id": f"runtime-{directory.name}",
                                  "status_topic": None, **main})
    runtime = Runtime(registry, connections=Connections(registry.connection_kinds,
                                                        {"mqtt": {"main": settings}}))
    try:
        run = await runtime.start_flow(plan, tap=tap)
        broker: Broker = await runtime.connections.get("mqtt", "main")
        await broker.wait_connected(5)
        await settle(broker)
        yield runtime, run
    finally:
        await runtime.stop()
