"""A scripted solar overhead consumer: a script that asks the distributor for power.

    async with ScriptedConsumer(model, host="127.0.0.1", port=1883, key="EV",
                                request_w=3680, minimum_w=1380, step_w=230,
                                vrm_instance=1020) as ev:
        ...  # the distributor's Allowance for EV becomes what the EV charger draws

It speaks es-ESS's request protocol (reference/es-ess-behaviour.md 10.3, 10.8) under
`es-ESS/SolarOverheadDistributor/Requests/<key>/`:

| name | direction | payload |
| --- | --- | --- |
| IsScriptedConsumer | to the distributor, retained | `true` |
| IsAutomatic, IgnoreBatReservation | to the distributor, retained | `true` / `false` |
| CustomName | to the distributor, retained | text |
| Request, StepSize, Minimum | to the distributor, retained | W, e.g. `3680` |
| Priority, PriorityShift, VRMInstanceID | to the distributor, retained | `35`, `1`, `1020` |
| Consumption | to the distributor, retained | W drawn now, e.g. `1610` |
| Allowance | from the distributor (QoS 1, not retained) | W, `0`, `1365`, `1365.5` |

The request is published, retained, after every connect, so it survives a restart of
the runtime. On each Allowance it draws min(allowance, request) rounded down to what
it can do (Minimum plus whole steps, or 0) as an `ExtraLoad` of the model, so the grid
and the battery see it at once, and reports its Consumption at once; it repeats the
Consumption every `interval_s` real seconds, since the distributor drops a consumer
that stays silent for three cycles. An allowance that is not a number means 0 W; a
retained one is stale (the distributor never retains) and is ignored. When es-ESS says
`Offline` on its status topic, the consumer stops drawing, as the README asks scripts to.

Controls for tests: `set_automatic()`, `set_request()`; `silent()` (it still draws, but
publishes nothing until `clear()`); `leave()` (it stops drawing, clears its retained
topics and disconnects). Leaving the `async with` block only disconnects: the retained
request stays, as a script that was killed leaves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim.devices.mqtt_device import MqttDevice
from sim.model import EnergyModel, ExtraLoad

__all__ = ["ROOT", "ScriptedConsumer", "feasible_w"]

ROOT = "es-ESS/SolarOverheadDistributor"
"""first topic levels of the distributor's request protocol"""

_STATUS_TOPIC = "es-ESS/$SYS/Status"


def feasible_w(wanted_w: float, *, request_w: float, minimum_w: float, step_w: float) -> float:
    """What a consumer can draw of `wanted_w`: at most `request_w`, 0 below `minimum_w`,
    else `minimum_w` plus whole steps (any power above the minimum when `step_w` is 0)."""
    wanted = min(wanted_w, request_w)
    if not wanted > 0 or wanted < minimum_w:  # also NaN
        return 0.0
    if step_w <= 0:
        return minimum_w if minimum_w > 0 else wanted
    steps = math.floor((wanted - minimum_w) / step_w + 1e-9)
    return minimum_w + steps * step_w


def _text(value: float) -> str:
    """A number as es-ESS scripts send it: `3680`, `0.5`."""
    value = float(value)
    return str(int(value)) if value.is_integer() else str(value)


def _flag(value: bool) -> str:
    return "true" if value else "false"


