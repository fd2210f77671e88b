"""MQTT climate sensor: readings follow the model's time of day; silent and garbage faults."""

from __future__ import annotations

from conftest import eventually, run

from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim import EnergyModel, ModelParams
from sim.broker import MqttBroker
from sim.devices.mqtt_sensor import MqttSensor, outdoor_climate


def test_outdoor_day_is_coolest_at_five_warmest_at_fifteen_and_continuous() -> None:
    temps = [outdoor_climate(h / 4)[0] for h in range(96)]
    assert min(temps) == outdoor_climate(5)[0] == 8.0
    assert max(temps) == outdoor_climate(15)[0] == 20.0
    assert all(abs(a - b) < 0.6 for a, b in zip(temps, temps[1:] + temps[:1], strict=True))
    assert outdoor_climate(15)[1] < outdoor_climate(5)[1]  # drier when warm


def test_readings_follow_the_model_and_faults_silence_or_garble_them() -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=3, start_hour=12.0))
        async with MqttBroker() as broker, MqttSensor(model, port=broker.port,
                                                      interval_s=0.0) as sensor:
            client = Broker("watch", MqttBrokerConfig(host="127.0.0.1", port=broker.port,
                                                      status_topic=None))
            seen: dict[str, list[str]] = {}
            client.subscribe("sim/outdoor/#",
                             lambda t, p, r: seen.setdefault(t, []).append(p.decode()))
            await client.start()
            await client.wait_connected(5)
            await sensor.wait_connected()
            temperature = sensor.topic("temperature")

            def arrived() -> bool:  # publish until the watcher's subscription is in place
                if not seen.get(temperature):
                    sensor.announce()
                return bool(seen.get(temperature))
            await eventually(arrived)
            seen.clear()
            sensor.announce()
            await eventually(lambda: len(seen) == 3)
            assert float(seen[temperature][-1]) == outdoor_climate(model.snapshot.hour)[0]
            assert float(seen[sensor.topic("humidity")][-1]) > 0
            assert seen[sensor.topic("pressure")][-1] == "1013.2"

            sensor.silent()
            count = len(seen[temperature])
            model.step(3600)
            model.step(1)
            sensor.garbage()
            model.step(1)
            await eventually(lambda: len(seen[temperature]) == count + 1)
            assert not seen[temperature][-1].replace(".", "").isdigit()
            sensor.clear()
            await eventually(lambda: len(seen[temperature]) == count + 2)
            assert float(seen[temperature][-1]) == outdoor_climate(13.0)[0]
            await client.close()
    run(scenario())
