"""What the demo shows of the Fronius Wattpilot: its VRM mode, status and power, from MQTT.

    async with WattpilotWatch(host, port) as watch:
        ...
        watch.line()   # "auto, charging  1380 W (6.0 A)  session 0.25 kWh"
        watch.key()    # what decides whether the line changed: all but the session

It subscribes to the fronius-wattpilot flow's mirror of its EV charger paths
(`es-ESS/FroniusWattpilot/#`) and keeps the latest /Mode, /Status, /Ac/Power, /Current
and /Session/Energy. Until the flow has published a /Status, there is no line.
"""

from __future__ import annotations

from sim.topic_watch import TopicWatch, payload_number

__all__ = ["ROOT", "WattpilotWatch", "format_wattpilot"]

ROOT = "es-ESS/FroniusWattpilot"
MODES = {0: "manual", 1: "auto", 2: "scheduled"}
STATUS = {0: "disconnected", 1: "connected", 2: "charging", 3: "charged",
          4: "waiting for sun", 5: "waiting for RFID", 6: "waiting for start", 7: "low SoC",
          8: "ground test error", 9: "welded contacts error", 10: "CP input test error",
          11: "residual current detected", 12: "undervoltage detected",
          13: "overvoltage detected", 14: "overheating detected", 20: "charging limit",
          21: "start charging", 22: "switching to three phase",
          23: "switching to single phase", 24: "stop charging"}
"""VRM's EV charger /Status names (gui-v2's Evcs_Status)"""
_PATHS = {"Mode": "mode", "Status": "status", "Ac/Power": "power_w", "Current": "current_a",
          "Session/Energy": "session_kwh"}


def _named(table: dict[int, str], value: float | None) -> str:
    if value is None:
        return "?"
    return table.get(int(value), f"{value:g}") if value == int(value) else f"{value:g}"


def format_wattpilot(*, mode: float | None, status: float | None, power_w: float | None,
                     current_a: float | None = None, session_kwh: float | None = None) -> str:
    """One line: mode and status by name, power with current, the session's energy."""
    power = "? W" if power_w is None else f"{round(power_w):d} W"
    current = "" if current_a is None else f" ({current_a:.1f} A)"
    session = "" if session_kwh is None else f"  session {session_kwh:.2f} kWh"
    return f"{_named(MODES, mode)}, {_named(STATUS, status)}  {power}{current}{session}"


class WattpilotWatch(TopicWatch):
    """The Wattpilot flow's latest figures on one broker; see the module docstring."""

    def __init__(self, host: str, port: int, *, root: str = ROOT) -> None:
        super().__init__("wattpilot", host, port, root=root)
        self.mode: float | None = None
        self.status: float | None = None
        self.power_w: float | None = None
        self.current_a: float | None = None
        self.session_kwh: float | None = None

    def line(self) -> str | None:
        if self.status is None:
            return None
        return format_wattpilot(mode=self.mode, status=self.status, power_w=self.power_w,
                                current_a=self.current_a, session_kwh=self.session_kwh)

    def key(self) -> str | None:
        """The line without the session's energy, power to 10 W: it changes with them."""
        if self.status is None:
            return None
        power = None if self.power_w is None else round(self.power_w, -1)
        return format_wattpilot(mode=self.mode, status=self.status, power_w=power,
                                current_a=self.current_a)

    def _message(self, name: str, payload: bytes) -> None:
        attribute = _PATHS.get(name.removeprefix("/"))
        if attribute is not None:
            setattr(self, attribute, payload_number(payload))
            self.heard = True
