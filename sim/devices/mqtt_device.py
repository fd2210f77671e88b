"""What every simulated MQTT device shares: its own client, started and stopped with it,
announcing itself on each (re)connect, and the silent / garbage faults."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim.devices.faults import Fault
from sim.model import EnergyModel, Snapshot

__all__ = ["MqttDevice"]


class MqttDevice:
    """Base of the simulated MQTT devices: `announce()` runs after every connect and on
    `clear()`, `stepped()` on every model step; `subscribe(broker)` before connecting."""

    def __init__(self, model: EnergyModel, config: MqttBrokerConfig, name: str) -> None:
        self.model = model
        self.name = name
        self.mode = Fault.NONE
        self._config = config
        self._broker: Broker | None = None
        self._unsubscribe = model.subscribe(self.stepped)

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self) -> None:
        if self._broker is not None:
            return
        broker = Broker(f"sim-{self.name}", self._config)
        self.subscribe(broker)
        broker.on_change(lambda b: self.announce() if b.connected else None)
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
        self.announce()

    # -- for the devices -----------------------------------------------------------------------
    def subscribe(self, broker: Broker) -> None:
        """Subscribe to the device's command topics (none by default)."""

    def announce(self) -> None:
        """Publish what the device says after connecting."""

    def stepped(self, snapshot: Snapshot) -> None:
        """The model stepped."""

    def publish(self, topic: str, payload: str, *, retain: bool = False) -> bool:
        """Publish unless silent or not connected; whether it went out."""
        broker = self._broker
        if broker is None or not broker.connected or self.mode is Fault.HANG:
            return False
        broker.publish(topic, payload, qos=0, retain=retain)
        return True
