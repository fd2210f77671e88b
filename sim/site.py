"""A whole simulated site on this machine: private D-Bus, MQTT broker, Venus OS, devices.

    async with SimSite(SiteOptions(speed=60)) as site:
        site.bus_address         # DBUS_SYSTEM_BUS_ADDRESS of the private dbus-daemon
        site.broker_host, site.broker_port
        site.devices             # name -> (what it is, URL or topic)

Started in order (and stopped in reverse, also when a start fails): a private
dbus-daemon, the embedded MQTT broker (unless `broker` names one already running), the
model stepping in real time, the simulated Venus OS services, and the devices: a Shelly
3EM (Gen1) and a Shelly Pro 3EM on the grid, a Shelly PM Mini Gen3 on the AC PV, a
Shelly 1PM (Gen1 relay) switching a 2 kW boiler, and an MQTT-switched 3 kW heater, an
MQTT outdoor thermometer, an EV charging station on the Multiplus's AC output
(`com.victronenergy.evcharger.sim_ev`; with `ev_start_hour` a car arrives then and takes
`ev_energy_kwh` at `ev_power_w`), a Fronius Wattpilot (`WattpilotSim`, websocket, app
password `WATTPILOT_PASSWORD`, an extra load of the model on AC-out; in Eco mode with
its PV start power out of reach, so that only the distributor starts it; with
`wattpilot_start_hour` a car of `wattpilot_car_wh` at `wattpilot_car_soc` % is plugged
in then and leaves when it has `wattpilot_energy_kwh` or is full), and two scripted
solar overhead consumers that ask es-ESS's distributor for power over MQTT
(`scripted_consumers`): an EV charger (key `EV`, 1380..3680 W in 230 W steps, single
phase 6..16 A) and a pool heater (key `PoolHeater`, 3 x 1000 W), with the priorities of
the es-ESS README's example. Everything listens on 127.0.0.1 only. A clean stop clears
the consumers' retained requests, so an external broker (`broker`) keeps nothing of the
simulation.

`flow_vars` point shipped flows at these devices: in the demo, the distributor shares
the overhead among the two scripted consumers, the boiler (switched-consumer-http), the
heater (switched-consumer-mqtt) and the Wattpilot (fronius-wattpilot, key `Wattpilot`);
`FLOW_VARS` holds the part known before the start.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from flowengine.model import JsonValue, Secret
from nodes.dbus.daemon import PrivateBus
from sim.broker import MqttBroker
from sim.devices import Shelly3EMGen1, ShellyPMMiniGen3, ShellyPro3EM, ShellyRelayGen1
from sim.devices.mqtt_consumer import MqttConsumer
from sim.devices.mqtt_sensor import MqttSensor
from sim.devices.scripted_consumer import ScriptedConsumer
from sim.devices.wattpilot import WattpilotSim
from sim.driver import ModelDriver
from sim.model import EnergyModel, ModelParams, Snapshot
from sim.profiles import PvProfile
from sim.venus import SimVenus

__all__ = ["FLOW_VARS", "WATTPILOT_PASSWORD", "SimSite", "SiteOptions", "describe_consumer",
           "parse_broker"]

WATTPILOT_PASSWORD = "demo-wattpilot"
"""the simulated Wattpilot's app password, given to its flow as a secret"""