class ScriptedConsumer(MqttDevice):
    """A simulated scripted consumer of the model; see the module docstring."""

    def __init__(self, model: EnergyModel, *, host: str = "127.0.0.1", port: int = 1883,
                 key: str, custom_name: str | None = None, request_w: float,
                 step_w: float, minimum_w: float = 0.0, priority: int = 100,
                 priority_shift: float = 0.0, ignore_bat_reservation: bool = False,
                 vrm_instance: int, automatic: bool = True, interval_s: float = 10.0,
                 phases: tuple[int, ...] = (1,), root: str = ROOT,
                 status_topic: str | None = _STATUS_TOPIC) -> None:
        if not key or any(c in key for c in "/+#") or key != key.strip():
            raise ValueError(f"a consumer key is one topic level, got {key!r}")
        if request_w < 0 or step_w < 0 or minimum_w < 0:
            raise ValueError(f"consumer '{key}': request, step and minimum must be >= 0")
        if interval_s <= 0:
            raise ValueError(f"consumer '{key}': interval_s must be > 0, got {interval_s}")
        self.key = key
        self.custom_name = custom_name or key
        self.request_w = float(request_w)
        self.step_w = float(step_w)
        self.minimum_w = float(minimum_w)
        self.priority = priority
        self.priority_shift = float(priority_shift)
        self.ignore_bat_reservation = ignore_bat_reservation
        self.vrm_instance = vrm_instance
        self.automatic = automatic
        self.interval_s = interval_s
        self.prefix = f"{root}/Requests/{key}"
        self.status_topic = status_topic
        self.allowance_w: float | None = None
        """the last allowance heard (None: none yet)"""
        self.allowances = 0
        """allowance messages acted on"""
        self.load: ExtraLoad = model.add_load(key, 0.0, phases=phases)
        self._reporter: asyncio.Task[None] | None = None
        super().__init__(model, MqttBrokerConfig(
            host=host, port=port, client_id=f"sim-consumer-{key}", status_topic=None,
            reconnect_min_ms=100, reconnect_max_ms=2000), f"consumer-{key}")

    @property
    def allowance_topic(self) -> str:
        return f"{self.prefix}/Allowance"

    @property
    def draw_w(self) -> float:
        """What it draws now, in W."""
        return self.load.draw_w

    def topic(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def request(self) -> dict[str, str]:
        """Each request name -> its payload, as published (Consumption included)."""
        return {
            "IsScriptedConsumer": "true",
            "IsAutomatic": _flag(self.automatic),
            "CustomName": self.custom_name,
            "Request": _text(self.request_w),
            "StepSize": _text(self.step_w),
            "Minimum": _text(self.minimum_w),
            "Priority": str(self.priority),
            "PriorityShift": _text(self.priority_shift),
            "IgnoreBatReservation": _flag(self.ignore_bat_reservation),
            "VRMInstanceID": str(self.vrm_instance),
            "Consumption": _text(self.draw_w),
        }

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        await super().start()
        if self._reporter is None:
            self._reporter = asyncio.create_task(self._report(),
                                                 name=f"sim/{self.name}:report")

    async def close(self) -> None:
        reporter, self._reporter = self._reporter, None
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        await super().close()

    async def leave(self) -> None:
        """Stop drawing, clear every retained topic of the request, disconnect."""
        self._draw(0.0)
        broker = self._broker
        if broker is not None:
            # QoS 0: a QoS 1 message right before the disconnect can be lost (the broker's
            # PUBACKs arrive at a closed socket, whose reset discards what it had not read)
            for name in self.request():
                broker.publish(self.topic(name), "", qos=0, retain=True)
        await self.close()

    # -- controls ------------------------------------------------------------------------------
    def set_automatic(self, automatic: bool) -> None:
        """Switch between automatic (follows the distributor) and manual; published at once."""
        self.automatic = automatic
        self.publish(self.topic("IsAutomatic"), _flag(automatic), retain=True)

    def set_request(self, request_w: float) -> None:
        """Ask for another total; it draws no more than that from now on."""
        if request_w < 0:
            raise ValueError(f"consumer '{self.key}': a request must be >= 0, got {request_w}")
        self.request_w = float(request_w)
        self.publish(self.topic("Request"), _text(self.request_w), retain=True)
        self._follow()

    # -- behaviour -----------------------------------------------------------------------------
    def subscribe(self, broker: Broker) -> None:
        broker.subscribe(self.allowance_topic, self._allowance, qos=1)
        if self.status_topic:
            broker.subscribe(self.status_topic, self._es_ess_status, qos=1)

    def announce(self) -> None:
        for name, payload in self.request().items():
            self.publish(self.topic(name), payload, retain=True)

    def _allowance(self, topic: str, payload: bytes, retained: bool) -> None:
        if retained or not payload:  # stale, or a topic being cleared
            return
        try:
            allowance = float(payload.decode(errors="replace").strip())
        except ValueError:
            allowance = 0.0
        self.allowance_w = allowance if math.isfinite(allowance) and allowance > 0 else 0.0
        self.allowances += 1
        self._follow()

    def _es_ess_status(self, topic: str, payload: bytes, retained: bool) -> None:
        if payload.strip() == b"Offline" and self.draw_w > 0:
            self.allowance_w = 0.0
            self._follow()

    def _follow(self) -> None:
        """Draw what the last allowance and the request allow; report it at once."""
        self._draw(feasible_w(self.allowance_w or 0.0, request_w=self.request_w,
                              minimum_w=self.minimum_w, step_w=self.step_w))
        self._report_consumption()

    def _draw(self, power_w: float) -> None:
        if power_w != self.draw_w:
            self.load.power_w = power_w
            self.load.on = power_w > 0
            self.model.refresh()

    def _report_consumption(self) -> None:
        self.publish(self.topic("Consumption"), _text(self.draw_w), retain=True)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self._report_consumption()
