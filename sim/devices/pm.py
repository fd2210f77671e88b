"""Single-channel Shelly Gen2+/Gen3 power meters: the PM Mini Gen3 and the Plus 1PM.

What a channel measures comes from the model through a `Meter`: `pv_inverter(phase)`
is the model's AC PV on one phase (a Shelly on a PV inverter, as es-ESS's
ShellyPMInverter reads it), `consumer(load)` an `ExtraLoad` of the model.

- `ShellyPMMiniGen3`: `PM1.GetStatus?id=0` -> voltage, current, apower, freq,
  aenergy.total, ret_aenergy.total (Wh).
- `ShellyPlus1PM`: `Switch.GetStatus?id=0` -> output, apower, voltage, current,
  aenergy.total, temperature; `Switch.Set?id=0&on=true|false` -> `{"was_on": bool}`.
  Given a `load`, the switch switches that consumer in the model. Without one the
  output is only a flag: switching it off shows 0 W but does not curtail the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sim.devices.gen2 import Gen2Device, Method, RpcError, component_id
from sim.devices.server import JsonObject
from sim.model import EnergyModel, ExtraLoad, Snapshot, ac_current

__all__ = ["Meter", "Reading", "ShellyPMMiniGen3", "ShellyPlus1PM", "consumer", "pv_inverter"]


@dataclass(frozen=True)
class Reading:
    power_w: float
    voltage_v: float
    energy_wh: float
    returned_wh: float = 0.0


Meter = Callable[[Snapshot], Reading]


def pv_inverter(phase: int = 1) -> Meter:
    """The model's AC PV output on one phase (1..3) and its energy counter."""
    if phase not in (1, 2, 3):
        raise ValueError(f"phase must be 1, 2 or 3, got {phase}")
    index = phase - 1

    def read(snap: Snapshot) -> Reading:
        return Reading(snap.pv_ac_l[index], snap.voltage_l[index],
                       snap.pv_ac_l_kwh[index] * 1000)
    return read


def consumer(load: ExtraLoad) -> Meter:
    """What an extra load of the model draws now, on its first phase's voltage."""
    index = load.phases[0] - 1

    def read(snap: Snapshot) -> Reading:
        return Reading(load.draw_w, snap.voltage_l[index], load.energy_wh)
    return read


def _energy(total_wh: float, power_w: float) -> JsonObject:
    minute = int(time.time()) // 60 * 60
    per_minute = round(power_w * 1000 / 60, 1)  # mWh in a minute at this power
    return {"total": round(total_wh, 3), "by_minute": [per_minute, per_minute, per_minute],
            "minute_ts": minute}


class _MeteringDevice(Gen2Device):
    def __init__(self, model: EnergyModel, *, meter: Meter, device_id: str, mac: str,
                 password: str | None, port: int) -> None:
        super().__init__(model, device_id=device_id, mac=mac, password=password, port=port)
        self.meter = meter

    def electrics(self, on: bool = True) -> JsonObject:
        snap = self.model.snapshot
        reading = self.meter(snap)
        power = reading.power_w if on else 0.0
        return {
            "voltage": round(reading.voltage_v, 1),
            "current": round(ac_current(power, reading.voltage_v) if power else 0.0, 3),
            "apower": round(power, 1), "freq": round(snap.frequency_hz, 1),
            "aenergy": _energy(reading.energy_wh, max(0.0, power)),
            "ret_aenergy": _energy(reading.returned_wh, max(0.0, -power)),
        }


class ShellyPMMiniGen3(_MeteringDevice):
    """A simulated Shelly PM Mini Gen3: one metering channel, no output."""

    gen = 3
    app = "MiniPMG3"
    model_code = "S3PM-001PCEU16"
    firmware = ("20241011-114455/1.4.4-g6d2a586", "1.4.4")

    def __init__(self, model: EnergyModel, *, meter: Meter | None = None,
                 device_id: str = "shellypmminig3-84fce6000001", mac: str = "84FCE6000001",
                 password: str | None = None, port: int = 0) -> None:
        super().__init__(model, meter=meter or pv_inverter(1), device_id=device_id, mac=mac,
                         password=password, port=port)

    def methods(self) -> dict[str, Method]:
        return {**super().methods(),
                "PM1.GetStatus": lambda params: self.pm1_status(component_id(params))}

    def pm1_status(self, component: int = 0) -> JsonObject:
        return {"id": component, **self.electrics()}

    def status(self) -> JsonObject:
        return {**super().status(), "pm1:0": self.pm1_status()}


class ShellyPlus1PM(_MeteringDevice):
    """A simulated Shelly Plus 1PM: one switched and metered channel."""

    gen = 2
    app = "Plus1PM"
    model_code = "SNSW-001P16EU"

    def __init__(self, model: EnergyModel, *, load: ExtraLoad | None = None,
                 meter: Meter | None = None, device_id: str = "shellyplus1pm-80646f000001",
                 mac: str = "80646F000001", password: str | None = None, port: int = 0) -> None:
        if meter is None:
            if load is None:
                raise ValueError("a Plus 1PM needs a load to switch or a meter to read")
            meter = consumer(load)
        super().__init__(model, meter=meter, device_id=device_id, mac=mac,
                         password=password, port=port)
        self.load = load
        self._output = True if load is None else load.on
        self.source = "init"

    @property
    def output(self) -> bool:
        return self.load.on if self.load is not None else self._output

    def switch(self, on: bool) -> bool:
        """Switch the output; returns whether it was on."""
        was_on = self.output
        if self.load is not None:
            if on != self.load.on:
                self.load.on = on
                self.model.refresh()
        else:
            self._output = on
        return was_on

    def methods(self) -> dict[str, Method]:
        return {**super().methods(),
                "Switch.GetStatus": lambda params: self.switch_status(component_id(params)),
                "Switch.Set": self._set,
                "Switch.Toggle": lambda params: self._toggle(component_id(params))}

    def switch_status(self, component: int = 0) -> JsonObject:
        return {"id": component, "source": self.source, "output": self.output,
                **self.electrics(on=self.output), "temperature": {"tC": 41.2, "tF": 106.2}}

    def _set(self, params: JsonObject) -> JsonObject:
        component_id(params)
        on = params.get("on")
        if not isinstance(on, bool):
            raise RpcError(-103, f"Invalid argument 'on': expected a boolean, got {on!r}")
        self.source = "HTTP_in"
        return {"was_on": self.switch(on)}

    def _toggle(self, component: int) -> JsonObject:
        self.source = "HTTP_in"
        return {"was_on": self.switch(not self.output)}

    def status(self) -> JsonObject:
        return {**super().status(), "switch:0": self.switch_status()}
