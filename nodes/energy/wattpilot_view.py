"""What the Wattpilot's status says, read for `energy.wattpilot`: the figures the control
needs (`Reading`), the EV charger paths VRM shows (`vrm_paths`) and the request the
distributor gets (`request_fields`).

Pure: it only reads the status dict the client keeps (docs/design/wattpilot-protocol.md
§3); a key that is missing or of a wrong type reads as unknown, never as an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowengine.model import JsonValue
from nodes.energy.switch_run import number_text
from nodes.energy.wattpilot_vrm import Session, vrm_current, vrm_status

if TYPE_CHECKING:
    from nodes.energy.wattpilot import EnergyWattpilotConfig
    from nodes.energy.wattpilot_policy import Plan

__all__ = ["Reading", "number", "request_fields", "vrm_paths"]

CONNECTED_CAR = (2, 3, 4, 5)
"""car states with a car: charging, waiting, full, error"""


def number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class Reading:
    """The charger's figures, from its live status dict (read, never changed)."""

    status: Mapping[str, JsonValue]
    min_a: int = 6
    default_voltage_v: float = 230.0

    @property
    def car_connected(self) -> bool:
        return self.status.get("car") in CONNECTED_CAR

    @property
    def car_full(self) -> bool:
        return self.status.get("car") == 4

    @property
    def auto(self) -> bool:
        """Eco mode (lmo 4) is VRM's auto; Default (3) and Next Trip (5) are manual."""
        return self.status.get("lmo") == 4

    def nrg(self, index: int) -> float | None:
        """One of the 16 measurements (U L1-L3 N, I L1-L3, P L1-L3 N, P total, ...)."""
        values = self.status.get("nrg")
        if isinstance(values, list) and len(values) > index:
            return number(values[index])
        return None

    @property
    def power_w(self) -> float:
        return max(0.0, self.nrg(11) or 0.0)

    @property
    def voltage_v(self) -> float:
        volts = self.nrg(0)
        return volts if volts is not None and volts > 100 else self.default_voltage_v

    @property
    def max_a(self) -> int:
        """Per phase: the charger's limit (ama), the cable's (cbl) if lower; 16 unknown."""
        ama, cable = number(self.status.get("ama")), number(self.status.get("cbl"))
        limit = int(ama) if ama is not None and ama >= self.min_a else 16
        if cable is not None and cable >= self.min_a:
            limit = min(limit, int(cable))
        return limit

    @property
    def phases(self) -> int:
        """The phases it charges on (psm; with psm 0 from the currents, else three)."""
        psm = self.status.get("psm")
        if psm == 1:
            return 1
        if psm == 2:
            return 3
        currents = [self.nrg(i) or 0.0 for i in (4, 5, 6)]
        return 1 if currents[0] > 0.5 and max(currents[1:]) <= 0.5 else 3

    @property
    def price_low(self) -> bool:
        """The price the charger reports (awcp.marketprice) is below its limit (awp)."""
        price = self.status.get("awcp")
        market = number(price.get("marketprice")) if isinstance(price, dict) else None
        limit = number(self.status.get("awp"))
        return market is not None and limit is not None and market < limit


def vrm_paths(r: Reading, *, up: bool, hibernating: bool, serial: str | None,
              session: Session, plan: Plan | None,
              set_current: JsonValue) -> dict[str, JsonValue]:
    """Every EV charger path: `up` the link is ready (or asleep by choice: `hibernating`,
    shown as no car); `set_current` what /SetCurrent showed (kept while asleep)."""
    status = r.status
    paths: dict[str, JsonValue] = {"/Connected": 1 if up else 0}
    if serial is not None:
        paths["/Serial"] = serial
    if isinstance(status.get("fwv"), str):
        paths["/FirmwareVersion"] = status["fwv"]
    lmo = status.get("lmo")
    paths["/Mode"] = None if lmo is None else 1 if lmo == 4 else 0
    paths["/AutoStart"] = 1 if lmo == 4 else 0
    measured = up and not hibernating
    power = r.power_w if measured else 0.0
    car = 1 if hibernating else status.get("car")
    paths["/Status"] = status_code(r, car, power, plan) if up else None
    paths["/SetCurrent"] = vrm_current(amp=status.get("amp"), phases=r.phases) \
        if not hibernating else set_current
    paths["/MaxCurrent"] = float(3 * r.max_a)
    paths["/StartStop"] = 1 if status.get("frc") == 2 or power > 0 else 0
    for i, phase in enumerate(("L1", "L2", "L3")):
        paths[f"/Ac/{phase}/Power"] = r.nrg(7 + i) if measured else None
        paths[f"/Ac/{phase}/Voltage"] = r.nrg(i) if measured else None
        paths[f"/Ac/{phase}/Current"] = r.nrg(4 + i) if measured else None
    paths["/Ac/Power"] = power if up else None
    currents = [r.nrg(i) or 0.0 for i in (4, 5, 6)]
    paths["/Current"] = round(sum(currents), 1) if measured else None
    energy, seconds = session.energy_kwh, int(session.time_s)
    paths["/Ac/Energy/Forward"] = paths["/Session/Energy"] = energy
    paths["/ChargingTime"] = paths["/Session/Time"] = seconds
    return paths


def status_code(r: Reading, car: JsonValue, power: float, plan: Plan | None) -> int:
    """The charger's own status, or, in auto mode with a car, the state of a change of
    ours that waits (start/stop charging, switching phases) or waiting for sun."""
    if plan is not None and plan.status is not None and r.auto \
            and car in (2, 3, 5) and (plan.charge or power <= 0):
        return plan.status
    wanted = None if plan is None or not plan.charge else plan.phases
    return vrm_status(car=car, model_status=r.status.get("modelStatus"),
                      err=r.status.get("err"), power_w=power, phases_wanted=wanted)


def request_fields(r: Reading, cfg: EnergyWattpilotConfig, *, ready: bool,
                   plan: Plan | None, held_off: bool) -> dict[str, str]:
    """What the distributor gets under `<root>/Requests/<key>/`: the most three phases can
    take while a car waits in auto mode (else 0), `min_a` on one phase as the minimum,
    one amp on the phases in use as the step, and the power drawn now."""
    voltage = r.voltage_v
    wants = r.auto and r.car_connected and ready and not r.car_full and not held_off
    charging_on = plan.phases if plan is not None and plan.charge else 0
    fields = {"IsScriptedConsumer": "true",
              "IsAutomatic": "true" if r.auto else "false",
              "CustomName": cfg.custom_name + (f" ({charging_on})" if charging_on else ""),
              "Request": number_text(round(3 * r.max_a * voltage) if wants else 0),
              "StepSize": number_text(round(voltage * (3 if charging_on == 3 else 1))),
              "Minimum": number_text(round(cfg.min_a * voltage)),
              "Priority": str(cfg.priority),
              "PriorityShift": number_text(cfg.priority_shift),
              "IgnoreBatReservation": "false",
              "Consumption": number_text(round(r.power_w) if ready else 0)}
    if cfg.overhead_vrm_instance is not None:
        fields["VRMInstanceID"] = str(cfg.overhead_vrm_instance)
    return fields
