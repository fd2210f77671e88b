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

from nodes.mqtt.broker import MqttBrokerConfig
from sim.devices.faults import GARBAGE_BODY, Fault
from sim.devices.mqtt_device import MqttDevice
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


class MqttSensor(MqttDevice):
    """A simulated MQTT climate sensor of the model; see the module docstring."""

    def __init__(self, model: EnergyModel, *, host: str = "127.0.0.1", port: int = 1883,
                 name: str = "outdoor", prefix: str | None = None,
                 interval_s: float = 5.0) -> None:
        self.prefix = prefix or f"sim/{name}"
        self.interval_s = interval_s
        self._last = -math.inf
        super().__init__(model, MqttBrokerConfig(
            host=host, port=port, client_id=f"sim-{name}", status_topic=None,
            reconnect_min_ms=100, reconnect_max_ms=2000), name)

    def topic(self, quantity: str) -> str:
        """`temperature`, `humidity` or `pressure` -> its topic."""
        return f"{self.prefix}/{quantity}"

    def announce(self) -> None:
        """Publish the readings of now (nothing while silent or not connected)."""
        self._last = time.monotonic()
        readings = outdoor_climate(self.model.snapshot.hour)
        for quantity, reading in zip(("temperature", "humidity", "pressure"), readings,
                                     strict=True):
            payload = GARBAGE_BODY.decode(errors="replace") if self.mode is Fault.GARBAGE \
                else f"{reading:.1f}"
            self.publish(self.topic(quantity), payload, retain=True)

    def stepped(self, snapshot: Snapshot) -> None:
        if time.monotonic() - self._last >= self.interval_s:
            self.announce()
