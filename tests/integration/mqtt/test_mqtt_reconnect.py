"""The broker goes away mid-stream and comes back: reconnect, resubscribe, flush."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from conftest import eventually, run

from flowengine.model import Message
from nodes.mqtt.broker import Broker, MqttBrokerConfig, open_broker

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


@pytest.mark.parametrize("outage_s", [3, 12])
def test_reconnects_within_5_s_of_the_broker_coming_back_without_hammering_it(
        own_mosquitto: Mosquitto, outage_s: float) -> None:
    """Default backoff. The waits double from 0.25-0.5 s and reach their cap (1.5-3 s)
    after about 4.5 s of outage; from then on every wait is the same whatever the
    outage length, so 12 s stands for 30 s or an hour (bench: 30 s measured too)."""
    async def scenario() -> tuple[float, int]:
        config = MqttBrokerConfig(host=own_mosquitto.host, port=own_mosquitto.port,
                                  status_topic=None, client_id=f"outage-{outage_s}")
        async with open_broker("main", config) as broker:
            await broker.wait_connected(5)
            up_at: list[float] = []
            broker.on_change(lambda b: up_at.append(time.monotonic()) if b.connected
                             else None)
            own_mosquitto.stop()
            await eventually(lambda: not broker.connected, timeout=5)
            before = broker.attempts
            await asyncio.sleep(outage_s)  # the outage itself, not a wait for a result
            own_mosquitto.start()
            back = time.monotonic()
            await eventually(lambda: broker.connected, timeout=6)
            return up_at[-1] - back, broker.attempts - before
    delay, attempts = run(scenario())
    assert delay < 5, f"connected {delay:.2f} s after the broker was back"
    # 4 quick attempts in the first 2 s, then one every 1.5 s at the most, and the last
    assert 2 <= attempts <= 4 + outage_s / 1.5 + 1
