"""What the demo shows of the grid setpoint: the setting, the arbiter's requests, the battery.

    async with SetpointWatch(host, port) as watch:
        ...
        watch.line(setting_w=1500, battery_w=-3480, battery_a=-68.2, ev_w=7000)
        # "setting 1500 W  default 0 W  requests no-bat-to-ev/setpoint 1500 W  battery ..."

The setting is what the simulated settings service holds
(/Settings/CGwacs/AcPowerSetPoint), the battery and the EV what the simulated Venus OS
shows. The arbiter's part comes from MQTT, as a user sees it: it subscribes to
`es-ESS/Setpoint/#` and keeps the latest `Setpoint`, `Default` and, per requester,
`Requests/<flow>/<node>` (W; an empty payload is a revoked request). Until the arbiter
has said anything, the line has no arbiter part.
"""

from __future__ import annotations

from collections.abc import Mapping

from sim.topic_watch import TopicWatch, payload_number

__all__ = ["ROOT", "SetpointWatch", "format_setpoint"]

ROOT = "es-ESS/Setpoint"


def _watts(value: float | None) -> str:
    return "? W" if value is None else f"{round(value):d} W"


def format_setpoint(*, setting_w: float | None, battery_w: float | None,
                    battery_a: float | None, ev_w: float | None = None,
                    arbiter_w: float | None = None, default_w: float | None = None,
                    requests: Mapping[str, float | None] | None = None) -> str:
    """One line: the setting; the arbiter's default, its setpoint where it differs from the
    setting, its requests (by name) when `requests` is given; the battery; the EV while it
    draws. Unknown values are `?`."""
    parts = [f"setting {_watts(setting_w)}"]
    if requests is not None:
        if arbiter_w is not None and (setting_w is None or round(arbiter_w) != round(setting_w)):
            parts.append(f"arbiter {_watts(arbiter_w)}")
        parts.append(f"default {_watts(default_w)}")
        asked = [f"{name} {_watts(w)}" for name, w in sorted(requests.items())]
        parts.append("requests " + (", ".join(asked) or "none"))
    current = "? A" if battery_a is None else f"{battery_a:+.1f} A"
    battery = "? W" if battery_w is None else f"{round(battery_w):+d} W"
    parts.append(f"battery {battery} ({current})")
    if ev_w is not None and ev_w > 0:
        parts.append(f"EV {_watts(ev_w)}")
    return "  ".join(parts)


class SetpointWatch(TopicWatch):
    """The arbiter's latest state on one broker; see the module docstring."""

    def __init__(self, host: str, port: int, *, root: str = ROOT) -> None:
        super().__init__("setpoint", host, port, root=root)
        self.setpoint: float | None = None
        self.default: float | None = None
        self.requests: dict[str, float | None] = {}

    def line(self, *, setting_w: float | None, battery_w: float | None,
             battery_a: float | None, ev_w: float | None = None) -> str:
        return format_setpoint(setting_w=setting_w, battery_w=battery_w, battery_a=battery_a,
                               ev_w=ev_w, arbiter_w=self.setpoint, default_w=self.default,
                               requests=self.requests if self.heard else None)

    def _message(self, name: str, payload: bytes) -> None:
        if name == "Setpoint":
            self.setpoint, self.heard = payload_number(payload), True
        elif name == "Default":
            self.default, self.heard = payload_number(payload), True
        elif name.startswith("Requests/") and name.count("/") == 2:
            requester = name.removeprefix("Requests/")
            if not payload:  # revoked
                self.requests.pop(requester, None)
            else:
                self.requests[requester], self.heard = payload_number(payload), True

