"""When and how the Wattpilot charges in auto mode: solar surplus and low price.

Pure: no I/O, no clock of its own (every call gets `now`, monotonic seconds), so the
rules are tested on their own and `energy.wattpilot` only carries them out.

What the charger should do comes from two wishes, as single-phase-equivalent amps
(A x phases):

- **solar**: the distributor's allowance / the voltage, rounded down (never more than
  granted); below `min_a` (6 A on one phase) it is nothing;
- **low price** (when enabled and the charger says its price is below its limit):
  `low_price_a`, read like VRM's current slider (up to 17 A one phase, 18 A and more
  three phases at a third).

The larger wins, so either nests inside the other. The target is at most three times
the per-phase limit; three phases are used from 3 x `min_a` (18 A) when one phase
cannot carry it (one phase carries at most 16 A, as VRM's slider, also on a 22 kW
unit), one phase below.

The contactor and the car are spared by two cooldowns:

- a start or a stop waits until `min_on_off_s` after the last one (the start of the
  runtime does not count: a charger found charging at the start counts as started
  then). While a stop waits, the car charges at `min_a` on its phases (status 24
  "stop charging"); while a start waits, it does not (status 21 "start charging");
- a phase switch waits until `min_phase_switch_s` after the last one: meanwhile one
  phase stays at its maximum, three phases at `min_a` (status 22 / 23).

A lost allowance (the distributor is gone) without a low price stops at once, whatever
the cooldown: safety first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from nodes.energy.wattpilot_vrm import (
    SINGLE_PHASE_MAX_A,
    START_CHARGING,
    STOP_CHARGING,
    SWITCHING_TO_1,
    SWITCHING_TO_3,
    WAITING_FOR_SUN,
    current_setting,
)

__all__ = ["AutoPolicy", "Plan", "Wish"]

Why = Literal["solar", "low price"]


@dataclass(frozen=True, slots=True)
class Wish:
    """What the policy is asked with: the latest inputs."""

    allowance_w: float | None  # None: none yet, or lost
    voltage_v: float
    max_a: int  # per phase: the charger's limit (ama), the cable's
    min_a: int = 6
    low_price: bool = False  # enabled and the price is below the charger's limit
    low_price_a: float = 0.0


@dataclass(frozen=True, slots=True)
class Plan:
    """What the charger should do now: charge or not, on how many phases at what current
    per phase; `status` is the VRM status of a waiting change (None: the charger's own);
    `wait_s` when to ask again (a cooldown ends); `why` solar or low price."""

    charge: bool
    phases: int = 1
    amps: int = 0
    status: int | None = None
    reason: str = ""
    wait_s: float | None = None
    why: Why | None = None


class AutoPolicy:
    """The rules of the module docstring, with the little they remember."""

    def __init__(self, *, min_on_off_s: float, min_phase_switch_s: float) -> None:
        self.min_on_off_s = min_on_off_s
        self.min_phase_switch_s = min_phase_switch_s
        self.charging = False  # what the last plan said
        self.phases = 1  # the phases it charges on
        self.on_off_at = -math.inf
        self.phase_at = -math.inf

    def found_charging(self, phases: int, now: float) -> None:
        """The charger charges under our control already (a restart): it counts as
        started now."""
        self.charging, self.phases, self.on_off_at = True, phases, now

    def stopped(self, now: float, *, counts: bool = True) -> None:
        """Charging ended without a plan (unplugged, a fail-safe stop, manual mode);
        `counts` False when the charger, not a stop of ours, ended it."""
        if self.charging and counts:
            self.on_off_at = now
        self.charging = False

    def target(self, wish: Wish) -> tuple[int, Why | None]:
        """The single-phase-equivalent amps wanted, and why (0, None: nothing)."""
        solar = 0
        if wish.allowance_w is not None and wish.voltage_v > 0:
            solar = math.floor(wish.allowance_w / wish.voltage_v + 1e-9)
            if solar < wish.min_a:
                solar = 0
        low = 0
        if wish.low_price and wish.low_price_a > 0:
            phases, amps = current_setting(wish.low_price_a, max_a=wish.max_a,
                                           min_a=wish.min_a)
            low = amps * (3 if phases == 2 else 1)
        total = min(max(solar, low), 3 * wish.max_a)
        if total < wish.min_a:
            return 0, None
        return total, ("low price" if low >= solar else "solar")

    def decide(self, wish: Wish, now: float) -> Plan:
        total, why = self.target(wish)
        if total == 0:
            return self._off(wish, now)
        one_phase = min(wish.max_a, SINGLE_PHASE_MAX_A)
        phases = 3 if total >= 3 * wish.min_a and total > one_phase else 1
        if self.charging and self.phases == 3 and total >= 3 * wish.min_a:
            phases = 3  # stays on three while three can carry it
        if not self.charging:
            left = self.on_off_at + self.min_on_off_s - now
            if left > 0:
                return Plan(False, status=START_CHARGING, wait_s=left, why=why,
                            reason=f"start waits {_s(left)} (min on/off time)")
            self.charging, self.phases, self.on_off_at = True, phases, now
            return Plan(True, phases, _per_phase(total, phases, wish), why=why,
                        reason=f"start on {phases} phase(s) ({why})")
        if phases != self.phases:
            left = self.phase_at + self.min_phase_switch_s - now
            if left > 0:
                amps = one_phase if self.phases == 1 else wish.min_a
                status = SWITCHING_TO_3 if phases == 3 else SWITCHING_TO_1
                return Plan(True, self.phases, amps, status=status, wait_s=left, why=why,
                            reason=f"switch to {phases} phase(s) waits {_s(left)} "
                                   "(min phase switch time)")
            self.phases, self.phase_at = phases, now
            return Plan(True, phases, _per_phase(total, phases, wish), why=why,
                        reason=f"switch to {phases} phase(s) ({why})")
        return Plan(True, phases, _per_phase(total, phases, wish), why=why,
                    reason=f"{why}: {total} A")

    def _off(self, wish: Wish, now: float) -> Plan:
        if not self.charging:
            return Plan(False, status=WAITING_FOR_SUN, reason="waiting for sun")
        if wish.allowance_w is None:
            self.charging, self.on_off_at = False, now
            return Plan(False, reason="stop: no allowance (distributor gone)")
        left = self.on_off_at + self.min_on_off_s - now
        if left > 0:
            return Plan(True, self.phases, wish.min_a, status=STOP_CHARGING, wait_s=left,
                        why="solar", reason=f"stop waits {_s(left)} (min on/off time)")
        self.charging, self.on_off_at = False, now
        return Plan(False, status=WAITING_FOR_SUN, reason="stop: not enough surplus")


def _per_phase(total: int, phases: int, wish: Wish) -> int:
    most = wish.max_a if phases == 3 else min(wish.max_a, SINGLE_PHASE_MAX_A)
    return max(wish.min_a, min(total // phases, most))


def _s(seconds: float) -> str:
    return f"{math.ceil(seconds)} s"