@dataclass(frozen=True, kw_only=True)
class SiteOptions:
    speed: float = 1.0
    """simulated seconds per real second"""
    seed: int = 1
    start_hour: float = 9.0
    soc: float = 50.0
    """the battery's state of charge at the start, %"""
    broker: tuple[str, int] | None = None
    """an MQTT broker to use instead of the embedded one"""
    step_s: float = 0.5
    """real seconds between model steps"""
    system_every_s: float | None = 1.0
    """real seconds between publications of com.victronenergy.system, as systemcalc's
    1 s timer (None: every model step); the other services follow every step"""
    scripted_consumers: bool = True
    """run the scripted solar overhead consumers (EV charger, pool heater)"""
    consumer_interval_s: float = 5.0
    """real seconds between a scripted consumer's Consumption reports"""
    ev_start_hour: float | None = None
    """simulated hour a car arrives at the EV charging station and charges (None: never)"""
    ev_power_w: float = 7000.0
    ev_energy_kwh: float = 10.0
    """what the car takes before it leaves"""
    wattpilot_start_hour: float | None = None
    """simulated hour a car is plugged into the Wattpilot (None: never)"""
    wattpilot_car_wh: float = 60_000.0
    wattpilot_car_soc: float = 40.0
    wattpilot_energy_kwh: float = 10.0
    """what the Wattpilot's car takes before it leaves (sooner when it is full)"""
    freeze: bool = False
    """hold every value still: the model does not step and nothing is sent unasked (no
    scripted consumers, no Wattpilot clock); the devices still answer every request"""


FLOW_VARS: dict[str, dict[str, JsonValue]] = {
    "mqtt-temperature": {"custom_name": "Outdoor (simulated)", "temperature_type": 4},
    # a short cycle, so that the demo shows the distributor at work within seconds
    "solar-overhead-distributor": {"reservation": "5000 - 40 * SOC", "cycle_s": 10},
    # the EV on the simulated charging station charges from the grid, not the battery
    "no-bat-to-ev": {"evcharger": "com.victronenergy.evcharger.sim_ev"},
    # the README's example: the more the battery is charged, the less current it takes
    "charge-current-reducer": {"desired_current": "max(100 - SOC, 30)", "max_feed_in_w": 3000},
    # the boiler behind the Shelly 1PM and the MQTT heater as switched (NPC) consumers;
    # short minimum on/off times for the demo's fast day; requests repeated within a cycle.
    # The boiler may eat into the battery reservation (as the README's waterplay), so it
    # is served first.
    "switched-consumer-http": {
        "key": "boiler", "custom_name": "Boiler (simulated)", "request_w": 2000,
        "priority": 50, "ignore_bat_reservation": True, "vrm_instance": 1010,
        "min_on_s": 20, "min_off_s": 20, "announce_s": 5, "status_interval_s": 10,
        "on_keyword_regex": '"ison":\\s*true', "power_extract_regex": '"power":\\s*([0-9.]+)'},
    "switched-consumer-mqtt": {
        "key": "heater", "custom_name": "Heater (simulated)", "request_w": 3000,
        "priority": 60, "vrm_instance": 1011, "min_on_s": 20, "min_off_s": 20,
        "announce_s": 5, "on_value": "on", "off_value": "off", "on_keyword_regex": "^on$"},
    # the simulated Wattpilot (host and port from the site), solar surplus only, served
    # before the scripted consumers; short cooldowns for the demo's fast day
    "fronius-wattpilot": {
        "password": Secret("wattpilot_password", WATTPILOT_PASSWORD),
        "vrm_instance": 1007, "overhead_vrm_instance": 1006, "priority": 30,
        "min_on_off_s": 30, "min_phase_switch_s": 30,
        "announce_s": 5},  # well within the distributor's 3 cycles of 10 s
}
"""Vars of shipped flows that do not depend on where the simulated devices listen (the
demo validates with these before the site starts); `SimSite.flow_vars` adds the rest."""


def describe_consumer(consumer: ScriptedConsumer) -> str:
    """One line: a scripted consumer's key, what it asks for, and what it draws now."""
    c = consumer
    power = (f"{c.minimum_w:.0f}..{c.request_w:.0f} W" if c.minimum_w > 0
             else f"up to {c.request_w:.0f} W")
    steps = f" in steps of {c.step_w:.0f} W" if c.step_w > 0 else ""
    shift = f" (+{c.priority_shift:g} per grant)" if c.priority_shift else ""
    mode = "automatic" if c.automatic else "manual"
    return (f"{c.key}, {c.custom_name} (scripted, {mode}, {c.prefix}/...): {power}{steps}, "
            f"priority {c.priority}{shift}; draws {c.draw_w:.0f} W")


