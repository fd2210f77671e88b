"""The demo's setpoint line and the site's EV: its format, the arbiter's topics, the car."""

from __future__ import annotations

from conftest import eventually, run

from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim.broker import MqttBroker
from sim.setpoint_watch import SetpointWatch, format_setpoint
from sim.site import SimSite, SiteOptions

R = "es-ESS/Setpoint"


def test_the_line_shows_setting_battery_and_the_ev_while_it_charges() -> None:
    assert format_setpoint(setting_w=0.0, battery_w=2545.4, battery_a=50.38) == \
        "setting 0 W  battery +2545 W (+50.4 A)"
    assert format_setpoint(setting_w=4937.2, battery_w=-937, battery_a=-18.7, ev_w=7000.0,
                           arbiter_w=4937, default_w=0,
                           requests={"no-bat-to-ev/setpoint": 4937.2}) == \
        ("setting 4937 W  default 0 W  requests no-bat-to-ev/setpoint 4937 W  "
         "battery -937 W (-18.7 A)  EV 7000 W")


def test_the_line_shows_the_arbiters_setpoint_where_the_setting_differs() -> None:
    line = format_setpoint(setting_w=1000, battery_w=None, battery_a=None, ev_w=0.0,
                           arbiter_w=5115, default_w=None,
                           requests={"b/n": 115, "a/n": 5000})
    assert line == ("setting 1000 W  arbiter 5115 W  default ? W  "
                    "requests a/n 5000 W, b/n 115 W  battery ? W (? A)")
    assert format_setpoint(setting_w=0, battery_w=0, battery_a=0.0, default_w=0,
                           requests={}) == \
        "setting 0 W  default 0 W  requests none  battery +0 W (+0.0 A)"


def test_the_watch_reads_the_arbiters_topics_and_forgets_a_revoked_request() -> None:
    async def scenario() -> None:
        async with MqttBroker() as broker, SetpointWatch("127.0.0.1", broker.port) as watch:
            assert watch.line(setting_w=0, battery_w=10, battery_a=0.2) == \
                "setting 0 W  battery +10 W (+0.2 A)"  # no arbiter: no arbiter part
            arbiter = Broker("arbiter", MqttBrokerConfig(
                host="127.0.0.1", port=broker.port, status_topic=None))
            await arbiter.start()
            await arbiter.wait_connected(5)
            arbiter.publish(f"{R}/Default", "50", retain=True)
            arbiter.publish(f"{R}/Setpoint", "1550", retain=True)
            arbiter.publish(f"{R}/Requests/no-bat-to-ev/setpoint", "1500", retain=True)
            arbiter.publish(f"{R}/Requests/charge-current-reducer/setpoint", "-800", retain=True)
            await eventually(lambda: len(watch.requests) == 2)
            assert watch.line(setting_w=750, battery_w=0, battery_a=0) == (
                "setting 750 W  arbiter 1550 W  default 50 W  requests "
                "charge-current-reducer/setpoint -800 W, no-bat-to-ev/setpoint 1500 W  "
                "battery +0 W (+0.0 A)")
            arbiter.publish(f"{R}/Requests/charge-current-reducer/setpoint", "", retain=True)
            await eventually(lambda: len(watch.requests) == 1)
            assert "requests no-bat-to-ev/setpoint 1500 W" in \
                watch.line(setting_w=1550, battery_w=0, battery_a=0)
            await arbiter.close()
    run(scenario())


def test_a_car_arrives_at_the_site_ev_charger_at_its_hour_and_leaves_when_charged() -> None:
    async def scenario() -> None:
        # 600 x: the car comes 10 simulated minutes after the start, takes 1 kWh at 6 kW
        options = SiteOptions(speed=600.0, start_hour=9.0, ev_start_hour=9.0 + 1 / 6,
                              ev_power_w=6000.0, ev_energy_kwh=1.0, step_s=0.05,
                              scripted_consumers=False)
        async with SimSite(options) as site:
            assert site.venus is not None and site.venus.evcharger is not None
            ev = site.venus.evcharger
            assert "a car from 09.17 h takes 1 kWh at 6000 W" in "".join(site.describe())
            assert not ev.connected
            await eventually(lambda: ev.charging, timeout=5.0)
            assert site.model.snapshot.hour >= 9.0 + 1 / 6
            assert site.model.snapshot.extra_w["evcharger"] == 6000.0
            assert ev.values["/Status"] == 2
            await eventually(lambda: not ev.connected, timeout=5.0)  # 10 simulated minutes
            assert ev.values["/Status"] == 0
            assert ev.values["/Ac/Energy/Forward"] >= 1.0
    run(scenario())
