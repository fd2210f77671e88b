"""energy.wattpilot: a Fronius Wattpilot as a Victron EV charger, charging from solar surplus.

    - id: wattpilot
      type: energy.wattpilot
      host: 192.168.1.60
      password: !secret wattpilot_password
      vrm_instance: 1007
      overhead_vrm_instance: 1006

The node logs into the charger's websocket (`nodes.devices.wattpilot`: PBKDF2, or
bcrypt on a Wattpilot Flex) and publishes `com.victronenergy.evcharger.<service_name>`
(a child `dbus.service`, EV charger preset): /Mode, /StartStop, /SetCurrent,
/MaxCurrent, /Status, /Ac/Power and per phase, /Current, /Ac/Energy/Forward and
/Session/Energy (kWh of the session), /ChargingTime and /Session/Time, /Model, /Serial,
/FirmwareVersion, /Position, /CustomName. Each value also goes out of the node (topic:
the path) for an `mqtt.out`.

**Both ways.** A change in VRM or on the GX goes to the charger: /Mode 0 writes `lmo`
3 (Default), 1 writes `lmo` 4 (Eco), 2 (scheduled) wakes a hibernating charger;
/StartStop writes `frc` 2 (on) or 1 (off) and /SetCurrent `psm` and `amp` (6..17 A: one
phase at that current, at most 16 A; 18 A and more: three phases at a third), both in
manual mode only (in auto mode the distributor decides; the write is shown, logged
and undone). A change in the Fronius app (force state, current, logic mode) comes back
as the charger reports it. `lmo` 3 or 5 in the app is manual mode: hands off, the node
shows the charger and never writes on its own.

**Auto mode** (`lmo` 4, Eco) is solar surplus through the distributor: the node is its
consumer `key` (Request = 3 x the charger's per-phase limit x the voltage while a car
waits, else 0; Minimum = `min_a` A on one phase; StepSize one amp on the phases in use;
Priority, PriorityShift; VRMInstanceID `overhead_vrm_instance` for the fake BMS the
distributor makes) and follows the allowance by `wattpilot_policy`: start, stop,
current and phase switching, `min_on_off_s` between a start and a stop,
`min_phase_switch_s` between phase switches, each waiting change shown in /Status
(21 start charging, 24 stop charging, 22/23 switching phases) and the status line. No
allowance for `allowance_timeout_s`, or the broker gone: charging stops at once.
With `low_price`, a price below the charger's limit (`awcp.marketprice` < `awp`)
charges at least at `low_price_a`; without it, a charger that charges for a low price
by itself (modelStatus 7) is left alone. A charger that starts by its own PV logic in
auto mode (its PV start power is reachable) is stopped and the user told once.

**Hibernate** (`hibernate`): with no car, the link is closed and opened every
`hibernate_check_s` to look for one; VRM's scheduled mode and any VRM write wake it at
once (a write waits for the link, then is made).

**Fail-safe**: on stop, SIGTERM, node failure, and when the link is lost while charging
in auto mode (at once when it is back: no charging without control), charging stops
(`frc` 1) and the request drops to 0. The guardian holds the same `frc` 1 while the
node charges in auto mode, for when the runtime is killed or hangs. Manual mode is
never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from flowengine.model import Secret
from flowengine.node import Claim, Node, node_type, option
from nodes.energy.wattpilot_vrm import ResetWhen

if TYPE_CHECKING:
    from flowengine.context import NodeContext
    from flowengine.model import Message

__all__ = ["EnergyWattpilot", "EnergyWattpilotConfig"]

ROOT = "es-ESS/SolarOverheadDistributor"


@dataclass(frozen=True, kw_only=True)
class EnergyWattpilotConfig:
    host: str = option("the Wattpilot's address (es-ESS Host)", min_length=1,
                       example="192.168.1.60")
    port: int = option("its websocket port", default=80, minimum=1, maximum=65535)
    password: Secret = option("the password of the Fronius app; use !secret",
                              example="!secret wattpilot_password")
    vrm_instance: int = option("VRM instance of the EV charger (es-ESS VRMInstanceID)",
                               minimum=0, maximum=65535, example=1007)
    overhead_vrm_instance: int | None = option(
        "VRM instance of the fake BMS showing the overhead request "
        "(es-ESS VRMInstanceID_OverheadRequest); none: no fake BMS", default=None,
        example=1006)
    service_name: str = option("last part of com.victronenergy.evcharger.<name>",
                               default="esESS_FroniusWattpilot", pattern=r"^[A-Za-z0-9_]+$")
    custom_name: str = option("name shown in VRM", default="Fronius Wattpilot")
    position: Literal[0, 1] = option("where it is connected: 0 AC output, 1 AC input",
                                     default=0)
    key: str = option("its consumer key in the distributor's topics", default="Wattpilot",
                      pattern=r"^[^/+#\s]+$")
    root: str = option("the distributor's topic root", default=ROOT, min_length=1)
    broker: str = option("the distributor's broker connection", default="main",
                         connection="mqtt")
    priority: int = option("distributor priority (es-ESS OverheadPriority)", default=35)
    priority_shift: float = option("priority added after each grant", default=1, minimum=0)
    min_on_off_s: float = option(
        "seconds between a start and a stop (es-ESS MinOnOffSeconds)", default=600,
        minimum=0)
    min_phase_switch_s: float = option(
        "seconds between two phase switches (es-ESS MinPhaseSwitchSeconds)", default=300,
        minimum=0)
    min_a: int = option("lowest charge current per phase, A", default=6, minimum=6,
                        maximum=16)
    allowance_timeout_s: float = option(
        "no allowance for this long stops solar charging", default=180, minimum=1)
    announce_s: float = option("publish the request this often", default=30, minimum=1)
    reset_counters: ResetWhen = option(
        "when the session's time and energy go to 0 (es-ESS ResetChargedEnergyCounter)",
        default="OnDisconnect")
    hibernate: bool = option("close the link while no car is connected (es-ESS "
                             "HibernateMode)", default=False)
    hibernate_check_s: float = option("while hibernating, look for a car this often",
                                      default=300, minimum=1)
    low_price: bool = option(
        "charge while the charger's price is below its limit (awp), at least low_price_a",
        default=False)
    low_price_a: float = option(
        "current for low-price charging, A as on VRM's slider (6..17: one phase, "
        "18..48: three)", default=16, minimum=6, maximum=96)
    voltage_v: float = option("voltage used before the charger reports one", default=230,
                              minimum=100, maximum=260)


@node_type("energy.wattpilot", config=EnergyWattpilotConfig)
class EnergyWattpilot(Node[EnergyWattpilotConfig]):
    """A Fronius Wattpilot as a VRM EV charger, charging from the distributor's allowance."""

    inputs = {}

    def claims(self) -> list[Claim]:
        cfg = self.config
        return [Claim("solar overhead consumer key", f"{cfg.root}/Requests/{cfg.key}", "key"),
                Claim("D-Bus name", f"com.victronenergy.evcharger.{cfg.service_name}",
                      "service_name")]

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        from nodes.energy.wattpilot_run import WattpilotRun

        self.run = WattpilotRun(self, ctx)
        await self.run.start()

    async def on_message(self, port: str, msg: Message) -> None:
        run = getattr(self, "run", None)
        if run is not None and port == "child":
            run.from_vrm(msg.topic, msg.value)

    async def stop(self) -> None:
        run = getattr(self, "run", None)
        if run is not None:
            await run.close()

    async def safe_state(self) -> None:
        """Stop charging in auto mode (manual mode is left alone); raise when the charger
        did not take it (the guardian, which still holds it, then makes it)."""
        run = getattr(self, "run", None)
        if run is not None:
            await run.safe_stop()