def _peak_kw(profile: PvProfile | None) -> str:
    return f"{0.0 if profile is None else profile.peak_w / 1000:g}"


def _clock(hour: float) -> str:
    """9.5 -> "09:30"."""
    minutes = round(hour * 60) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_broker(text: str) -> tuple[str, int]:
    """"host:port" (or "host", port 1883) -> (host, port); ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, 1883
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


class SimSite:
    """See the module docstring."""

    def __init__(self, options: SiteOptions | None = None) -> None:
        self.options = options or SiteOptions()
        self.model = EnergyModel(ModelParams(seed=self.options.seed,
                                             time_scale=self.options.speed,
                                             start_hour=self.options.start_hour,
                                             initial_soc=self.options.soc))
        self.bus_address = ""
        self.broker: MqttBroker | None = None
        self.broker_host, self.broker_port = self.options.broker or ("127.0.0.1", 0)
        self.venus: SimVenus | None = None
        self.devices: dict[str, tuple[str, str]] = {}
        self.flow_vars: dict[str, dict[str, JsonValue]] = {}
        """flow id -> vars that point a shipped flow at the simulated devices"""
        self.heater: MqttConsumer | None = None
        self.sensor: MqttSensor | None = None
        self.boiler: ShellyRelayGen1 | None = None
        self.wattpilot: WattpilotSim | None = None
        self.consumers: dict[str, ScriptedConsumer] = {}
        """key -> scripted solar overhead consumer"""
        self._ev_due: float | None = None
        self._ev_done = False
        self._wattpilot_due: float | None = None
        self._wattpilot_done = False
        self._stack = contextlib.AsyncExitStack()

    @property
    def embedded_broker(self) -> bool:
        return self.options.broker is None

    async def start(self) -> None:
        stack = self._stack
        try:
            self.bus_address = await stack.enter_async_context(PrivateBus())
            if self.options.broker is None:
                self.broker = await stack.enter_async_context(MqttBroker())
                self.broker_port = self.broker.port
            if not self.options.freeze:
                await stack.enter_async_context(ModelDriver(self.model,
                                                            interval_s=self.options.step_s))
            self.venus = await stack.enter_async_context(
                SimVenus(self.model, address=self.bus_address,
                         system_every_s=self.options.system_every_s))
            grid = await stack.enter_async_context(Shelly3EMGen1(self.model))
            pro = await stack.enter_async_context(ShellyPro3EM(self.model))
            pv = await stack.enter_async_context(ShellyPMMiniGen3(self.model))
            self.boiler = await stack.enter_async_context(
                ShellyRelayGen1(self.model, name="boiler", power_w=2000.0, phases=(2,)))
            self.heater = await stack.enter_async_context(MqttConsumer(
                self.model, host=self.broker_host, port=self.broker_port, name="heater",
                power_w=3000.0, phases=(1, 2, 3)))
            sensor = self.sensor = await stack.enter_async_context(MqttSensor(
                self.model, host=self.broker_host, port=self.broker_port, name="outdoor"))
            wattpilot = self.wattpilot = await stack.enter_async_context(
                WattpilotSim(password=WATTPILOT_PASSWORD, model=self.model,
                             ticking=not self.options.freeze))
            wattpilot.app_set("lmo", 4)  # Eco: the distributor's auto mode
            wattpilot.app_set("fst", 99000.0)  # PV start power out of reach
            if self.options.wattpilot_start_hour is not None:
                stack.callback(self.model.subscribe(self._wattpilot_car))
            if self.options.scripted_consumers and not self.options.freeze:
                await self._start_consumers(stack)
            if self.options.ev_start_hour is not None:
                stack.callback(self.model.subscribe(self._ev_arrives))
        except BaseException:
            await stack.aclose()
            raise
        boiler, heater = self.boiler.url, self.heater  # both started above
        where: dict[str, dict[str, JsonValue]] = {
            "shelly3em-grid": {"host": f"127.0.0.1:{grid.port}"},
            "shellypm-inverter": {"host": f"127.0.0.1:{pv.port}"},
            "mqtt-temperature": {"topic": sensor.topic("temperature"),
                                 "humidity_topic": sensor.topic("humidity"),
                                 "pressure_topic": sensor.topic("pressure")},
            "switched-consumer-http": {"on_url": f"{boiler}/relay/0?turn=on",
                                       "off_url": f"{boiler}/relay/0?turn=off",
                                       "status_url": f"{boiler}/status"},
            "switched-consumer-mqtt": {"on_topic": heater.command_topic,
                                       "off_topic": heater.command_topic,
                                       "status_topic": heater.state_topic,
                                       "power_topic": heater.power_topic},
            "fronius-wattpilot": {"host": "127.0.0.1", "port": wattpilot.port},
        }
        self.flow_vars = {flow: {**FLOW_VARS.get(flow, {}), **where.get(flow, {})}
                          for flow in sorted({*FLOW_VARS, *where})}
        ev = f"{self.venus.evcharger.name}" if self.venus.evcharger else None
        self.devices = {
            "grid meter (Shelly 3EM, Gen1)": ("http", f"{grid.url}/status"),
            "grid meter (Shelly Pro 3EM)": ("http", f"{pro.url}/rpc/EM.GetStatus?id=0"),
            "AC PV meter (Shelly PM Mini Gen3)": ("http", f"{pv.url}/rpc/PM1.GetStatus?id=0"),
            "2 kW boiler (Shelly 1PM relay)": ("http", f"{self.boiler.url}/relay/0?turn=on"),
            "3 kW heater (MQTT)": ("mqtt", f"{self.heater.command_topic} on|off, "
                                           f"{self.heater.state_topic}, "
                                           f"{self.heater.power_topic}"),
            "outdoor thermometer (MQTT)": ("mqtt", f"{sensor.prefix}/temperature, "
                                                   "humidity, pressure"),
        }
        o = self.options
        if ev is not None:
            when = "" if o.ev_start_hour is None else (
                f", a car from {o.ev_start_hour:05.2f} h takes {o.ev_energy_kwh:g} kWh at "
                f"{o.ev_power_w:.0f} W")
            self.devices["EV charging station on AC-out (D-Bus)"] = ("dbus", ev + when)
        car = "" if o.wattpilot_start_hour is None else (
            f", a car ({o.wattpilot_car_wh / 1000:g} kWh at {o.wattpilot_car_soc:g} %) from "
            f"{_clock(o.wattpilot_start_hour)} takes {o.wattpilot_energy_kwh:g} kWh")
        self.devices["Fronius Wattpilot on AC-out (websocket, Eco mode)"] = (
            "ws", wattpilot.url + car)

    def _ev_arrives(self, snap: Snapshot) -> None:
        """Each model step: the car comes at `ev_start_hour` and leaves when it has its
        energy (acted on with the next loop turn, not inside the model's step)."""
        venus, o = self.venus, self.options
        ev = venus.evcharger if venus is not None else None
        if ev is None or o.ev_start_hour is None:
            return
        if self._ev_due is None:
            self._ev_due = self._due(o.ev_start_hour)
        loop = asyncio.get_running_loop()
        if not ev.connected and not self._ev_done and snap.time_s >= self._ev_due:
            self._ev_done = True
            loop.call_soon(ev.charge, o.ev_power_w)
        elif ev.connected and ev.session_kwh >= o.ev_energy_kwh:
            loop.call_soon(ev.unplug)

    def _due(self, hour: float) -> float:
        """The model time of the first `hour` (0..24) at or after the start."""
        p = self.model.params
        return p.start_hour * 3600.0 + ((hour - p.start_hour) % 24.0) * 3600.0

    def _wattpilot_car(self, snap: Snapshot) -> None:
        """Each model step: a car is plugged into the Wattpilot at `wattpilot_start_hour`
        and unplugged when it has its energy or is full (with the next loop turn)."""
        wattpilot, o = self.wattpilot, self.options
        if wattpilot is None or o.wattpilot_start_hour is None:
            return
        if self._wattpilot_due is None:
            self._wattpilot_due = self._due(o.wattpilot_start_hour)
        loop = asyncio.get_running_loop()
        car = wattpilot.state.car
        if car is None and not self._wattpilot_done and snap.time_s >= self._wattpilot_due:
            self._wattpilot_done = True
            loop.call_soon(lambda: wattpilot.plug_in(capacity_wh=o.wattpilot_car_wh,
                                                     soc=o.wattpilot_car_soc))
        elif car is not None and (car.full or wattpilot.state.session_wh
                                  >= o.wattpilot_energy_kwh * 1000.0):
            loop.call_soon(wattpilot.unplug)

    async def _start_consumers(self, stack: contextlib.AsyncExitStack) -> None:
        host, port = self.broker_host, self.broker_port
        interval = self.options.consumer_interval_s
        for consumer in (
                ScriptedConsumer(self.model, host=host, port=port, interval_s=interval,
                                 key="EV", custom_name="EV charger", request_w=3680,
                                 minimum_w=1380, step_w=230, priority=35, priority_shift=1,
                                 vrm_instance=1020, phases=(1,)),
                ScriptedConsumer(self.model, host=host, port=port, interval_s=interval,
                                 key="PoolHeater", custom_name="Pool heater", request_w=3000,
                                 step_w=1000, priority=40, priority_shift=5,
                                 vrm_instance=1021, phases=(1, 2, 3))):
            self.consumers[consumer.key] = await stack.enter_async_context(consumer)
            stack.push_async_callback(consumer.leave)  # runs before its exit

    async def close(self) -> None:
        await self._stack.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- what to tell a user -------------------------------------------------------------------
    def describe(self) -> list[str]:
        """Plain lines: what runs and where."""
        broker = f"embedded MQTT broker on {self.broker_host}:{self.broker_port}" \
            if self.embedded_broker else f"MQTT broker {self.broker_host}:{self.broker_port}"
        p = self.model.params
        venus = self.venus
        names = ", ".join(s.name.removeprefix("com.victronenergy.")
                          for s in (venus.services if venus else []))
        day = "frozen (nothing changes) at" if self.options.freeze \
            else f"day at {p.time_scale:g}x speed from"
        lines = [
            f"  D-Bus     private dbus-daemon at {self.bus_address}",
            f"  Venus OS  simulated com.victronenergy.{{{names}}}",
            f"  MQTT      {broker}",
            f"  model     seed {p.seed}, {day} {p.start_hour:05.2f} h, battery "
            f"{p.capacity_wh / 1000:g} kWh at {p.initial_soc:g} %, PV {_peak_kw(p.pv_ac)} kW AC "
            f"+ {_peak_kw(p.pv_dc)} kW DC",
        ]
        lines += [f"  device    {name}: {where}" for name, (_, where) in self.devices.items()]
        lines += [f"  consumer  {describe_consumer(c)}" for c in self.consumers.values()]
        return lines

    def summary(self) -> str:
        """One compact line of the site now: time, SoC, PV, grid, battery, load."""
        s = self.model.snapshot
        hours, minutes = divmod(int(s.hour * 60), 60)
        grid, battery = round(s.grid_w), round(s.battery_w)  # ints: no "-0"
        return (f"{hours:02d}:{minutes:02d}  SoC {s.soc:5.1f} %  PV {s.pv_w:5.0f} W  "
                f"grid {grid:+6d} W  battery {battery:+6d} W  load {s.load_w:5.0f} W")
