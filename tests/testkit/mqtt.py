"""A test MQTT client: our own broker adapter used as a plain client that records."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from nodes.mqtt.broker import Broker, MqttBrokerConfig, open_broker
from testkit.mosquitto import Mosquitto

__all__ = ["Listener", "Received", "client"]


@dataclass
class Received:
    topic: str
    payload: str
    retained: bool


class Listener:
    """A second client that records what arrives on some topic filters."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.received: list[Received] = []

    def listen(self, topic_filter: str) -> None:
        self.broker.subscribe(topic_filter, self._record, qos=1)

    def _record(self, topic: str, payload: bytes, retained: bool) -> None:
        self.received.append(Received(topic, payload.decode(), retained))

    def payloads(self, topic: str) -> list[str]:
        return [r.payload for r in self.received if r.topic == topic]

    def last(self, topic: str) -> str | None:
        found = self.payloads(topic)
        return found[-1] if found else None


@contextlib.asynccontextmanager
async def client(server: Mosquitto, name: str = "test", **options: Any
                 ) -> AsyncIterator[Listener]:
    """A connected test client (no status topic, so it does not disturb the tests)."""
    config = MqttBrokerConfig(**{"host": server.host, "port": server.port,
                                 "status_topic": None, "client_id": f"test-{name}-{id(server)}",
                                 "reconnect_min_ms": 50, "reconnect_max_ms": 200, **options})
    async with open_broker(name, config) as broker:
        await broker.wait_connected(5)
        yield Listener(broker)
