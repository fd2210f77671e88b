"""The Wattpilot as VRM sees it: status codes, the current slider, the session counters.

Pure: no I/O, no clock of its own, so every mapping is tested on its own.

- `vrm_status`: the charger's car state, error and `modelStatus`
  (docs/design/wattpilot-protocol.md §3) as a Victron EV charger `/Status`
  (reference: venus-dbus.md, gui-v2's `Evcs_Status`). Every modelStatus has a row;
  one that is not known shows from the car state and the power, never crashes.
- `current_setting` / `vrm_current`: VRM's one current slider both ways. 6..17 A is one
  phase at that current (at most 16 A); 18 A and more is three phases at a third each.
- `Session`: charging time (only while charging) and energy of a session, reset on
  unplugging or at the next plug-in (es-ESS ResetChargedEnergyCounter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CHARGING", "MODEL_STATUS", "Session", "current_setting", "vrm_current",
           "vrm_status"]

# Victron /Status codes
DISCONNECTED, CONNECTED, CHARGING_, CHARGED, WAITING_FOR_SUN = 0, 1, 2, 3, 4
WAITING_FOR_RFID, WAITING_FOR_START, GROUND_ERROR, WELDED_CONTACTS = 5, 6, 8, 9
RESIDUAL_CURRENT, OVERVOLTAGE, OVERHEATING, CHARGING_LIMIT = 11, 13, 14, 20
START_CHARGING, SWITCHING_TO_3, SWITCHING_TO_1, STOP_CHARGING = 21, 22, 23, 24

MODEL_STATUS: dict[int, tuple[str, int]] = {
    0: ("NotChargingBecauseNoChargeCtrlData", CONNECTED),
    1: ("NotChargingBecauseOvertemperature", OVERHEATING),
    2: ("NotChargingBecauseAccessControlWait", WAITING_FOR_RFID),
    3: ("ChargingBecauseForceStateOn", CHARGING_),
    4: ("NotChargingBecauseForceStateOff", CONNECTED),
    5: ("NotChargingBecauseScheduler", WAITING_FOR_START),
    6: ("NotChargingBecauseEnergyLimit", CHARGING_LIMIT),
    7: ("ChargingBecauseAwattarPriceLow", CHARGING_),
    8: ("ChargingBecauseAutomaticStopTestLadung", CHARGING_),
    9: ("ChargingBecauseAutomaticStopNotEnoughTime", CHARGING_),
    10: ("ChargingBecauseAutomaticStop", CHARGING_),
    11: ("ChargingBecauseAutomaticStopNoClock", CHARGING_),
    12: ("ChargingBecausePvSurplus", CHARGING_),
    13: ("ChargingBecauseFallbackGoEDefault", CHARGING_),
    14: ("ChargingBecauseFallbackGoEScheduler", CHARGING_),
    15: ("ChargingBecauseFallbackDefault", CHARGING_),
    16: ("NotChargingBecauseFallbackGoEAwattar", CONNECTED),
    17: ("NotChargingBecauseFallbackAwattar", CONNECTED),
    18: ("NotChargingBecauseFallbackAutomaticStop", CONNECTED),
    19: ("ChargingBecauseCarCompatibilityKeepAlive", CHARGING_),
    20: ("ChargingBecauseChargePauseNotAllowed", CHARGING_),
    22: ("NotChargingBecauseSimulateUnplugging", CONNECTED),
    23: ("NotChargingBecausePhaseSwitch", SWITCHING_TO_3),  # or to 1: see vrm_status
    24: ("NotChargingBecauseMinPauseDuration", WAITING_FOR_START),
    26: ("NotChargingBecauseError", CONNECTED),  # the err key says which: see vrm_status
    27: ("NotChargingBecauseLoadManagementDoesntWant", WAITING_FOR_START),
    28: ("NotChargingBecauseOcppDoesntWant", WAITING_FOR_START),
    29: ("NotChargingBecauseReconnectDelay", WAITING_FOR_START),
    30: ("NotChargingBecauseAdapterBlocking", CONNECTED),
    31: ("NotChargingBecauseUnderfrequencyControl", WAITING_FOR_START),
    32: ("NotChargingBecauseUnbalancedLoad", WAITING_FOR_START),
    33: ("ChargingBecauseDischargingPvBattery", CHARGING_),
    34: ("NotChargingBecauseGridMonitoring", WAITING_FOR_START),
    35: ("NotChargingBecauseOcppFallback", WAITING_FOR_START),
}
"""modelStatus -> (its name, the VRM /Status while a car is connected)"""

CHARGING = frozenset(n for n, (_, status) in MODEL_STATUS.items() if status == CHARGING_)
"""the modelStatus values that mean "charging" (the charger's own reasons included)"""

_ERRORS = {1: RESIDUAL_CURRENT, 2: RESIDUAL_CURRENT, 4: OVERVOLTAGE, 8: GROUND_ERROR,
           9: WELDED_CONTACTS, 11: RESIDUAL_CURRENT, 13: OVERHEATING}
"""`err` -> the VRM error status it has (the others show as connected)"""

SINGLE_PHASE_MAX_A = 16
THREE_PHASE_FROM_A = 18


def vrm_status(*, car: object, model_status: object, err: object, power_w: float,
               phases_wanted: int | None) -> int:
    """The VRM /Status for what the charger says (our own control's states are added by
    the node: waiting for sun, start/stop charging in a cooldown, switching phases).

    `car` 1 is no car; 4 a full car (charged unless it still draws power); a car state
    of 0/5 or None (the charger's error) shows the `err` or connected. `phases_wanted`
    tells which way a phase switch (modelStatus 23) goes; None: to three.
    """
    if car == 1:
        return DISCONNECTED
    if isinstance(err, int) and not isinstance(err, bool) and err in _ERRORS:
        return _ERRORS[err]
    if car == 4 and power_w <= 0:
        return CHARGED
    if isinstance(model_status, bool) or not isinstance(model_status, int):
        return CHARGING_ if power_w > 0 else CONNECTED
    if model_status == 23:
        return SWITCHING_TO_1 if phases_wanted == 1 else SWITCHING_TO_3
    row = MODEL_STATUS.get(model_status)
    if row is None:
        return CHARGING_ if power_w > 0 else CONNECTED
    return row[1]


def model_status_name(model_status: object) -> str:
    row = MODEL_STATUS.get(model_status) if isinstance(model_status, int) else None
    return row[0] if row is not None else f"unknown modelStatus {model_status!r}"


def current_setting(amps: float, *, max_a: int, min_a: int = 6) -> tuple[int, int]:
    """VRM's /SetCurrent as the charger's (psm, amp): up to 17 A one phase (psm 1) at that
    current, at most 16 A and `max_a`; 18 A and more three phases (psm 2) at a third
    each, at most `max_a`. Never below `min_a` per phase."""
    if amps < THREE_PHASE_FROM_A:
        return 1, max(min_a, min(round(amps), SINGLE_PHASE_MAX_A, max_a))
    return 2, max(min_a, min(round(amps / 3), max_a))


def vrm_current(*, amp: object, phases: int) -> float | None:
    """The charger's per-phase `amp` as VRM's /SetCurrent (times three on three phases)."""
    if isinstance(amp, bool) or not isinstance(amp, int | float):
        return None
    return float(amp) * (3 if phases == 3 else 1)


ResetWhen = Literal["OnDisconnect", "OnConnect"]


@dataclass
class Session:
    """Charging time and energy of the current session.

    `update(now, connected=..., charging=..., wh=...)` at every status change: time
    counts only between two updates that both saw the car charging (monotonic seconds);
    the energy is the charger's own `wh` (reset by the charger at the next plug-in).
    With `OnDisconnect` both go to 0 when the car leaves; with `OnConnect` they show
    the last session until the next car comes.
    """

    reset: ResetWhen = "OnDisconnect"
    time_s: float = 0.0
    energy_kwh: float = 0.0
    _connected: bool | None = None
    _charging_since: float | None = None

    def update(self, now: float, *, connected: bool, charging: bool,
               wh: float | None) -> None:
        if self._charging_since is not None and connected and charging:
            self.time_s += max(0.0, now - self._charging_since)
        self._charging_since = None
        if connected and self._connected is False and self.reset == "OnConnect":
            self.time_s, self.energy_kwh = 0.0, 0.0
        if not connected and self._connected and self.reset == "OnDisconnect":
            self.time_s, self.energy_kwh = 0.0, 0.0
        if connected:
            if wh is not None:
                self.energy_kwh = round(wh / 1000.0, 3)
            if charging:
                self._charging_since = now
        self._connected = connected
