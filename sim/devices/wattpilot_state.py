"""What the simulated Wattpilot knows: its settings, a car, and the status keys it reports.

`ChargerState.status()` is the whole status dict (docs/design/wattpilot-protocol.md §3),
`write(key, value)` checks and applies one setValue, `advance(dt_s)` lets simulated time
pass and charges the car. The charger charges when a car is plugged in, not full, and
its logic wants to:

| frc | lmo | charges | modelStatus |
| --- | --- | --- | --- |
| 1 off | any | no | 4 NotChargingBecauseForceStateOff |
| 2 on | any | yes | 3 ChargingBecauseForceStateOn |
| 0 neutral | 3 default | yes | 15 ChargingBecauseFallbackDefault |
| 0 neutral | 4 eco | only while `awcp.marketprice` < `awp` and `ful` | 7 price low, else 17 |
| 0 neutral | 5 next trip | yes | 10 ChargingBecauseAutomaticStop |

`acs` 1 (access control) blocks charging (2) until `trx` is set; a change of phases
while charging pauses for `phase_switch_s` (23). Power = amp * phases * `voltage_v`,
phases 1 for `psm` 1 and 3 for `psm` 0 (auto, the simulator picks three) or 2.
The car state `car` is 1 without a car, 2 charging, 3 connected and not charging, 4 full.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

__all__ = ["WRITABLE", "Car", "ChargerState"]

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class _Rule:
    kind: type | tuple[type, ...]
    low: float | None = None
    high: float | None = None
    choices: tuple[int, ...] = ()
    nullable: bool = False


WRITABLE: dict[str, _Rule] = {
    "amp": _Rule(int, 6, None), "ama": _Rule(int, 6, None), "mca": _Rule(int, 6, None),
    "frc": _Rule(int, choices=(0, 1, 2)), "psm": _Rule(int, choices=(0, 1, 2)),
    "lmo": _Rule(int, choices=(3, 4, 5)), "acs": _Rule(int, choices=(0, 1)),
    "trx": _Rule(int, 0, 10, nullable=True), "fna": _Rule(str),
    "awp": _Rule((int, float)), "ful": _Rule(bool), "fup": _Rule(bool), "su": _Rule(bool),
    "fst": _Rule((int, float), 0), "fam": _Rule(int, 0, 100), "fmt": _Rule(int, 0),
    "mcpd": _Rule(int, 0), "mptwt": _Rule(int, 0), "mpwst": _Rule(int, 0),
    "spl3": _Rule((int, float), 0), "psmd": _Rule(int, 0),
}
"""the keys a setValue may change, with their JSON type and range (amp's and mca's top
is `ama`, ama's is the variant's 16 or 32 A)"""

_DEFAULTS: JsonObject = {
    "amp": 16, "frc": 0, "psm": 0, "lmo": 3, "acs": 0, "trx": None, "mca": 6,
    "awp": 10.0, "ful": False, "fup": True, "su": False, "fst": 1400.0, "fam": 100,
    "fmt": 900_000, "mcpd": 0, "mptwt": 600_000, "mpwst": 120_000, "spl3": 4200.0,
    "psmd": 10_000,
}
_TYPE_NAMES = {int: "int", str: "string", bool: "bool"}


@dataclass
class Car:
    """A plugged-in car: its battery fills with what the charger gives."""

    capacity_wh: float
    energy_wh: float

    @property
    def soc(self) -> float:
        return 100.0 * self.energy_wh / self.capacity_wh

    @property
    def full(self) -> bool:
        return self.energy_wh >= self.capacity_wh


class ChargerState:
    """The charger's settings, car and counters; no I/O (the server sends what changed)."""

    def __init__(self, *, serial: str, devicetype: str, friendly_name: str, firmware: str,
                 variant: int, voltage_v: float, phase_switch_s: float,
                 energy_total_wh: float) -> None:
        if variant not in (11, 22):
            raise ValueError(f"a Wattpilot variant is 11 or 22 (kW), got {variant}")
        self.serial, self.devicetype, self.firmware = serial, devicetype, firmware
        self.variant = variant
        self.voltage_v = voltage_v
        self.phase_switch_s = phase_switch_s
        self.settings: JsonObject = {**_DEFAULTS, "fna": friendly_name,
                                     "ama": 16 if variant == 11 else 32}
        self.settings["amp"] = min(self.settings["amp"], self.settings["ama"])
        self.price_ct: float = 20.0
        """`awcp.marketprice`, ct/kWh"""
        self.car: Car | None = None
        self.time_s = 0.0
        """simulated seconds since start"""
        self.energy_total_wh = energy_total_wh
        self.session_wh = 0.0
        self._switching_until = -1.0
        self._phases_now = self.phases
        self._booted = time.monotonic()

    # -- the car -------------------------------------------------------------------------------
    def plug_in(self, capacity_wh: float, soc: float) -> None:
        if capacity_wh <= 0 or not 0 <= soc <= 100:
            raise ValueError(f"a car needs capacity_wh > 0 and soc 0..100, got "
                             f"{capacity_wh}, {soc}")
        self.car = Car(capacity_wh=capacity_wh, energy_wh=capacity_wh * soc / 100.0)
        self.session_wh = 0.0  # wh counts from the plug-in

    def unplug(self) -> None:
        self.car = None

    # -- what it does --------------------------------------------------------------------------
    @property
    def phases(self) -> int:
        return 1 if self.settings["psm"] == 1 else 3

    @property
    def switching_phases(self) -> bool:
        return self.time_s < self._switching_until

    def model_status(self) -> int:
        s = self.settings
        if self.switching_phases:
            return 23
        if s["acs"] == 1 and s["trx"] is None:
            return 2
        if s["frc"] == 1:
            return 4
        if s["frc"] == 2:
            return 3
        if s["lmo"] == 4:
            return 7 if s["ful"] and self.price_ct < s["awp"] else 17
        return 10 if s["lmo"] == 5 else 15

    @property
    def allowed(self) -> bool:
        return self.model_status() in (3, 7, 10, 15)

    @property
    def charging(self) -> bool:
        return self.car is not None and not self.car.full and self.allowed

    @property
    def power_w(self) -> float:
        return self.settings["amp"] * self.phases * self.voltage_v if self.charging else 0.0

    def car_state(self) -> int:
        if self.car is None:
            return 1
        if self.car.full:
            return 4
        return 2 if self.charging else 3

    def advance(self, dt_s: float) -> None:
        """Let `dt_s` simulated seconds pass at the current power; a car stops at full."""
        if dt_s < 0:
            raise ValueError(f"time runs forwards, got {dt_s}")
        self._check_phase_switch()
        energy = self.power_w * dt_s / 3600.0
        if self.car is not None:
            energy = min(energy, max(0.0, self.car.capacity_wh - self.car.energy_wh))
            self.car.energy_wh += energy
        self.energy_total_wh += energy
        self.session_wh += energy
        self.time_s += dt_s

    def _check_phase_switch(self) -> None:
        if self.phases != self._phases_now:
            if self.charging and self.phase_switch_s > 0:
                self._switching_until = self.time_s + self.phase_switch_s
            self._phases_now = self.phases

    # -- setValue ------------------------------------------------------------------------------
    def write(self, key: str, value: Any) -> str | None:
        """Apply one setValue; None if done, else the charger's refusal message."""
        rule = WRITABLE.get(key)
        if rule is None:
            return f"key {key!r} is read only" if key in self.status() else f"unknown key {key!r}"
        problem = self._check(key, rule, value)
        if problem is not None:
            return problem
        self.settings[key] = value
        if key == "ama":  # what hangs off the limit follows it down
            self.settings["amp"] = min(self.settings["amp"], value)
            self.settings["mca"] = min(self.settings["mca"], value)
        self._check_phase_switch()
        return None

    def _check(self, key: str, rule: _Rule, value: Any) -> str | None:
        if value is None and rule.nullable:
            return None
        kinds = rule.kind if isinstance(rule.kind, tuple) else (rule.kind,)
        if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
            return "value must be number" if float in kinds else \
                f"value must be {_TYPE_NAMES[kinds[0]]}"
        if rule.choices and value not in rule.choices:
            return f"value must be one of {list(rule.choices)}"
        if isinstance(value, str):
            return None
        number, high = cast(float, value), rule.high
        if key in ("amp", "mca"):
            high = self.settings["ama"]
        elif key == "ama":
            high = 16 if self.variant == 11 else 32
        if (rule.low is not None and number < rule.low) or (high is not None and number > high):
            return f"value out of range {rule.low}..{high}"
        return None

    # -- the status ----------------------------------------------------------------------------
    def nrg(self) -> list[float]:
        """U L1-L3, N; I L1-L3; P L1-L3, N; P total; power factors L1-L3, N."""
        active = [self.charging and i < self.phases for i in range(3)]
        amps = [float(self.settings["amp"]) if on else 0.0 for on in active]
        powers = [round(a * self.voltage_v, 2) for a in amps]
        return [self.voltage_v] * 3 + [0.0] + amps + powers + [0.0, round(sum(powers), 2)] + \
            [99.0 if on else 0.0 for on in active] + [0.0]

    def status(self) -> JsonObject:
        s = self.settings
        charging = self.charging
        return {
            **s,
            "sse": self.serial, "typ": self.devicetype, "fwv": self.firmware, "oem": "fronius",
            "var": self.variant, "car": self.car_state(), "modelStatus": self.model_status(),
            "alw": self.allowed, "acu": s["amp"] if charging else None, "err": 0,
            "fsp": self.phases == 1, "nrg": self.nrg(),
            "pha": [charging and i < self.phases for i in range(3)] + [True, True, True],
            "eto": round(self.energy_total_wh), "wh": round(self.session_wh, 2),
            "cbl": None if self.car is None else 32, "fhz": 50.0, "tma": [24.5, 24.1],
            "awcp": {"start": 0, "end": 0, "marketprice": self.price_ct},
            "rbt": int((time.monotonic() - self._booted) * 1000),
            "utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        }
