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

import math
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Self

from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim.devices.scripted_consumer import ROOT

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


def _number(payload: bytes) -> float | None:
    try:
        value = float(payload.decode(errors="replace").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class OverheadWatch:
    """The distributor's latest figures on one broker; see the module docstring."""

    def __init__(self, host: str, port: int, *, root: str = ROOT) -> None:
        self.root = root
        self.available: float | None = None
        self.reservation: float | None = None
        self.allowances: dict[str, float | None] = {}
        self.consumptions: dict[str, float | None] = {}
        self.heard = False
        """whether the distributor has said anything yet"""
        self._broker = Broker("demo-overhead", MqttBrokerConfig(
            host=host, port=port, status_topic=None,
            client_id=f"esess-demo-overhead-{os.getpid()}"))
        self._broker.subscribe(f"{root}/#", self._message)

    def line(self) -> str | None:
        if not self.heard:
            return None
        return format_overhead(available=self.available, reservation=self.reservation,
                               allowances=self.allowances, consumptions=self.consumptions)

    def _message(self, topic: str, payload: bytes, retained: bool) -> None:
        name = topic.removeprefix(f"{self.root}/")
        if name == "Calculations/OverheadAvailable":
            self.available, self.heard = _number(payload), True
        elif name == "Calculations/Battery/Reservation":
            self.reservation, self.heard = _number(payload), True
        else:
            parts = name.split("/")
            if len(parts) != 3 or parts[0] != "Requests":
                return
            key, what = parts[1], parts[2]
            if what == "Allowance":
                self.allowances[key], self.heard = _number(payload), True
            elif what == "Consumption":
                if not payload:  # a consumer that left cleared its topics
                    self.consumptions.pop(key, None)
                else:
                    self.consumptions[key] = _number(payload)

    async def __aenter__(self) -> Self:
        await self._broker.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._broker.close()
