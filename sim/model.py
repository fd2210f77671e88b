"""The physical model behind the simulated Venus OS and devices: PV, house, battery, grid.

One `EnergyModel` holds the state of a small ESS site. `step(dt_s)` advances it by
`dt_s` real seconds (times `time_scale` simulated seconds) and returns a `Snapshot`
with every quantity. Signs follow Venus OS: grid + = import, battery + = charging.

Each step the Multiplus regulates the grid to its target, which follows the ESS
setpoint as a real MultiPlus-II does, first-order with `ModelParams.setpoint_tau_s`
(1.5 s of simulated time: 95 % of a step after 4.5 s, within 0.01 W after some 20 s):

    battery = pv - load + target              (what the battery must take or give)
    battery = clamp(battery, -discharge_cap, charge_cap)
    grid    = load + battery - pv              (the grid covers the rest)

The feed-in settings (`EssSettings.dc_feed_in`, `max_feed_in_w`, `prevent_feedback`)
limit export; PV the site may not export and the battery cannot take is held back
(`sim.ess` has the rules). A setpoint change takes effect with the next step that lets
time pass: `refresh` recomputes without time, so the target has not moved yet.

`charge_cap` is 0 once the battery is full (surplus PV is fed in), `discharge_cap` is
0 at the minimum SoC, and both are cut so that one step lands exactly on 100 % or on
the limit. Below the limit (when it is raised) the battery only stops discharging; it
is not recharged from the grid. There are no conversion losses, so
`grid + pv == load + battery` at every step, and the per-phase values add up to the
totals. AC PV and the load are per phase; on the grid the Multiplus spreads its AC
power evenly over the three phases.

`lose_grid()` opens the Multiplus's AC input (island mode, until `restore_grid()`):
the grid is 0, AC PV on the input side stops (it has no grid), the battery takes
pv - load within its hardware limits down to 0 % SoC (the ESS limits apply on the grid
only), surplus PV is held back, and a load beyond what the battery can give switches
the AC output off (`Snapshot.output_on`; the house and AC PV on the output are 0 then).
Back on the grid the target ramps again from 0 W.

All randomness comes from `sim.profiles`, keyed on the seed and the simulated time:
the same parameters and the same calls to `step` give the same series.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sim.ess import Flows, island, ramp, regulate
from sim.profiles import DAY_S, LoadProfile, Phases, PvProfile, smooth_noise
from sim.snapshot import ZERO, Snapshot, ac_current, as_phases, power_factor

__all__ = [
    "EnergyModel", "EssSettings", "ExtraLoad", "ModelParams", "Snapshot", "ac_current",
    "power_factor",
]


@dataclass(frozen=True, kw_only=True)
class ModelParams:
    """Everything that shapes the simulated site; fixed for the life of a model."""

    seed: int = 1
    time_scale: float = 1.0
    """simulated seconds per real second passed to `step` (the demo's --speed)"""
    start_hour: float = 9.0
    pv_ac: PvProfile | None = PvProfile(peak_w=4000.0)
    """an AC-coupled, three-phase PV inverter (None: the site has none)"""
    pv_ac_position: Literal["grid", "output", "genset"] = "grid"
    pv_dc: PvProfile | None = PvProfile(peak_w=3000.0, sunrise_h=6.5, sunset_h=19.5)
    """PV on MPPT chargers, on the battery's DC bus (None: the site has no MPPT)"""
    load: LoadProfile = LoadProfile()
    capacity_wh: float = 28_000.0
    initial_soc: float = 50.0
    battery_max_charge_w: float = 5000.0
    battery_max_discharge_w: float = 5000.0
    battery_empty_v: float = 48.0
    battery_full_v: float = 52.0
    battery_resistance_ohm: float = 0.01
    grid_voltage_v: float = 230.0
    frequency_hz: float = 50.0
    setpoint_tau_s: float = 1.5
    """time constant (simulated s) of the Multiplus reaching a new grid setpoint; 0 = at once"""

    def __post_init__(self) -> None:
        if self.setpoint_tau_s < 0:
            raise ValueError(f"setpoint_tau_s must be >= 0, got {self.setpoint_tau_s}")
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")
        if self.capacity_wh <= 0:
            raise ValueError(f"capacity_wh must be > 0, got {self.capacity_wh}")
        if not 0 <= self.initial_soc <= 100:
            raise ValueError(f"initial_soc must be within 0..100, got {self.initial_soc}")
        if self.battery_max_charge_w < 0 or self.battery_max_discharge_w < 0:
            raise ValueError("battery power limits must not be negative")


@dataclass(kw_only=True)
class EssSettings:
    """What Venus OS's settings service holds for ESS; change it at run time."""

    setpoint_w: float = 0.0
    """/Settings/CGwacs/AcPowerSetPoint: + = import from the grid"""
    min_soc: float = 10.0
    """/Settings/CGwacs/BatteryLife/MinimumSocLimit, the active SoC limit"""
    max_charge_w: float | None = None
    """/Settings/CGwacs/MaxChargePower; None (Venus: -1) = no limit"""
    max_discharge_w: float | None = None
    """/Settings/CGwacs/MaxDischargePower; None (Venus: -1) = no limit"""
    dc_feed_in: bool = True
    """/Settings/CGwacs/OvervoltageFeedIn: feed in DC-coupled PV (and battery) power; off,
    the site exports at most its AC PV surplus (this site has it on; localsettings' default
    is off)"""
    max_feed_in_w: float | None = None
    """/Settings/CGwacs/MaxFeedInPower; None (Venus: -1) = no limit"""
    prevent_feedback: bool = False
    """/Settings/CGwacs/PreventFeedback: no export at all"""

    @property
    def export_limit_w(self) -> float | None:
        """The most the site may export, in W (None: no limit)."""
        if self.prevent_feedback:
            return 0.0
        return None if self.max_feed_in_w is None else max(0.0, self.max_feed_in_w)


@dataclass(kw_only=True)
class ExtraLoad:
    """A switched consumer (relay, EV charger) on top of the house load."""

    name: str
    power_w: float
    """what it draws while on; may change at run time (an EV charger's current)"""
    phases: tuple[int, ...] = (1,)
    """phases it draws from, 1..3; the power is split evenly among them"""
    on: bool = False
    energy_wh: float = 0.0
    """consumed so far, counted by the model"""

    def __post_init__(self) -> None:
        if not self.phases or any(p not in (1, 2, 3) for p in self.phases):
            raise ValueError(f"load '{self.name}': phases must be among 1, 2, 3: {self.phases}")
        if len(set(self.phases)) != len(self.phases):
            raise ValueError(f"load '{self.name}': a phase is listed twice: {self.phases}")

    @property
    def draw_w(self) -> float:
        return self.power_w if self.on else 0.0


@dataclass
class _Counters:
    grid_import_l: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    grid_export_l: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    pv_ac_l: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    net_import: float = 0.0
    net_export: float = 0.0
    pv_dc: float = 0.0
    charged: float = 0.0
    discharged: float = 0.0
    load: float = 0.0


class EnergyModel:
    """The simulated site. Not thread-safe; step it from one event loop."""

    def __init__(self, params: ModelParams | None = None, *,
                 settings: EssSettings | None = None) -> None:
        self.params = params or ModelParams()
        self.settings = settings or EssSettings()
        self._time_s = self.params.start_hour * 3600.0
        self._soc = self.params.initial_soc
        self._target_w = self.settings.setpoint_w
        self._grid_connected = True
        self._counters = _Counters()
        self._loads: dict[str, ExtraLoad] = {}
        self._listeners: list[Callable[[Snapshot], None]] = []
        self._snapshot = self._settle(0.0)

    @property
    def snapshot(self) -> Snapshot:
        """The state after the last step (or at the start)."""
        return self._snapshot

    @property
    def loads(self) -> dict[str, ExtraLoad]:
        return dict(self._loads)

    def add_load(self, name: str, power_w: float, *, phases: tuple[int, ...] = (1,),
                 on: bool = False) -> ExtraLoad:
        """Hook a switched consumer into the house load; toggle `on` or set `power_w` later."""
        if name in self._loads:
            raise ValueError(f"an extra load named '{name}' exists already")
        load = ExtraLoad(name=name, power_w=power_w, phases=phases, on=on)
        self._loads[name] = load
        return load

    def remove_load(self, name: str) -> None:
        del self._loads[name]

    @property
    def grid_connected(self) -> bool:
        return self._grid_connected

    def lose_grid(self) -> Snapshot:
        """A grid failure: the Multiplus runs in island mode until `restore_grid`."""
        self._grid_connected = False
        return self.refresh()

    def restore_grid(self) -> Snapshot:
        """The grid is back: the Multiplus connects and ramps to the setpoint from 0 W."""
        self._grid_connected = True
        return self.refresh()

    def subscribe(self, listener: Callable[[Snapshot], None]) -> Callable[[], None]:
        """Call `listener` with each new snapshot; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def refresh(self) -> Snapshot:
        """Recompute powers now (after a settings or load change) without time passing."""
        self._snapshot = self._settle(0.0)
        self._notify()
        return self._snapshot

    def step(self, dt_s: float) -> Snapshot:
        """Advance by `dt_s` real seconds; powers hold for the step and are integrated."""
        if dt_s < 0 or not math.isfinite(dt_s):
            raise ValueError(f"a step must be a finite time >= 0, got {dt_s}")
        dt = dt_s * self.params.time_scale
        self._time_s += dt
        self._snapshot = self._settle(dt)
        self._notify()
        return self._snapshot

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener(self._snapshot)

    def _caps(self, dt: float) -> tuple[float, float]:
        """(charge, discharge) limits in W for this step: hardware, ESS settings (on the
        grid only), and the room left to 100 % and down to the limit (0 % in island mode)."""
        p, s = self.params, self.settings
        charge_cap = p.battery_max_charge_w
        discharge_cap = p.battery_max_discharge_w
        floor_soc = s.min_soc
        if self._grid_connected:
            if s.max_charge_w is not None:
                charge_cap = min(charge_cap, max(0.0, s.max_charge_w))
            if s.max_discharge_w is not None:
                discharge_cap = min(discharge_cap, max(0.0, s.max_discharge_w))
        else:
            floor_soc = 0.0
        room_wh = max(0.0, 100.0 - self._soc) / 100.0 * p.capacity_wh
        above_limit_wh = max(0.0, self._soc - floor_soc) / 100.0 * p.capacity_wh
        if dt > 0:
            charge_cap = min(charge_cap, room_wh * 3600.0 / dt)
            discharge_cap = min(discharge_cap, above_limit_wh * 3600.0 / dt)
        else:
            charge_cap = charge_cap if room_wh > 0 else 0.0
            discharge_cap = discharge_cap if above_limit_wh > 0 else 0.0
        return charge_cap, discharge_cap

    def _battery_electrics(self, power_w: float) -> tuple[float, float]:
        p = self.params
        ocv = p.battery_empty_v + (p.battery_full_v - p.battery_empty_v) * self._soc / 100.0
        r = p.battery_resistance_ohm
        # P = V * I with V = ocv + r * I  ->  r I^2 + ocv I - P = 0
        current = power_w / ocv if r == 0 else (
            (-ocv + math.sqrt(ocv * ocv + 4.0 * r * power_w)) / (2.0 * r))
        voltage = ocv + r * current
        return voltage, current

    def _flows(self, dt: float, load_w: float, pv_ac: float, pv_dc: float) -> Flows | None:
        charge_cap, discharge_cap = self._caps(dt)
        s = self.settings
        if not self._grid_connected:
            return island(load_w=load_w, pv_ac_w=pv_ac, pv_dc_w=pv_dc,
                          charge_cap_w=charge_cap, discharge_cap_w=discharge_cap)
        self._target_w = ramp(self._target_w, s.setpoint_w, dt, self.params.setpoint_tau_s)
        return regulate(target_w=self._target_w, load_w=load_w, pv_ac_w=pv_ac, pv_dc_w=pv_dc,
                        charge_cap_w=charge_cap, discharge_cap_w=discharge_cap,
                        export_limit_w=s.export_limit_w, dc_feed_in=s.dc_feed_in)

    def _settle(self, dt: float) -> Snapshot:
        p, s, t = self.params, self.settings, self._time_s
        load_l = list(p.load.phases_w(p.seed, t))
        for load in self._loads.values():
            for phase in load.phases:
                load_l[phase - 1] += load.draw_w / len(load.phases)
        pv_ac = 0.0 if p.pv_ac is None else p.pv_ac.power_w(p.seed, "pv_ac", t)
        if not self._grid_connected:
            self._target_w = 0.0
            if p.pv_ac_position != "output":
                pv_ac = 0.0  # an inverter on the AC input side has no grid to feed
        pv_dc = 0.0 if p.pv_dc is None else p.pv_dc.power_w(p.seed, "pv_dc", t)
        flows = self._flows(dt, sum(load_l), pv_ac, pv_dc)
        output_on = flows is not None
        if flows is None:  # island overload: the output goes dark, with AC PV on it
            load_l = [0.0, 0.0, 0.0]
            flows = self._flows(dt, 0.0, 0.0, pv_dc)
            assert flows is not None  # nothing to carry: it never overloads
        extra = {name: load.draw_w if output_on else 0.0 for name, load in self._loads.items()}
        load_w = sum(load_l)
        battery, pv_ac, pv_dc = flows.battery_w, flows.pv_ac_w, flows.pv_dc_w
        pv_ac_l = as_phases([pv_ac / 3.0] * 3)
        inverter = battery - pv_dc
        if self._grid_connected:
            inverter_l = as_phases([inverter / 3.0] * 3)
            grid_l = as_phases(load_l[i] - pv_ac_l[i] + inverter_l[i] for i in range(3))
        else:  # each phase of the Multiplus carries its own phase alone
            inverter_l = as_phases(pv_ac_l[i] - load_l[i] for i in range(3))
            grid_l = ZERO
        grid = sum(grid_l)
        voltage_l = as_phases(
            p.grid_voltage_v + 2.0 * _wobble(p.seed, f"v{i}", t) - 0.002 * grid_l[i]
            for i in range(3))
        if dt > 0:
            self._integrate(dt, grid_l, grid, pv_ac_l, pv_dc, battery, load_w, output_on)
        voltage, current = self._battery_electrics(battery)
        c = self._counters
        return Snapshot(
            time_s=t, hour=(t % DAY_S) / 3600.0,
            load_w=load_w, load_l=as_phases(load_l), extra_w=extra,
            pv_ac_w=pv_ac, pv_ac_l=pv_ac_l,
            pv_ac_position=None if p.pv_ac is None else p.pv_ac_position,
            pv_dc_w=pv_dc, has_mppt=p.pv_dc is not None, pv_w=pv_ac + pv_dc,
            pv_limited_w=flows.limited_w, pv_dc_limited_w=flows.dc_limited_w,
            battery_w=battery, battery_v=voltage, battery_a=current, soc=self._soc,
            min_soc=s.min_soc, setpoint_w=s.setpoint_w, grid_target_w=self._target_w,
            grid_connected=self._grid_connected, output_on=output_on,
            inverter_w=inverter, inverter_l=inverter_l,
            grid_w=grid, grid_l=grid_l, voltage_l=voltage_l,
            grid_current_l=as_phases(ac_current(grid_l[i], voltage_l[i]) for i in range(3)),
            grid_pf_l=as_phases(power_factor(w) for w in grid_l),
            frequency_hz=p.frequency_hz + 0.02 * _wobble(p.seed, "f", t),
            grid_import_kwh=sum(c.grid_import_l), grid_export_kwh=sum(c.grid_export_l),
            grid_import_l_kwh=as_phases(c.grid_import_l),
            grid_export_l_kwh=as_phases(c.grid_export_l),
            grid_net_import_kwh=c.net_import, grid_net_export_kwh=c.net_export,
            pv_ac_kwh=sum(c.pv_ac_l), pv_ac_l_kwh=as_phases(c.pv_ac_l), pv_dc_kwh=c.pv_dc,
            battery_charged_kwh=c.charged, battery_discharged_kwh=c.discharged,
            load_kwh=c.load,
        )

    def _integrate(self, dt: float, grid_l: Phases, grid: float, pv_ac_l: Phases,
                   pv_dc: float, battery: float, load_w: float, output_on: bool) -> None:
        hours = dt / 3600.0
        c = self._counters
        for i in range(3):
            c.grid_import_l[i] += max(0.0, grid_l[i]) * hours / 1000.0
            c.grid_export_l[i] += max(0.0, -grid_l[i]) * hours / 1000.0
            c.pv_ac_l[i] += pv_ac_l[i] * hours / 1000.0
        c.net_import += max(0.0, grid) * hours / 1000.0
        c.net_export += max(0.0, -grid) * hours / 1000.0
        c.pv_dc += pv_dc * hours / 1000.0
        c.charged += max(0.0, battery) * hours / 1000.0
        c.discharged += max(0.0, -battery) * hours / 1000.0
        c.load += load_w * hours / 1000.0
        for load in self._loads.values() if output_on else ():
            load.energy_wh += load.draw_w * hours
        soc = self._soc + battery * hours / self.params.capacity_wh * 100.0
        self._soc = min(100.0, max(0.0, soc))


def _wobble(seed: int, stream: str, t_s: float) -> float:
    return smooth_noise(seed, stream, t_s, 30.0)
