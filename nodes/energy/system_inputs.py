"""The distributor's system readings: grid per phase, battery power and SoC (pure).

Values come as the `dbus.source` on com.victronenergy.system sends them: a number, or
None while Venus OS calls the path invalid. A value no real site has (a SoC outside
0..100 %, a power beyond 1 MW) is a fault, so it is invalid too.

Which grid phases exist: with `phases: auto`, L1 always, and L2 or L3 once they have had
a number since the start (systemcalc leaves L2 and L3 invalid on a single-phase site);
with 1 or 3, as configured. An existing phase that is invalid makes the whole reading
invalid, as does an invalid battery power or SoC. Until every value has come once
after a start, the problem says "no value yet" rather than "invalid input".
"""

from __future__ import annotations

import math
from typing import Literal

from flowengine.model import JsonValue, finite_number
from nodes.energy.allocation import MAX_W, AllocationInputs

__all__ = ["PHASES", "TOPICS", "SystemInputs"]

PHASES = ("grid_l1", "grid_l2", "grid_l3")
TOPICS = (*PHASES, "battery_power", "soc")


class SystemInputs:
    """The latest system values and what they mean for a cycle."""

    def __init__(self, phases: Literal["auto", 1, 3] = "auto") -> None:
        self.phases = phases
        self.values: dict[str, float | None] = dict.fromkeys(TOPICS)
        self._seen = dict.fromkeys(PHASES, False)
        self._waiting = True  # no complete set yet (after a start)

    def set(self, topic: str, value: JsonValue) -> None:
        """Keep one reading (`topic` one of TOPICS)."""
        number = finite_number(value)
        if number is not None and not (0 <= number <= 100 if topic == "soc" else
                                       abs(number) <= MAX_W):
            number = None
        self.values[topic] = number
        if number is not None and topic in self._seen:
            self._seen[topic] = True

    def present(self, topic: str) -> bool:
        """Whether grid phase `topic` exists on this site."""
        if topic == "grid_l1":
            return True
        return self._seen[topic] if self.phases == "auto" else self.phases == 3

    def problem(self) -> str | None:
        """Why the values cannot be used now, or None."""
        v = self.values
        missing = [t for t in PHASES if v[t] is None and self.present(t)]
        missing += [t for t in ("battery_power", "soc") if v[t] is None]
        if missing:
            what = "no value yet" if self._waiting else "invalid input"
            return f"{what}: {', '.join(missing)}"
        self._waiting = False
        return None

    def allocation_inputs(self, reservation: float | None) -> AllocationInputs:
        """For `allocate`: an absent phase None, an existing invalid one NaN."""
        v = self.values
        grid = {t: v[t] if v[t] is not None else (math.nan if self.present(t) else None)
                for t in PHASES}
        return AllocationInputs(grid_l1=grid["grid_l1"], grid_l2=grid["grid_l2"],
                                grid_l3=grid["grid_l3"], battery_power=v["battery_power"],
                                battery_soc=v["soc"], reservation=reservation)
