"""A simulated EV charging station on the Multiplus's AC output: `com.victronenergy.evcharger`.

    ev = venus.evcharger                   # SimVenus makes one unless told not to
    ev.plug_in()                           # /Status 1 (connected)
    ev.charge(7000)                        # /StartStop 1 and /SetCurrent for 7 kW: /Status 2
    ev.stop(); ev.unplug()                 # /Status 1, then 0

It draws from the model as an `ExtraLoad` (named `evcharger`, on L1..L3 or the phases
given), so it counts in the house load, in systemcalc's /Ac/Consumption and
/Ac/ConsumptionOnOutput, and in what the grid and the battery do. It charges while a
car is plugged in and /StartStop is 1, at /SetCurrent (A per phase) x the grid voltage
(230 V) x the number of phases: 10 A on three phases = 6900 W. /Mode (0 manual, 1 auto,
2 scheduled) is kept but changes nothing: the simulation has no charging schedule.

Writable over D-Bus as on Victron's EVCS: /Mode 0..2, /StartStop 0..1, /SetCurrent 0 up
to /MaxCurrent (a write above it is refused with 2), /MaxCurrent 6..32, /AutoStart 0..1.
/Position is 0 (AC output; gui-v2's enum: 0 AC output, 1 AC input) and read-only: the
model has no load on the AC input. /Ac/Energy/Forward is the lifetime energy, and
/Session/Energy, /Session/Time (and the older /ChargingTime) are the plugged-in
session's; a new plug-in starts a new session.
"""

from __future__ import annotations

from flowengine.model import JsonValue
from nodes.dbus.presets import Writable
from sim.model import EnergyModel, ExtraLoad, Snapshot
from sim.venus.paths import mandatory
from sim.venus.tree import SimService

__all__ = ["EVCHARGER", "EVCHARGER_INSTANCE", "STATUS", "SimEvCharger"]

EVCHARGER = "com.victronenergy.evcharger.sim_ev"
EVCHARGER_INSTANCE = 40
STATUS = {"disconnected": 0, "connected": 1, "charging": 2}
"""the /Status values this charger shows (gui-v2 enum Evcs_Status)"""

_UNITS = {"/Ac/Power": "W", "/Ac/L1/Power": "W", "/Ac/L2/Power": "W", "/Ac/L3/Power": "W",
          "/Current": "A", "/SetCurrent": "A", "/MaxCurrent": "A", "/Ac/Energy/Forward": "kWh",
          "/Session/Energy": "kWh", "/Session/Time": "s", "/ChargingTime": "s"}
_REFUSED = 2


class SimEvCharger(SimService):
    """See the module docstring. Values follow each model snapshot (`follow`)."""

    def __init__(self, model: EnergyModel, *, name: str = EVCHARGER,
                 instance: int = EVCHARGER_INSTANCE, phases: tuple[int, ...] = (1, 2, 3),
                 max_current_a: float = 16.0, current_a: float = 10.0,
                 voltage_v: float = 230.0) -> None:
        super().__init__(name, units=_UNITS, on_write=self._written, writable={
            "/Mode": Writable("integer", 0, 2), "/StartStop": Writable("integer", 0, 1),
            "/SetCurrent": Writable("number", 0, 32), "/MaxCurrent": Writable("number", 6, 32),
            "/AutoStart": Writable("integer", 0, 1)})
        self.model = model
        self.voltage_v = voltage_v
        self.load: ExtraLoad = model.add_load("evcharger", 0.0, phases=phases)
        self.connected = False
        self.start_stop = 0
        self.set_current_a = current_a
        self.max_current_a = max_current_a
        self._session_wh_start = 0.0
        self._session_start_s: float | None = None
        self.update(mandatory(process="sim-evcharger", instance=instance, product_id=0xFFFF,
                              product_name="EV Charging Station", connection="Modbus TCP"))
        self.update({"/CustomName": "EV charger (simulated)", "/Model": "EVCS (simulated)",
                     "/Mode": 0, "/AutoStart": 1, "/Position": 0, "/EnableDisplay": 1})
        self.follow(model.snapshot)

    # -- controls for tests and the demo ---------------------------------------------------
    @property
    def charging(self) -> bool:
        return self.load.on

    def plug_in(self) -> None:
        """A car is plugged in: a new session starts (/Status 1, or 2 if already started)."""
        if not self.connected:
            self.connected = True
            self._session_wh_start = self.load.energy_wh
            self._session_start_s = self.model.snapshot.time_s
        self._apply()

    def charge(self, power_w: float | None = None) -> None:
        """Plug in if need be and charge (/StartStop 1), at `power_w` if given (sets
        /SetCurrent to the current that gives it, within /MaxCurrent)."""
        if power_w is not None:
            phases = len(self.load.phases)
            self.set_current_a = min(self.max_current_a,
                                     max(0.0, power_w) / (self.voltage_v * phases))
        self.start_stop = 1
        self.plug_in()

    def stop(self) -> None:
        """/StartStop 0: stays plugged in, stops charging (/Status 1)."""
        self.start_stop = 0
        self._apply()

    def unplug(self) -> None:
        """The car leaves: /Status 0, the session ends."""
        self.connected = False
        self._session_start_s = None
        self._apply()

    # -- model and D-Bus -----------------------------------------------------------------------
    def _apply(self) -> None:
        """Set the model's load from the state, recompute the model (which calls `follow`)."""
        phases = len(self.load.phases)
        self.load.power_w = self.set_current_a * self.voltage_v * phases
        self.load.on = self.connected and self.start_stop == 1 and self.set_current_a > 0
        self.follow(self.model.refresh())

    def _written(self, path: str, value: JsonValue) -> int:
        number = float(value) if isinstance(value, int | float) else 0.0
        if path == "/SetCurrent":
            if number > self.max_current_a:
                return _REFUSED
            self.set_current_a = number
        elif path == "/MaxCurrent":
            self.max_current_a = number
            self.set_current_a = min(self.set_current_a, number)
        elif path == "/StartStop":
            self.start_stop = int(number)
        else:
            return 0  # /Mode, /AutoStart: kept, no effect
        self._apply()
        return 0

    @property
    def session_kwh(self) -> float:
        """Energy charged since the car was plugged in (0 while none is)."""
        return (self.load.energy_wh - self._session_wh_start) / 1000.0 if self.connected else 0.0

    def follow(self, s: Snapshot) -> None:
        """Show the state at snapshot `s`."""
        drawn = s.extra_w.get(self.load.name, 0.0)
        per_phase = drawn / len(self.load.phases)
        status = "charging" if drawn > 0 else "connected" if self.connected else "disconnected"
        session_s = 0.0 if self._session_start_s is None else s.time_s - self._session_start_s
        session_kwh = self.session_kwh
        values: dict[str, JsonValue] = {
            "/Ac/Power": round(drawn, 1),
            "/Current": round(self.set_current_a, 2) if drawn > 0 else 0.0,
            "/SetCurrent": round(self.set_current_a, 2),
            "/MaxCurrent": self.max_current_a,
            "/StartStop": self.start_stop,
            "/Status": STATUS[status],
            "/Ac/Energy/Forward": round(self.load.energy_wh / 1000.0, 3),
            "/Session/Energy": round(session_kwh, 3),
            "/Session/Time": round(session_s),
            "/ChargingTime": round(session_s),
        }
        for n in (1, 2, 3):
            values[f"/Ac/L{n}/Power"] = round(per_phase, 1) if n in self.load.phases else None
        self.update(values)
