"""The broker goes away mid-stream and comes back: reconnect, resubscribe, flush."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import eventually, run

from flowengine.model import Message
from nodes.mqtt.broker import Broker

from .mqttkit import Mosquitto, client, running

FLOW = """
    id: stream
    nodes:
      - {id: source, type: mqtt.in, topic: "rc/in/#", to: [echo]}
      - {id: echo, type: mqtt.out, topic: "rc/echo/{topic}"}
      - {id: sink, type: mqtt.out, topic: "rc/out/{topic}", retain: true}
"""


def test_broker_restart_reconnects_resubscribes_and_flushes_the_latest_values(
        own_mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(FLOW, own_mosquitto, tmp_path,
                           status_topic="es-ESS/$SYS/Status") as (runtime, flow_run):
            broker: Broker = await runtime.connections.get("mqtt", "main")
            async with client(own_mosquitto, "before") as other:  # the stream works
                other.listen("rc/echo/#")
                other.broker.publish("rc/in/a", "1", qos=1)
                await eventually(lambda: other.payloads("rc/echo/rc/in/a") == ["1"], 5)
            own_mosquitto.stop()
            await eventually(lambda: not broker.connected, timeout=5)
            sink = flow_run.runners["sink"]
            for value in (1, 2, 3):  # one after the other: the input queue merges topics
                sink.mailbox.put("in", Message("a", value))
                await eventually(lambda v=value: sink.node._last.get("rc/out/a") == str(v))
            sink.mailbox.put("in", Message("b", 10))
            await eventually(lambda: broker.queued == 2)
            assert "not connected" in sink.status.text and sink.status.level == "warning"
            own_mosquitto.start()
            down_until = time.monotonic()
            await eventually(lambda: broker.connected, timeout=5)
            assert time.monotonic() - down_until < 5
            async with client(own_mosquitto, "after") as other:
                other.listen("rc/out/#")
                other.listen("rc/echo/#")
                other.listen("es-ESS/$SYS/Status")
                # the broker started empty: anything retained was sent after the reconnect
                await eventually(lambda: len(other.payloads("rc/out/a")) == 1, timeout=5)
                await eventually(lambda: other.last("es-ESS/$SYS/Status") == "Online", 5)
                assert other.payloads("rc/out/a") == ["3"]
                assert other.payloads("rc/out/b") == ["10"]
                other.broker.publish("rc/in/z", "5", qos=1)  # the subscription is back
                await eventually(lambda: other.payloads("rc/echo/rc/in/z") == ["5"], 5)
            await eventually(lambda: sink.status.level == "ok")
    run(scenario())
