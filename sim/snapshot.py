"""One moment of the simulated site: every quantity `sim.model.EnergyModel` computed.

Powers in W, energies in kWh, SoC in %; signs as on Venus OS (grid + = import,
battery + = charging). `power_factor` and `ac_current` turn a power into what a meter
shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sim.profiles import Phases

__all__ = ["ZERO", "Snapshot", "ac_current", "as_phases", "power_factor"]

ZERO: Phases = (0.0, 0.0, 0.0)


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Every quantity after one step. Powers in W, energies in kWh, SoC in %."""

    time_s: float
    """simulated seconds since midnight of day one"""
    hour: float
    """time of day, 0 <= hour < 24"""
    load_w: float
    load_l: Phases
    extra_w: dict[str, float]
    """part of the load drawn by each extra load (a copy)"""
    pv_ac_w: float
    """AC PV produced (after limiting)"""
    pv_ac_l: Phases
    pv_ac_position: str | None
    """where the AC PV inverter is ("grid", "output", "genset"); None: the site has none"""
    pv_dc_w: float
    """DC PV produced by the MPPTs (after limiting)"""
    has_mppt: bool
    pv_w: float
    pv_limited_w: float
    """PV held back because the site may not export it and the battery is full"""
    pv_dc_limited_w: float
    """the part of `pv_limited_w` held back at the MPPTs"""
    battery_w: float
    battery_v: float
    battery_a: float
    soc: float
    min_soc: float
    setpoint_w: float
    """the ESS setpoint in the settings"""
    grid_target_w: float
    """what the Multiplus regulates the grid to now: ramps to `setpoint_w`"""
    grid_connected: bool
    """False in island mode (grid lost)"""
    output_on: bool
    """False while an overload in island mode has switched the AC output off"""
    inverter_w: float
    """AC power into the Multiplus (+ = AC to DC, charging)"""
    inverter_l: Phases
    grid_w: float
    grid_l: Phases
    voltage_l: Phases
    grid_current_l: Phases
    grid_pf_l: Phases
    frequency_hz: float
    grid_import_kwh: float
    grid_export_kwh: float
    grid_import_l_kwh: Phases
    grid_export_l_kwh: Phases
    grid_net_import_kwh: float
    grid_net_export_kwh: float
    pv_ac_kwh: float
    pv_ac_l_kwh: Phases
    pv_dc_kwh: float
    battery_charged_kwh: float
    battery_discharged_kwh: float
    load_kwh: float

    def pv_on(self, position: str) -> Phases:
        """AC PV per phase at one position ("grid", "output", "genset"), as systemcalc's
        /Ac/PvOnGrid, /Ac/PvOnOutput and /Ac/PvOnGenset show it; zeros elsewhere."""
        return self.pv_ac_l if position == self.pv_ac_position else ZERO

    def has_pv_on(self, position: str) -> bool:
        """Whether a PV inverter sits at `position` (systemcalc leaves the others invalid)."""
        return position == self.pv_ac_position


def as_phases(values: Iterable[float]) -> Phases:
    a, b, c = values
    return (a, b, c)


def power_factor(power_w: float) -> float:
    """A plausible power factor: poor for small loads, negative while exporting."""
    magnitude = 0.5 + 0.47 * min(1.0, abs(power_w) / 500.0)
    return -magnitude if power_w < 0 else magnitude


def ac_current(power_w: float, voltage_v: float) -> float:
    if voltage_v <= 0:
        return 0.0
    return abs(power_w) / (voltage_v * abs(power_factor(power_w)))
