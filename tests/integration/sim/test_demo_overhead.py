"""The demo's distributor line: its format, and the figures it reads from MQTT."""

from __future__ import annotations

from conftest import eventually, run

from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim.broker import MqttBroker
from sim.overhead import OverheadWatch, format_overhead

R = "es-ESS/SolarOverheadDistributor"


def test_the_line_shows_overhead_reservation_and_each_allowance_in_key_order() -> None:
    line = format_overhead(available=4751.4, reservation=2988,
                           allowances={"PoolHeater": 0, "EV": 1610, "boiler": 2000.0},
                           consumptions={"EV": 1610.0, "PoolHeater": 0, "boiler": 2000})
    assert line == ("overhead 4751 W  reservation 2988 W  "
                    "allowance boiler 2000 W, EV 1610 W, PoolHeater 0 W")


def test_the_line_says_what_a_consumer_draws_where_it_differs_from_its_allowance() -> None:
    line = format_overhead(available=2500, reservation=0,
                           allowances={"EV": 1500, "PoolHeater": 1365.5},
                           consumptions={"EV": 1380})
    assert line == ("overhead 2500 W  reservation 0 W  "
                    "allowance EV 1500 W (draws 1380 W), PoolHeater 1366 W")


def test_unknown_figures_are_question_marks() -> None:
    assert format_overhead(available=None, reservation=None, allowances={}) == \
        "overhead ? W  reservation ? W  allowance none yet"
    assert format_overhead(available=0, reservation=250, allowances={"EV": None},
                           consumptions={"EV": 0}) == \
        "overhead 0 W  reservation 250 W  allowance EV ? W (draws 0 W)"


def test_the_watch_reads_the_distributors_topics_and_is_quiet_until_it_speaks() -> None:
    async def scenario() -> None:
        async with MqttBroker() as broker, OverheadWatch("127.0.0.1", broker.port) as watch:
            client = Broker("distributor", MqttBrokerConfig(
                host="127.0.0.1", port=broker.port, status_topic=None))
            await client.start()
            await client.wait_connected(5)
            client.publish(f"{R}/Requests/EV/Consumption", "0", retain=True)
            client.publish(f"{R}/Requests/EV/Energy/energyToday", "12.5", retain=True)
            await eventually(lambda: "EV" in watch.consumptions)
            assert watch.line() is None  # consumers alone: no distributor yet
            client.publish(f"{R}/Calculations/OverheadAvailable", "4751", qos=1)
            client.publish(f"{R}/Calculations/Battery/Reservation", "2988", qos=1)
            client.publish(f"{R}/Requests/EV", "2026-12-01 11:02:00")
            client.publish(f"{R}/Requests/EV/Allowance", "1610", qos=1)
            client.publish(f"{R}/Requests/EV/Consumption", "1610", retain=True)
            await eventually(lambda: watch.line() == (
                "overhead 4751 W  reservation 2988 W  allowance EV 1610 W"))
            await client.close()
    run(scenario())
