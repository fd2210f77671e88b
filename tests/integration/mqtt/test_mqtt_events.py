"""mqtt.in with `keep: every`: QoS 1 events go through a flow one by one, in order."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import eventually, run

from flowengine.model import KeptMessage

from .mqttkit import Mosquitto, client, running, settle

FLOW = """
    id: events
    nodes:
      - {id: source, type: mqtt.in, topic: ev/in, qos: 1, keep: every, to: [sink]}
      - {id: sink, type: mqtt.out, topic: ev/out, qos: 1}
"""


@pytest.fixture
def roomy_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that queues any number of QoS 1 messages for a client (mosquitto keeps
    1000 by default and drops the rest; a burst of 10,000 would test the broker)."""
    broker = Mosquitto(tmp_path)
    with broker.config.open("a") as conf:
        conf.write("max_queued_messages 0\n")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_every_one_of_10000_qos1_messages_reaches_mqtt_out_in_order(
        roomy_mosquitto: Mosquitto, tmp_path: Path) -> None:
    count = 10_000

    async def scenario() -> None:
        async with running(FLOW, roomy_mosquitto, tmp_path) as (runtime, flow_run), \
                client(roomy_mosquitto, "ev") as other:
            other.listen("ev/out")
            await settle(other.broker)
            for n in range(count):  # one topic: any merging by topic would show
                other.broker.publish("ev/in", str(n), qos=1, keep=True)
            await eventually(lambda: len(other.received) >= count, timeout=60)
            await settle(other.broker)
            assert [r.payload for r in other.received] == [str(n) for n in range(count)]
            nodes = runtime.snapshot()["events"]["nodes"]
            assert (nodes["source"]["dropped"], nodes["sink"]["dropped"]) == (0, 0)
            source = flow_run.runners["source"].node
            assert (source.received, source.dropped) == (count, 0)
    run(scenario())


def test_kept_messages_beyond_the_input_queue_are_dropped_oldest_first_and_counted(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """mqtt.out gets 300 events at once (none can be sent in between): its queue holds
    256, so the oldest 44 go, counted; the rest are published in order."""
    flow = FLOW.replace("ev/", "ov/").replace("id: events", "id: overrun")

    async def scenario() -> None:
        async with running(flow, mosquitto, tmp_path) as (runtime, flow_run), \
                client(mosquitto, "ov") as other:
            other.listen("ov/out")
            await settle(other.broker)
            sink = flow_run.runners["sink"]
            for n in range(300):
                sink.mailbox.put("in", KeptMessage("ov/in", n))
            await eventually(lambda: len(other.received) >= 256, timeout=10)
            await settle(other.broker)
            assert [r.payload for r in other.received] == [str(n) for n in range(44, 300)]
            assert runtime.snapshot()["overrun"]["nodes"]["sink"]["dropped"] == 44
    run(scenario())


def test_mqtt_in_drops_the_oldest_beyond_queue_size_counts_and_says_so(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """300 messages handed over in one go (as the broker adapter does with what it has
    read) to an mqtt.in that keeps 100: 200 dropped, the newest 100 go on in order."""
    flow = """
        id: burst
        nodes:
          - {id: source, type: mqtt.in, topic: qs/in, qos: 1, keep: every, queue_size: 100,
             to: [sink]}
          - {id: sink, type: mqtt.out, topic: qs/out, qos: 1}
    """

    async def scenario() -> None:
        async with running(flow, mosquitto, tmp_path) as (_, flow_run), \
                client(mosquitto, "qs") as other:
            other.listen("qs/out")
            await settle(other.broker)
            runner = flow_run.runners["source"]
            for n in range(300):  # what the broker's dispatch calls for each message
                runner.node._on_payload("qs/in", str(n).encode(), False)
            await eventually(lambda: len(other.received) >= 100, timeout=10)
            await settle(other.broker)
            assert [r.payload for r in other.received] == [str(n) for n in range(200, 300)]
            assert runner.node.dropped == 200
            await eventually(lambda: "200 dropped (more than 100 waiting)" in
                             runner.status.text)
            assert runner.status.level == "warning"
    caplog.set_level(logging.INFO)
    run(scenario())
    said = [r.getMessage() for r in caplog.records if "dropping the oldest" in r.getMessage()
            or "caught up" in r.getMessage()]
    assert said == ["burst/source: 100 messages waiting: dropping the oldest (the next "
                    "nodes are slower than the messages come)",
                    "burst/source: caught up; 200 message(s) dropped so far"]


def test_events_wait_in_line_while_the_broker_is_away_and_all_go_out_after(
        own_mosquitto: Mosquitto, tmp_path: Path) -> None:
    flow = FLOW.replace("ev/", "aw/").replace("id: events", "id: away")

    def published() -> int:  # what mosquitto says it received from the runtime
        return sum(1 for line in own_mosquitto.log.read_text().splitlines()
                   if "Received PUBLISH from runtime-" in line and "'aw/out'" in line)

    async def scenario() -> None:
        async with running(flow, own_mosquitto, tmp_path, reconnect_max_ms=500) as (_, run_):
            sink = run_.runners["sink"]
            broker = sink.node._broker
            own_mosquitto.stop()
            await eventually(lambda: not broker.connected, timeout=5)
            before = published()
            for n in range(5):  # one topic: merging by topic would leave only the last
                sink.mailbox.put("in", KeptMessage("aw/in", n))
            await eventually(lambda: len(broker._outbox) == 5)
            own_mosquitto.start()
            await eventually(lambda: published() - before == 5, timeout=10)
            assert not broker._outbox and broker.dropped == 0
    run(scenario())
