"""shelly.meter: read a Shelly energy meter of any generation as per-phase values.

    - id: meter
      type: shelly.meter
      host: 192.168.1.50
      password: !secret shelly_password    # if the device has authentication on

At start the node asks the device `GET /shelly` (no authentication needed) which
generation and model it is, then polls the matching status calls and maps the answer to
one set of topics, whatever the model:

| model                          | calls                                  | auth   |
|--------------------------------|----------------------------------------|--------|
| 3EM (Gen1, `SHEM-3`)           | `/status`                              | basic  |
| 1PM, Plug S, ... (Gen1)        | `/status`                              | basic  |
| Pro 3EM (Gen2+)                | `EM.GetStatus`, `EMData.GetStatus`     | digest |
| PM Mini (Gen2+/Gen3)           | `PM1.GetStatus`                        | digest |
| Plus 1PM, Pro 2PM, Plug (Gen2+) | `Switch.GetStatus`                    | digest |

Topics: `connected` (1 while the device answers, 0 when offline), `power` (W, negative
= export), `energy_forward` and `energy_reverse` (kWh, the device's own counters; only
forward with `energy: forward`, none with `energy: none`); with `phases: 3` also
`L1/power`, `L1/voltage`, `L1/current`, `L1/energy_forward`, `L1/energy_reverse`
(likewise L2, L3); with `phases: 1` `voltage` and `current` without a prefix; with
`switch_state: true` a switch's `on`. A phase the device marks invalid gives None; a
device with the other number of phases is reported in the status. Offline handling is
the one of `http.poll`: after `offline_after` failed polls every value becomes None.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flowengine.model import JsonValue, NodeSpec, Secret
from flowengine.node import node_type, option
from nodes.http.poller import Poller
from nodes.http.session import DeviceUnreachable, HttpAuth, JsonClient

__all__ = ["MODELS", "ShellyMeter", "ShellyMeterConfig", "detect_model"]

Model = Literal["auto", "gen1-3em", "gen1-meter", "pro3em", "pm1", "switch"]
PHASES = ("L1", "L2", "L3")
Values = dict[str, JsonValue]


@dataclass(frozen=True, kw_only=True)
class ShellyMeterConfig:
    host: str = option("the device's address, with :port if not 80",
                       pattern=r"^[A-Za-z0-9.:\[\]_-]+$", example="192.168.1.50")
    password: Secret | None = option("the device's password, if authentication is on; "
                                     "use !secret", default=None)
    username: str = option("Gen1 user name (Gen2+ always uses admin)", default="admin")
    model: Model = option("the model's mapping; auto asks the device", default="auto")
    channel: int = option("meter or switch channel on multi-channel devices", default=0,
                          minimum=0)
    phases: Literal[1, 3] = option("3 for a three-phase meter (3EM, Pro 3EM), 1 for one "
                                   "phase (PM, 1PM, Plus 1PM)", default=3)
    energy: Literal["both", "forward", "none"] = option(
        "which of the device's own energy counters to send", default="both")
    switch_state: bool = option("also send `on`, the switch state (switches only)",
                                default=False)
    interval_ms: float = option("time between the starts of two polls (a poll still running "
                                "skips the next turn)",
                                default=1000, minimum=100)
    timeout_ms: float = option("give up on one request after this long", default=800,
                               minimum=50)
    offline_after: int = option("failed polls in a row before the values become invalid",
                                default=3, minimum=1)


def _num(value: Any, scale: float = 1.0) -> float | None:
    """A number of the reply, scaled; None for anything else (and for NaN, infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = value * scale
    except OverflowError:  # an int beyond any double
        return None
    return number if math.isfinite(number) else None


def _dig(document: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(key, int):
            if not isinstance(document, list) or key >= len(document):
                return None
        elif not isinstance(document, dict):
            return None
        document = document[key] if isinstance(key, int) else document.get(key)
    return document


def _gen1_3em(replies: list[Any], channel: int) -> Values:
    status = replies[0]
    values: Values = {}
    for index, phase in enumerate(PHASES):
        meter = _dig(status, "emeters", index)
        valid = isinstance(meter, dict) and meter.get("is_valid", True) is True
        fields = {
            "power": _num(_dig(meter, "power")),
            "voltage": _num(_dig(meter, "voltage")),
            "current": _num(_dig(meter, "current")),
            "energy_forward": _num(_dig(meter, "total"), 0.001),
            "energy_reverse": _num(_dig(meter, "total_returned"), 0.001),
        }
        for name, value in fields.items():
            values[f"{phase}/{name}"] = value if valid else None
    values["power"] = _num(_dig(status, "total_power"))
    if values["power"] is None:
        values["power"] = _sum(values, "power")
    values["energy_forward"] = _sum(values, "energy_forward")
    values["energy_reverse"] = _sum(values, "energy_reverse")
    return values


def _sum(values: Values, name: str) -> float | None:
    """The phases' sum, or None when a phase is unknown (or the sum is no double)."""
    total = 0.0
    for phase in PHASES:
        value = values[f"{phase}/{name}"]
        if not isinstance(value, float | int):
            return None
        total += value
    return total if math.isfinite(total) else None


def _gen1_meter(replies: list[Any], channel: int) -> Values:
    status = replies[0]
    meter = _dig(status, "meters", channel)
    values: Values = {
        "power": _num(_dig(meter, "power")),
        "energy_forward": _num(_dig(meter, "total"), 1 / 60_000),  # watt-minutes
    }
    relay = _dig(status, "relays", channel, "ison")
    if isinstance(relay, bool):
        values["on"] = relay
    return values


def _pro3em(replies: list[Any], channel: int) -> Values:
    em, data = replies
    values: Values = {
        "power": _num(_dig(em, "total_act_power")),
        "energy_forward": _num(_dig(data, "total_act"), 0.001),
        "energy_reverse": _num(_dig(data, "total_act_ret"), 0.001),
    }
    for letter, phase in zip("abc", PHASES, strict=True):
        values[f"{phase}/power"] = _num(_dig(em, f"{letter}_act_power"))
        values[f"{phase}/voltage"] = _num(_dig(em, f"{letter}_voltage"))
        values[f"{phase}/current"] = _num(_dig(em, f"{letter}_current"))
        values[f"{phase}/energy_forward"] = _num(_dig(data, f"{letter}_total_act_energy"), 0.001)
        values[f"{phase}/energy_reverse"] = _num(
            _dig(data, f"{letter}_total_act_ret_energy"), 0.001)
    return values


def _single_phase(replies: list[Any], channel: int) -> Values:
    status = replies[0]
    values: Values = {
        "power": _num(_dig(status, "apower")),
        "voltage": _num(_dig(status, "voltage")),
        "current": _num(_dig(status, "current")),
        "energy_forward": _num(_dig(status, "aenergy", "total"), 0.001),
        "energy_reverse": _num(_dig(status, "ret_aenergy", "total"), 0.001),
    }
    if values["energy_reverse"] is None:  # older firmware counts no returned energy
        del values["energy_reverse"]
    output = _dig(status, "output")
    if isinstance(output, bool):
        values["on"] = output
    return values


@dataclass(frozen=True)
class _Mapping:
    generation: int
    calls: Callable[[int], list[str]]
    values: Callable[[list[Any], int], Values]


MODELS: Mapping[str, _Mapping] = {
    "gen1-3em": _Mapping(1, lambda ch: ["/status"], _gen1_3em),
    "gen1-meter": _Mapping(1, lambda ch: ["/status"], _gen1_meter),
    "pro3em": _Mapping(2, lambda ch: [f"/rpc/EM.GetStatus?id={ch}",
                                      f"/rpc/EMData.GetStatus?id={ch}"], _pro3em),
    "pm1": _Mapping(2, lambda ch: [f"/rpc/PM1.GetStatus?id={ch}"], _single_phase),
    "switch": _Mapping(2, lambda ch: [f"/rpc/Switch.GetStatus?id={ch}"], _single_phase),
}


def detect_model(info: Any) -> str:
    """The mapping for a device from its `/shelly` answer; DeviceUnreachable if unknown."""
    if not isinstance(info, dict):
        raise DeviceUnreachable("/shelly did not answer a JSON object")
    if "gen" not in info:  # Gen1 has no generation field
        kind = str(info.get("type", ""))
        if kind == "SHEM-3" or info.get("num_emeters", 0) == 3:
            return "gen1-3em"
        if info.get("num_meters", 0):
            return "gen1-meter"
        raise DeviceUnreachable(f"Gen1 device '{kind}' has no power meter")
    app = str(info.get("app", ""))
    if "3EM" in app.upper():
        return "pro3em"
    if "PM" in app.upper() and "1PM" not in app.upper() and "2PM" not in app.upper():
        return "pm1"
    return "switch"


def _topics(config: ShellyMeterConfig) -> list[str]:
    energy = {"both": ["energy_forward", "energy_reverse"], "forward": ["energy_forward"],
              "none": []}[config.energy]
    names = ["power", "voltage", "current", *energy]
    topics = ["connected", "power", *energy]
    if config.phases == 3:
        topics += [f"{p}/{n}" for p in PHASES for n in names]
    else:
        topics += ["voltage", "current"]
    if config.switch_state:
        topics.append("on")
    return topics


@node_type("shelly.meter", config=ShellyMeterConfig)
class ShellyMeter(Poller[ShellyMeterConfig]):
    """Poll a Shelly meter (Gen1, Gen2+, Gen3); emit per-phase power, voltage, energy."""

    def __init__(self, config: ShellyMeterConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        self.interval_ms = config.interval_ms
        self.timeout_ms = config.timeout_ms
        self.offline_after = config.offline_after
        self.model: str | None = None if config.model == "auto" else config.model
        self._wanted = frozenset(_topics(config))
        self._device: JsonClient | None = None

    @classmethod
    def output_topics(cls, config: ShellyMeterConfig) -> frozenset[str]:
        return frozenset(_topics(config))

    def describe(self) -> str:
        return f"online ({self.model})"

    def offline_topics(self) -> Iterable[str]:
        return [topic for topic in self._wanted if topic != "connected"]

    def _base(self) -> str:
        return f"http://{self.config.host}"

    async def fetch(self, client: JsonClient) -> Mapping[str, JsonValue]:
        timeout = self.timeout_ms / 1000
        if self.model is None:
            self.model = detect_model(await client.get_json(self._base() + "/shelly",
                                                            timeout_s=timeout))
            self.ctx.log.info("found a Shelly of model mapping '%s'", self.model)
        mapping = MODELS[self.model]
        if self._device is None:
            self._device = self.session.client(self._auth(mapping.generation))
        replies = [await self._device.get_json(self._base() + call, timeout_s=timeout)
                   for call in mapping.calls(self.config.channel)]
        values = mapping.values(replies, self.config.channel)
        if ("L1/power" in values) != (self.config.phases == 3):
            kind = "three-phase" if self.config.phases == 1 else "single-phase"
            raise DeviceUnreachable(f"a {kind} device ({self.model}); set phases: "
                                    f"{3 if self.config.phases == 1 else 1}")
        return {topic: value for topic, value in values.items() if topic in self._wanted}

    def _auth(self, generation: int) -> HttpAuth:
        if self.config.password is None:
            return HttpAuth()
        if generation == 1:
            return HttpAuth("basic", self.config.username, self.config.password)
        return HttpAuth("digest", "admin", self.config.password)
