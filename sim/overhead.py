"""What the demo shows of the solar overhead distributor, read from MQTT as a user sees it.

    async with OverheadWatch(host, port) as watch:
        ...
        watch.line()   # "overhead 4210 W  reservation 3000 W  allowance EV 1380 W, ..."

It subscribes to `es-ESS/SolarOverheadDistributor/#` and keeps the latest
Calculations/OverheadAvailable, Calculations/Battery/Reservation and, per consumer key,
Requests/<key>/Allowance and Requests/<key>/Consumption. Until the distributor has said
anything (a calculation or an allowance), there is no line.
"""

from __future__ import annotations

from collections.abc import Mapping

from sim.devices.scripted_consumer import ROOT
from sim.topic_watch import TopicWatch, payload_number

__all__ = ["OverheadWatch", "format_overhead"]


def _watts(value: float | None) -> str:
    return "? W" if value is None else f"{value:.0f} W"


def format_overhead(*, available: float | None, reservation: float | None,
                    allowances: Mapping[str, float | None],
                    consumptions: Mapping[str, float | None] | None = None) -> str:
    """One line: overhead available, battery reservation, and each consumer's allowance
    (by key, in key order), with what it draws where that differs. Unknown values are `?`."""
    consumptions = consumptions or {}
    shares = []
    for key in sorted(allowances, key=str.casefold):
        allowance, drawn = allowances[key], consumptions.get(key)
        share = f"{key} {_watts(allowance)}"
        if drawn is not None and (allowance is None or round(drawn) != round(allowance)):
            share += f" (draws {_watts(drawn)})"
        shares.append(share)
    return (f"overhead {_watts(available)}  reservation {_watts(reservation)}  allowance "
            + (", ".join(shares) or "none yet"))


class OverheadWatch(TopicWatch):
    """The distributor's latest figures on one broker; see the module docstring."""

    def __init__(self, host: str, port: int, *, root: str = ROOT) -> None:
        super().__init__("overhead", host, port, root=root)
        self.available: float | None = None
        self.reservation: float | None = None
        self.allowances: dict[str, float | None] = {}
        self.consumptions: dict[str, float | None] = {}

    def line(self) -> str | None:
        if not self.heard:
            return None
        return format_overhead(available=self.available, reservation=self.reservation,
                               allowances=self.allowances, consumptions=self.consumptions)

    def _message(self, name: str, payload: bytes) -> None:
        if name == "Calculations/OverheadAvailable":
            self.available, self.heard = payload_number(payload), True
        elif name == "Calculations/Battery/Reservation":
            self.reservation, self.heard = payload_number(payload), True
        else:
            parts = name.split("/")
            if len(parts) != 3 or parts[0] != "Requests":
                return
            key, what = parts[1], parts[2]
            if what == "Allowance":
                self.allowances[key], self.heard = payload_number(payload), True
            elif what == "Consumption":
                if not payload:  # a consumer that left cleared its topics
                    self.consumptions.pop(key, None)
                else:
                    self.consumptions[key] = payload_number(payload)

