"""An MQTT climate sensor (a Zigbee or ESPHome thermometer): temperature, humidity, pressure.

    async with MqttSensor(model, host="127.0.0.1", port=1883, name="outdoor") as sensor:
        ...  # sim/outdoor/temperature, .../humidity, .../pressure, plain numbers

| topic | payload |
| --- | --- |
| `<prefix>/temperature` | °C, e.g. `14.3`; an outdoor day: coolest at 5 h, warmest at 15 h |
| `<prefix>/humidity` | %, lower when it is warm |
| `<prefix>/pressure` | hPa, steady |

The readings follow the model's time of day and are published, retained (as a
zigbee2mqtt sensor with `retain: true` does), at most every `interval_s` real seconds,
as the model steps, and once right after connecting.

Faults, for tests of the flows that read it: `silent()` (publishes nothing, as a
sensor with a flat battery), `garbage()` (payloads that are not numbers), `clear()`.
"""

from __future__ import annotations

import math
import time
from types import TracebackType
from typing import Self

from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim.devices.faults import GARBAGE_BODY, Fault
from sim.model import EnergyModel, Snapshot

__all__ = ["MqttSensor", "outdoor_climate"]


def outdoor_climate(hour: float) -> tuple[float, float, float]:
    """(°C, %, hPa) of a mild day at `hour`: 8 °C at 5 h up to 20 °C at 15 h."""
    if hour > 15:  # cooling down from 15 h to 5 h the next morning
        warmth = (1 + math.cos((hour - 15) / 14 * math.pi)) / 2
    elif hour < 5:
        warmth = (1 + math.cos((hour + 9) / 14 * math.pi)) / 2
    else:
        warmth = (1 - math.cos((hour - 5) / 10 * math.pi)) / 2
    temperature = 8.0 + 12.0 * warmth
    return round(temperature, 1), round(85.0 - 35.0 * warmth, 1), 1013.2


class MqttSensor:
    """A simulated MQTT climate sensor of the model; see the module docstring."""

    def __init__(self, model: EnergyModel, *, host: str = "127.0.0.1", port: int = 1883,
                 name: str = "outdoor", prefix: str | None = None,
                 interval_s: float = 5.0) -> None:
        self.model = model
        self.name = name
        self.prefix = prefix or f"sim/{name}"
        self.interval_s = interval_s
        self.mode = Fault.NONE
        self._config = MqttBrokerConfig(host=host, port=port, client_id=f"sim-{name}",
                                        status_topic=None, reconnect_min_ms=100,
                                        reconnect_max_ms=2000)
        self._broker: Broker | None = None
        self._last = -math.inf
        self._unsubscribe = model.subscribe(self._stepped)

    def topic(self, quantity: str) -> str:
        """`temperature`, `humidity` or `pressure` -> its topic."""
        return f"{self.prefix}/{quantity}"

    async def start(self) -> None:
        if self._broker is not None:
            return
        broker = Broker(f"sim-{self.name}", self._config)
        broker.on_change(lambda b: self.publish() if b.connected else None)
        self._broker = broker
        await broker.start()

    async def wait_connected(self, timeout_s: float = 5.0) -> None:
        if self._broker is not None:
            await self._broker.wait_connected(timeout_s)

    async def close(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._unsubscribe()
        await self.close()

    # -- faults --------------------------------------------------------------------------------
    def silent(self) -> None:
        self.mode = Fault.HANG

    def garbage(self) -> None:
        self.mode = Fault.GARBAGE

    def clear(self) -> None:
        self.mode = Fault.NONE
        self.publish()

    # -- behaviour ---------------------------------------------------------------------------
    def publish(self) -> None:
        """Publish the readings of now (nothing while silent or not connected)."""
        self._last = time.monotonic()
        broker = self._broker
        if broker is None or not broker.connected or self.mode is Fault.HANG:
            return
        readings = outdoor_climate(self.model.snapshot.hour)
        for quantity, reading in zip(("temperature", "humidity", "pressure"), readings,
                                     strict=True):
            payload = GARBAGE_BODY.decode(errors="replace") if self.mode is Fault.GARBAGE \
                else f"{reading:.1f}"
            broker.publish(self.topic(quantity), payload, qos=0, retain=True)

    def _stepped(self, snapshot: Snapshot) -> None:
        if time.monotonic() - self._last >= self.interval_s:
            self.publish()
