"""The broker connection against a real mosquitto: dispatch, wildcards, outbox."""

from __future__ import annotations

import asyncio
import signal

from conftest import eventually, run

from nodes.mqtt.broker import Broker, MqttBrokerConfig, open_broker

from .mqttkit import Mosquitto, client, settle


def test_broker_delivers_to_exact_and_wildcard_subscribers_once_each(
        mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        async with client(mosquitto, "a") as a, client(mosquitto, "b") as b:
            a.listen("bw/x/+/power")
            a.listen("bw/#")
            a.listen("bw/x/1/power")
            a.listen("bw/y/+")
            await settle(a.broker)
            b.broker.publish("bw/x/1/power", "42", qos=1)
            await eventually(lambda: len(a.received) >= 3, timeout=5)
            await settle(a.broker)
            assert [r.payload for r in a.received] == ["42"] * 3
    run(scenario())


def test_broker_keeps_the_latest_value_per_topic_until_it_connects(
        own_mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        own_mosquitto.stop()
        config = MqttBrokerConfig(host=own_mosquitto.host, port=own_mosquitto.port,
                                  status_topic=None, outbox_size=2, client_id="outbox",
                                  reconnect_min_ms=50, reconnect_max_ms=100)
        async with open_broker("main", config) as broker:
            for topic, value in [("ob/a", "1"), ("ob/a", "2"), ("ob/b", "3"), ("ob/c", "4")]:
                broker.publish(topic, value, retain=True)
            assert (broker.queued, broker.dropped) == (2, 1)  # ob/a went: the oldest topic
            assert "2 queued; 1 dropped" in broker.describe()
            own_mosquitto.start()
            await broker.wait_connected(5)
            async with client(own_mosquitto, "reader") as reader:
                reader.listen("ob/#")
                await eventually(lambda: len(reader.received) == 2, timeout=5)
                assert {(r.topic, r.payload) for r in reader.received} == \
                    {("ob/b", "3"), ("ob/c", "4")}
    run(scenario())


def test_a_broker_that_stops_reading_costs_bounded_memory_and_gets_the_latest_values(
        own_mosquitto: Mosquitto) -> None:
    """mosquitto frozen with SIGSTOP: the socket fills up, then at most `send_buffer_kb`
    waits in our send buffer and the latest value of each topic in the outbox; after
    SIGCONT every topic arrives with its last value."""
    topics, rounds, size = 200, 10, 20_000
    limit = 64 * 1024

    async def scenario() -> None:
        config = MqttBrokerConfig(host=own_mosquitto.host, port=own_mosquitto.port,
                                  status_topic=None, client_id="slow-writer",
                                  send_buffer_kb=64, outbox_size=topics)
        async with client(own_mosquitto, "reader") as reader, \
                open_broker("main", config) as broker:
            reader.listen("slow/#")
            await settle(reader.broker)
            await broker.wait_connected(5)
            assert own_mosquitto.process is not None
            own_mosquitto.process.send_signal(signal.SIGSTOP)
            try:
                highest = 0
                for n in range(rounds):
                    for t in range(topics):
                        broker.publish(f"slow/{t}", f"{n:02d}" + "x" * size)
                        highest = max(highest, broker.backlog())
                        if t % 50 == 0:
                            await asyncio.sleep(0)  # let the loop try to write
                assert broker.congested >= 1 and broker.queued > 0
                assert highest <= limit + size + 100  # bounded: one message over at most
                assert broker.dropped == 0  # every topic still has its latest value
                assert "slow:" in broker.describe()
            finally:
                own_mosquitto.process.send_signal(signal.SIGCONT)
            last = f"{rounds - 1:02d}"

            def all_latest() -> bool:
                got = {r.topic: r.payload[:2] for r in reader.received}
                return len(got) == topics and set(got.values()) == {last}
            await eventually(all_latest, timeout=20)
            assert broker.queued == 0
    run(scenario())


def test_qos1_messages_the_broker_never_acknowledged_are_sent_again_after_reconnect(
        own_mosquitto: Mosquitto) -> None:
    """mosquitto frozen (no PUBACK), then killed and started afresh (no persistence): the
    QoS 1 values that were in flight reach the new broker once we are back."""
    async def scenario() -> None:
        config = MqttBrokerConfig(host=own_mosquitto.host, port=own_mosquitto.port,
                                  status_topic=None, client_id="inflight",
                                  reconnect_min_ms=50, reconnect_max_ms=200)
        async with open_broker("main", config) as broker:
            await broker.wait_connected(5)
            broker.publish("inflight/acked", "1", qos=1, retain=True)
            await eventually(lambda: not broker._client.unacked, timeout=5)
            assert own_mosquitto.process is not None
            own_mosquitto.process.send_signal(signal.SIGSTOP)
            broker.publish("inflight/a", "old", qos=1, retain=True)
            broker.publish("inflight/a", "new", qos=1, retain=True)
            broker.publish("inflight/b", "2", qos=1, retain=True)
            broker.publish("inflight/zero", "lost", qos=0, retain=True)  # QoS 0: may go
            await asyncio.sleep(0.1)
            assert len(broker._client.unacked) == 3
            own_mosquitto.kill()  # a crash: nothing acknowledged, nothing kept
            await eventually(lambda: not broker.connected, timeout=5)
            own_mosquitto.start()
            await broker.wait_connected(5)
            async with client(own_mosquitto, "reader") as reader:
                reader.listen("inflight/#")
                await eventually(lambda: len(reader.received) >= 2, timeout=5)
                await settle(reader.broker)
                got = {r.topic: r.payload for r in reader.received}
                assert got == {"inflight/a": "new", "inflight/b": "2"}
    run(scenario())


def test_a_value_superseded_while_connecting_is_never_sent(mosquitto: Mosquitto) -> None:
    """A listener that publishes its state (as node status does) says "down" before the
    first connect and "up" on it: subscribers only ever see "up", not a stale "down"
    followed by "up"."""
    async def scenario() -> None:
        async with client(mosquitto, "watching") as watcher:
            watcher.listen("sv/#")
            await settle(watcher.broker)
            config = MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port,
                                      status_topic=None, client_id="superseded")
            async with open_broker("main", config) as broker:
                def state(b: Broker) -> None:
                    b.publish("sv/state", "up" if b.connected else "down", qos=1,
                              retain=True)
                broker.on_change(state)
                state(broker)  # not connected yet: this waits in the outbox
                broker.publish("sv/other", "kept", qos=1)  # not superseded: still sent
                await broker.wait_connected(5)
                await settle(broker)
                await eventually(lambda: len(watcher.received) == 2, timeout=5)
                await settle(watcher.broker)
                assert (watcher.payloads("sv/state"), watcher.payloads("sv/other")) == \
                    (["up"], ["kept"])
    run(scenario())


def test_qos_1_messages_published_just_before_close_all_arrive(mosquitto: Mosquitto) -> None:
    """A stop publishes every allowance 0 at QoS 1 and closes: none may be lost (before,
    closing reset the socket with some of them unread: 2 of 4 arrived)."""
    async def scenario() -> None:
        async with client(mosquitto, "watch") as watch:
            watch.listen("close/#")
            await settle(watch.broker)
            for _ in range(3):
                before = len(watch.received)
                config = MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port,
                                          status_topic=None, client_id="closing")
                async with open_broker("main", config) as broker:
                    await broker.wait_connected(5)
                    for i in range(20):
                        broker.publish(f"close/{i}/Allowance", "0", qos=1)
                await eventually(lambda b=before: len(watch.received) - b == 20, timeout=5)
    run(scenario())
