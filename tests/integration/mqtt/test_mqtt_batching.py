"""The adapter's connections batch their writes (nodes/mqtt/batching.py) against a real
mosquitto: a burst of one loop turn is one socket write and every message arrives in
order. (The replay of unacknowledged QoS 1 messages after a reconnect, which shares the
queue with the CONNECT, is test_mqtt_broker's
test_qos1_messages_the_broker_never_acknowledged_are_sent_again_after_reconnect.)"""

from __future__ import annotations

import asyncio

from conftest import eventually, run

from nodes.mqtt.batching import BatchingTransport
from nodes.mqtt.broker import WRITES_BATCHED, MqttBrokerConfig, open_broker

from .mqttkit import Mosquitto, client, settle


def test_a_burst_of_one_turn_is_one_write_and_arrives_in_order(mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        assert WRITES_BATCHED
        config = MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port,
                                  status_topic=None, client_id="batching-writer")
        async with client(mosquitto, "batching-reader") as reader, \
                open_broker("main", config) as broker:
            reader.listen("batch/#")
            await settle(reader.broker)
            await broker.wait_connected(5)
            transport = broker._client._connection._transport
            assert isinstance(transport, BatchingTransport)
            await asyncio.sleep(0.1)
            before = transport.writes
            for n in range(200):
                broker.publish("batch/seq", str(n), qos=1)
            assert broker.backlog() > 0  # what waits for the next turn counts
            await asyncio.sleep(0)
            assert transport.writes == before + 1
            await eventually(lambda: len(reader.payloads("batch/seq")) == 200, 10)
            assert reader.payloads("batch/seq") == [str(n) for n in range(200)]
    run(scenario())
