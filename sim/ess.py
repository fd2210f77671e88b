"""How the simulated Multiplus shares power out on ESS: on the grid and in island mode.

Pure functions of one moment, used by `sim.model.EnergyModel` at each step. Signs follow
Venus OS: grid + = import, battery + = charging. Every result keeps the balance exact:

    grid + pv_ac + pv_dc == load + battery

**On the grid** the Multiplus regulates the grid to its target (the ESS setpoint, reached
with `ramp`): the battery takes the difference, within its limits.

    battery = clamp(pv_ac + pv_dc - load + target, -discharge_cap, charge_cap)
    grid    = load + battery - pv_ac - pv_dc

Feed-in rules (Venus OS settings under /Settings/CGwacs) raise the lowest grid power the
site may reach, the *floor*:

- `MaxFeedInPower` >= 0 limits export to that many watts; `PreventFeedback` = 1 to 0 W.
- `OvervoltageFeedIn` = 0 (DC-coupled PV feed-in off): the DC side (battery and MPPTs)
  supplies at most the AC loads that AC PV leaves uncovered, so the site exports at most
  the AC PV surplus; a negative setpoint exports no battery or DC PV power.

A target below the floor is raised to it. When the battery cannot take what the floor
leaves over (full, or at its charge limit), PV is held back: the MPPTs first, then the
AC PV inverters (as a zero-feed-in limiter would). What was held back is `limited_w`.

**In island mode** (grid lost) the grid is 0: the battery takes pv - load. Surplus the
battery cannot take is held back (MPPTs first, then AC PV by frequency shifting); a load
beyond what the battery can give overloads the Multiplus (`island` returns None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SETTLED_W", "Flows", "island", "ramp", "regulate"]

SETTLED_W = 0.01
"""a ramp this close to its target has reached it"""


@dataclass(frozen=True, kw_only=True)
class Flows:
    """Where the power goes at one moment, in W."""

    battery_w: float
    grid_w: float
    pv_ac_w: float
    """AC PV produced (after any limiting)"""
    pv_dc_w: float
    """DC (MPPT) PV produced (after any limiting)"""
    limited_w: float = 0.0
    """PV held back by limiting"""
    dc_limited_w: float = 0.0
    """the part of it held back at the MPPTs"""


def ramp(value: float, target: float, dt_s: float, tau_s: float) -> float:
    """First-order approach of `value` to `target` over `dt_s` with time constant `tau_s`
    (0: at once). Monotonic, never past the target; exact for any split of `dt_s`."""
    if tau_s <= 0 or abs(target - value) <= SETTLED_W:
        return target
    moved = target + (value - target) * math.exp(-dt_s / tau_s)
    return target if abs(target - moved) <= SETTLED_W else moved


def regulate(*, target_w: float, load_w: float, pv_ac_w: float, pv_dc_w: float,
             charge_cap_w: float, discharge_cap_w: float, export_limit_w: float | None,
             dc_feed_in: bool) -> Flows:
    """On the grid: see the module docstring. `export_limit_w` is the most the site may
    export (None: no limit)."""
    floor = -math.inf if export_limit_w is None else -max(0.0, export_limit_w)
    dc_floor = floor if dc_feed_in else max(floor, min(0.0, load_w - pv_ac_w))
    aim = max(target_w, dc_floor)
    battery = max(-discharge_cap_w, min(charge_cap_w, pv_ac_w + pv_dc_w - load_w + aim))
    grid = load_w + battery - pv_ac_w - pv_dc_w
    dc_cut = min(pv_dc_w, max(0.0, dc_floor - grid))
    grid += dc_cut
    ac_cut = min(pv_ac_w, max(0.0, floor - grid))
    grid += ac_cut
    return Flows(battery_w=battery, grid_w=grid, pv_ac_w=pv_ac_w - ac_cut,
                 pv_dc_w=pv_dc_w - dc_cut, limited_w=dc_cut + ac_cut, dc_limited_w=dc_cut)


def island(*, load_w: float, pv_ac_w: float, pv_dc_w: float, charge_cap_w: float,
           discharge_cap_w: float) -> Flows | None:
    """Grid lost: see the module docstring. None when the load is more than PV and the
    battery together can give (the Multiplus switches its output off)."""
    surplus = pv_ac_w + pv_dc_w - load_w
    if surplus < -discharge_cap_w:
        return None
    battery = min(surplus, charge_cap_w)
    excess = surplus - battery
    dc_cut = min(pv_dc_w, excess)
    ac_cut = min(pv_ac_w, excess - dc_cut)
    return Flows(battery_w=battery, grid_w=0.0, pv_ac_w=pv_ac_w - ac_cut,
                 pv_dc_w=pv_dc_w - dc_cut, limited_w=dc_cut + ac_cut, dc_limited_w=dc_cut)
