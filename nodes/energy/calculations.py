"""What the distributor shows of each cycle, by D-Bus path (pure).

The status service (com.victronenergy.settings.esESS_SolarOverheadDistributor) and MQTT
(`<root>/Calculations/...`) get `calculations()`; the "Battery Charge Reservation"
battery gets `reservation_monitor()`: its /Soc is how much of the reservation the
battery takes (charge power / reservation, at most 100 %; 0 while it is not charging
or nothing is reserved) and its name carries the reservation.
"""

from __future__ import annotations

import math

from flowengine.model import JsonValue
from nodes.energy.allocation import Allocation, AllocationInputs

__all__ = ["calculations", "reservation_monitor"]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def calculations(a: Allocation, inputs: AllocationInputs, problem: str | None, *,
                 wall: float, stamp: str) -> dict[str, JsonValue]:
    """Path -> value; what could not be computed (`problem`) is invalid (None)."""
    ok = problem is None
    return {
        "/Calculations/Grid/L1/Power": _finite(inputs.grid_l1) if ok else None,
        "/Calculations/Grid/L2/Power": _finite(inputs.grid_l2),
        "/Calculations/Grid/L3/Power": _finite(inputs.grid_l3),
        "/Calculations/Grid/TotalFeedIn": round(a.feed_in, 1) if ok else None,
        "/Calculations/Battery/Power": inputs.battery_power,
        "/Calculations/Battery/Soc": inputs.battery_soc,
        "/Calculations/Battery/Reservation": a.reservation if ok else None,
        "/Calculations/OverheadAvailable": round(a.available, 1),
        "/Calculations/OverheadAssigned": round(a.assigned, 1),
        "/Calculations/OverheadRemaining": round(a.remaining, 1),
        "/Calculations/Problem": problem or "",
        "/LastUpdateTime": int(wall),
        "/LastUpdateDateTime": stamp,
    }


def reservation_monitor(a: Allocation, inputs: AllocationInputs,
                        problem: str | None) -> dict[str, JsonValue]:
    reservation, power = a.reservation, inputs.battery_power or 0.0
    taking = problem is None and reservation > 0 and power > 0
    soc = min(100.0, power / reservation * 100) if taking else 0.0
    return {"/Soc": round(soc, 1),
            "/CustomName": f"Battery Charge Reservation: {reservation:.0f}W"}
