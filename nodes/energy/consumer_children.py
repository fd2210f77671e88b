"""The child nodes the distributor makes for each consumer it follows.

- `allowance-<part>`: an `mqtt.out` on `<root>/Requests/<key>/Allowance` (QoS 1, not
  retained) with `safe_payload: "0"`, so the consumer is told 0 W when the flow stops
  or fails, when the child is removed (the consumer left), and by the guardian when the
  runtime is killed or hangs.
- `bms-<part>`: with a VRMInstanceID, a `dbus.service` (battery preset)
  `com.victronenergy.battery.esESS_SolarOverheadConsumer_<part>`: /Soc is the
  consumption as a share of the request, /Dc/0/Power the consumption, /CustomName
  `Pool heater ☼ @ 750W`. A new VRMInstanceID makes it again.

`<part>` is the key made valid for a bus name and a child id (`requests.bus_name_part`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flowengine.errors import FlowEngineError
from flowengine.model import JsonValue
from nodes.energy.requests import Consumer

if TYPE_CHECKING:
    from flowengine.context import NodeContext

__all__ = ["Children", "Tracked"]


@dataclass
class Tracked:
    """A consumer and what the distributor made and said for it."""

    consumer: Consumer
    part: str  # its key as a bus-name element and child id
    allowance_child: bool = False
    bms: int | None = None  # the instance its fake BMS was made with
    allowance: float = 0.0
    reported: str | None = None  # the malformed text last reported
    unknown: set[str] = field(default_factory=set)  # unknown names reported
    usage_at: float | None = None  # monotonic time consumption was last counted to


class Children:
    """Makes, feeds and removes the children of one distributor node."""

    def __init__(self, ctx: NodeContext, *, root: str, broker: str) -> None:
        self.ctx, self.root, self.broker = ctx, root, broker

    async def allow(self, t: Tracked, watts: float) -> None:
        """Publish `watts` as the consumer's allowance (its publisher made first)."""
        key, ctx = t.consumer.key, self.ctx
        if not t.allowance_child:
            topic = f"{self.root}/Requests/{key}/Allowance"
            try:
                await ctx.spawn(f"allowance-{t.part}", "mqtt.out", {
                    "topic": topic.replace("{", "{{").replace("}", "}}"),
                    "broker": self.broker, "qos": 1, "retain": False, "safe_payload": "0"})
            except FlowEngineError as exc:
                ctx.log.error("consumer '%s': no allowance publisher: %s", key, exc)
                return
            t.allowance_child = True
        t.allowance = watts
        value: JsonValue = int(watts) if watts == int(watts) else round(watts, 1)
        ctx.send(f"allowance-{t.part}", ctx.message("allowance", value))

    async def ensure_bms(self, t: Tracked) -> None:
        """The fake BMS for the consumer's VRMInstanceID (none without one)."""
        instance = t.consumer.vrm_instance
        if instance == t.bms:
            return
        child = f"bms-{t.part}"
        if t.bms is not None:
            await self.ctx.remove(child)
            t.bms = None
        if instance is None:
            return
        try:
            await self.ctx.spawn(child, "dbus.service", {
                "preset": "battery", "name": f"esESS_SolarOverheadConsumer_{t.part}",
                "device_instance": instance, "product_name": "es-ESS SolarOverheadConsumer",
                "custom_name": t.consumer.bms_name(), "mgmt_connection": "MQTT",
                "values": {"/Dc/0/Voltage": 0, "/Dc/0/Current": 0}})
        except (FlowEngineError, OSError) as exc:
            self.ctx.log.warning("consumer '%s': no fake BMS: %s", t.consumer.key, exc)
            return
        t.bms = instance
        self.update_bms(t)

    def update_bms(self, t: Tracked) -> None:
        if t.bms is None:
            return
        c, child, ctx = t.consumer, f"bms-{t.part}", self.ctx
        consumption = c.values.get("Consumption")
        ctx.send(child, ctx.message("/Soc", c.bms_soc()))
        ctx.send(child, ctx.message("/Dc/0/Power", consumption if consumption is not None
                                    else 0.0))
        ctx.send(child, ctx.message("/CustomName", c.bms_name()))

    async def remove(self, t: Tracked) -> None:
        """Both children go; the allowance publisher's safe state publishes 0 as it does."""
        if t.allowance_child:
            await self.ctx.remove(f"allowance-{t.part}")
            t.allowance_child = False
        if t.bms is not None:
            await self.ctx.remove(f"bms-{t.part}")
            t.bms = None
