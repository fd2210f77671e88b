"""An MQTT-switched consumer (a heater behind a Tasmota-style plug): on/off by topic.

    async with MqttConsumer(model, host="127.0.0.1", port=1883, name="heater") as heater:
        ...  # publish "on" to sim/heater/set; sim/heater/state says "on"; power follows

| topic | direction | payload |
| --- | --- | --- |
| `<prefix>/set` | command, to the device | `on` / `off` (also `1`/`0`, `true`/`false`, any case) |
| `<prefix>/state` | from the device, retained | `on` / `off` |
| `<prefix>/power` | from the device | watts drawn now, e.g. `2000.0` |
| `<prefix>/LWT` | from the device, retained | `Online`, or `Offline` as its last will |

Switching turns an `ExtraLoad` of the model on or off, so the grid and the battery
see it at once. The power is published on every switch and then at most every
`interval_s` (real seconds), as the model steps.

Faults, for tests of the flows that drive it: `silent()` (it still switches but
publishes nothing), `garbage()` (power payloads that are not numbers), `go_away()`
(it leaves the broker, `Offline` on its LWT topic) and `come_back()`;
`clear()` ends silent and garbage.
"""

from __future__ import annotations

import time

from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim.devices.faults import GARBAGE_BODY, Fault
from sim.devices.mqtt_device import MqttDevice
from sim.model import EnergyModel, ExtraLoad, Snapshot

__all__ = ["MqttConsumer"]

_ON = frozenset({"on", "1", "true"})
_OFF = frozenset({"off", "0", "false"})


class MqttConsumer(MqttDevice):
    """A simulated MQTT-switched consumer of the model; see the module docstring."""

    def __init__(self, model: EnergyModel, *, host: str = "127.0.0.1", port: int = 1883,
                 name: str = "heater", power_w: float = 2000.0, phases: tuple[int, ...] = (1,),
                 prefix: str | None = None, interval_s: float = 1.0,
                 load: ExtraLoad | None = None) -> None:
        self.prefix = prefix or f"sim/{name}"
        self.interval_s = interval_s
        self.load = load if load is not None else model.add_load(name, power_w, phases=phases)
        self.commands = 0
        self._last_power = 0.0
        super().__init__(model, MqttBrokerConfig(
            host=host, port=port, client_id=f"sim-{name}", status_topic=f"{self.prefix}/LWT",
            reconnect_min_ms=100, reconnect_max_ms=2000), name)

    @property
    def command_topic(self) -> str:
        return f"{self.prefix}/set"

    @property
    def state_topic(self) -> str:
        return f"{self.prefix}/state"

    @property
    def power_topic(self) -> str:
        return f"{self.prefix}/power"

    async def go_away(self) -> None:
        """Leave the broker: `Offline` on the LWT topic; commands go unheard until
        `come_back()`."""
        await self.close()

    async def come_back(self) -> None:
        await self.start()

    # -- behaviour ---------------------------------------------------------------------------
    def switch(self, on: bool) -> None:
        if on != self.load.on:
            self.load.on = on
            self.model.refresh()
        self.announce()

    def subscribe(self, broker: Broker) -> None:
        broker.subscribe(self.command_topic, self._command, qos=1)

    def _command(self, topic: str, payload: bytes, retained: bool) -> None:
        text = payload.decode(errors="replace").strip().lower()
        if text in _ON or text in _OFF:
            self.commands += 1
            self.switch(text in _ON)

    def announce(self) -> None:
        self.publish(self.state_topic, "on" if self.load.on else "off", retain=True)
        self._publish_power()

    def _publish_power(self) -> None:
        self._last_power = time.monotonic()
        power = GARBAGE_BODY.decode(errors="replace") if self.mode is Fault.GARBAGE \
            else f"{self.load.draw_w:.1f}"
        self.publish(self.power_topic, power)

    def stepped(self, snapshot: Snapshot) -> None:
        if time.monotonic() - self._last_power >= self.interval_s:
            self._publish_power()
