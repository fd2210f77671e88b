"""A simulated Venus OS on a D-Bus: systemcalc, a battery monitor, a Multiplus, settings, hub4.

    async with PrivateBus() as address, SimVenus(model, address=address) as venus:
        ...  # com.victronenergy.system etc. follow the model; venus.settings takes writes

| bus name | what it stands for |
| --- | --- |
| com.victronenergy.settings | localsettings: ESS settings the model honours, AddSetting |
| com.victronenergy.system | systemcalc: battery, AC consumption, PV, grid, relays |
| com.victronenergy.battery.ttyS7 | a battery monitor (instance 512) |
| com.victronenergy.vebus.ttyS4 | the Multiplus (instance 276) |
| com.victronenergy.hub4 | hub4control (ESS state) |
| com.victronenergy.solarcharger.ttyS5 | the MPPTs (instance 278; only with DC PV) |
| com.victronenergy.evcharger.sim_ev | an EV charging station on AC-out (instance 40) |

Each service has a bus connection of its own and owns its name, as the real
processes do; settings comes first, as on a GX. Every model step (and every
`refresh` after a setting or load change) updates all services; the changes of one
step go out as one ItemsChanged per service. `/Relay/<n>/State` on system is
writable (0 or 1), as on a GX. `venus.evcharger` (sim.venus.evcharger) has the controls
a test needs: plug_in, charge(power_w), stop, unplug (`evcharger=None`: no charger);
`model.lose_grid()` is a grid failure.

`system_every_s=1.0` publishes the system service as dbus-systemcalc-py does: on a timer
of its own, once a second, with the values of the latest step, and only when a step came
since the last tick (systemcalc recomputes on `GLib.timeout_add_seconds(1, ...)` and only
`if self._changed`). The site (`sim.site`) runs it so; the default (None) publishes every
step, which tests that step the model many times a second read as a fine-grained series.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Self

from flowengine.model import JsonValue
from nodes.dbus.presets import Writable
from sim.model import EnergyModel, Snapshot
from sim.venus.evcharger import EVCHARGER, SimEvCharger
from sim.venus.paths import (
    BATTERY_INSTANCE,
    BATTERY_UNITS,
    SOLARCHARGER_INSTANCE,
    SOLARCHARGER_UNITS,
    SYSTEM_UNITS,
    VEBUS_INSTANCE,
    VEBUS_UNITS,
    battery_values,
    hub4_values,
    mandatory,
    solarcharger_values,
    system_values,
    vebus_values,
)
from sim.venus.settings import SETTINGS, SETTINGS_INTERFACE, settings_service
from sim.venus.tree import SimService

__all__ = ["EVCHARGER", "SETTINGS", "SETTINGS_INTERFACE", "SimEvCharger", "SimService",
           "SimVenus"]

SYSTEM = "com.victronenergy.system"
HUB4 = "com.victronenergy.hub4"


class SimVenus:
    """The simulated Venus OS services for one model on one bus; see the module docstring."""

    def __init__(self, model: EnergyModel, *, address: str, relays: int = 2,
                 battery_name: str = "com.victronenergy.battery.ttyS7",
                 vebus_name: str = "com.victronenergy.vebus.ttyS4",
                 solarcharger_name: str = "com.victronenergy.solarcharger.ttyS5",
                 evcharger: str | None = EVCHARGER,
                 system_every_s: float | None = None) -> None:
        if system_every_s is not None and not system_every_s > 0:
            raise ValueError(f"system_every_s must be > 0 or None, got {system_every_s}")
        self.model = model
        self.system_every_s = system_every_s
        self.address = address
        self.relays: dict[int, int] = dict.fromkeys(range(relays), 0)
        battery_service = f"com.victronenergy.battery/{BATTERY_INSTANCE}"
        self._battery_service = battery_service
        self.settings = settings_service(model)
        self.system = SimService(
            SYSTEM, units=SYSTEM_UNITS, on_write=self._relay_written,
            writable={f"/Relay/{n}/State": Writable("integer", 0, 1) for n in self.relays})
        self.battery = SimService(battery_name, units=BATTERY_UNITS)
        self.vebus = SimService(vebus_name, units=VEBUS_UNITS, writable={
            "/Mode": Writable("integer", 1, 4),
            "/Hub4/L1/AcPowerSetpoint": Writable("number", -100_000, 100_000),
            "/Hub4/DisableCharge": Writable("integer", 0, 1),
            "/Hub4/DisableFeedIn": Writable("integer", 0, 1)})
        self.hub4 = SimService(HUB4)
        self.solarcharger: SimService | None = None
        if model.params.pv_dc is not None:
            self.solarcharger = SimService(solarcharger_name, units=SOLARCHARGER_UNITS)
            self.solarcharger.update(mandatory(
                process="vedirect-dbus", instance=SOLARCHARGER_INSTANCE, product_id=0xFFFF,
                product_name="SmartSolar MPPT (simulated)", connection="VE.Direct port 2"))
        self.system.update(mandatory(process="dbus-systemcalc-py", instance=0, product_id=0,
                                     product_name="System", connection="data from other "
                                     "dbus processes"))
        self.battery.update(mandatory(process="sim-battery", instance=BATTERY_INSTANCE,
                                      product_id=0xA389, product_name="SmartShunt 500A/50mV",
                                      connection="VE.Direct port 1"))
        self.vebus.update(mandatory(process="mk2-dbus", instance=VEBUS_INSTANCE,
                                    product_id=0x2623, product_name="MultiPlus 48/5000/70-50",
                                    connection="VE.Bus"))
        self.vebus.update({"/Hub4/L1/AcPowerSetpoint": 0.0, "/Hub4/DisableCharge": 0,
                           "/Hub4/DisableFeedIn": 0})
        self.hub4.update(mandatory(process="dbus-hub4control", instance=0, product_id=0,
                                   product_name="Hub-4 control", connection="local"))
        self.evcharger = None if evcharger is None else SimEvCharger(model, name=evcharger)
        self._stop_following: Callable[[], None] | None = None
        self._started: list[SimService] = []
        self._system_due: Snapshot | None = None  # a step since the system's last tick
        self._system_timer: asyncio.Task[None] | None = None
        self._follow(model.snapshot)
        self._publish_system(model.snapshot)

    @property
    def services(self) -> list[SimService]:
        """Every service, in start order."""
        extra = [s for s in (self.solarcharger, self.evcharger) if s is not None]
        return [self.settings, self.system, self.battery, self.vebus, self.hub4, *extra]

    def _relay_written(self, path: str, value: JsonValue) -> int:
        number = int(path.split("/")[2])
        self.relays[number] = int(value) if isinstance(value, int | float) else 0
        return 0

    def _follow(self, s: Snapshot) -> None:
        if self.system_every_s is None:
            self._publish_system(s)
        else:
            self._system_due = s  # the latest step wins; the timer publishes it
        self.battery.update(battery_values(self.model, s))
        self.vebus.update(vebus_values(s))
        self.hub4.update(hub4_values(s))
        if self.solarcharger is not None:
            self.solarcharger.update(solarcharger_values(s))
        if self.evcharger is not None:
            self.evcharger.follow(s)

    def _publish_system(self, s: Snapshot) -> None:
        self.system.update(system_values(s, self.relays, battery_service=self._battery_service))

    async def _tick_system(self, every_s: float) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            tick = max(tick + every_s, loop.time())  # a late tick does not catch up
            await asyncio.sleep(tick - loop.time())
            due, self._system_due = self._system_due, None
            if due is not None:
                self._publish_system(due)

    async def start(self) -> None:
        try:
            for service in self.services:
                await service.start(self.address)
                self._started.append(service)
        except BaseException:
            await self.close()
            raise
        self._stop_following = self.model.subscribe(self._follow)
        if self.system_every_s is not None:
            self._system_timer = asyncio.create_task(self._tick_system(self.system_every_s),
                                                     name="sim/venus:system-timer")

    async def close(self) -> None:
        stop, self._stop_following = self._stop_following, None
        if stop is not None:
            stop()
        timer, self._system_timer = self._system_timer, None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        while self._started:
            await self._started.pop().close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
