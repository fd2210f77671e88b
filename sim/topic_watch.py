"""What the demo's live lines share: one MQTT subscription under a root, read as numbers.

A `TopicWatch` subclass names its client and handles each message under its `root`
(`_message(name, payload)`, the topic without the root); `payload_number` reads a
plain-number payload, None for anything else (an empty payload, text, NaN).
"""

from __future__ import annotations

import math
import os
from types import TracebackType
from typing import Self

from nodes.mqtt.broker import Broker, MqttBrokerConfig

__all__ = ["TopicWatch", "payload_number"]


def payload_number(payload: bytes) -> float | None:
    try:
        value = float(payload.decode(errors="replace").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class TopicWatch:
    """A client of its own subscribed to `<root>/#`; `heard` once something came."""

    def __init__(self, name: str, host: str, port: int, *, root: str) -> None:
        self.root = root
        self.heard = False
        """whether anything has been said under the root yet"""
        self._broker = Broker(f"demo-{name}", MqttBrokerConfig(
            host=host, port=port, status_topic=None,
            client_id=f"esess-demo-{name}-{os.getpid()}"))
        self._broker.subscribe(f"{root}/#", self._received)

    def _received(self, topic: str, payload: bytes, retained: bool) -> None:
        self._message(topic.removeprefix(f"{self.root}/"), payload)

    def _message(self, name: str, payload: bytes) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self._broker.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._broker.close()
