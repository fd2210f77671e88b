"""MQTT-switched consumer: commands switch a model load; state and power are published."""

from __future__ import annotations

from conftest import eventually, run

from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim import EnergyModel, ModelParams
from sim.broker import MqttBroker
from sim.devices.mqtt_consumer import MqttConsumer


def test_on_off_commands_switch_the_load_and_the_grid_sees_it() -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=3, start_hour=20.0, initial_soc=10.0))
        async with MqttBroker() as broker, MqttConsumer(
                model, port=broker.port, name="heater", power_w=2000.0, phases=(2,)) as heater:
            client = Broker("watch", MqttBrokerConfig(host="127.0.0.1", port=broker.port,
                                                      status_topic=None))
            seen: dict[str, str] = {}
            client.subscribe("sim/heater/#", lambda t, p, r: seen.__setitem__(t, p.decode()))
            await client.start()
            await client.wait_connected(5)
            await heater.wait_connected()
            await eventually(lambda: seen.get("sim/heater/state") == "off")
            assert seen["sim/heater/LWT"] == "Online"
            grid_before = model.snapshot.grid_l[1]
            client.publish("sim/heater/set", "ON", qos=1)
            await eventually(lambda: seen.get("sim/heater/state") == "on")
            assert model.loads["heater"].on
            # empty battery at the limit: the grid carries the whole new load on L2
            assert model.snapshot.grid_l[1] - grid_before == 2000.0
            assert seen["sim/heater/power"] == "2000.0"
            client.publish("sim/heater/set", "nonsense")
            client.publish("sim/heater/set", "0")
            await eventually(lambda: seen.get("sim/heater/state") == "off")
            assert heater.commands == 2
            assert model.snapshot.extra_w["heater"] == 0.0
            await client.close()
    run(scenario())


def test_faults_silent_garbage_and_gone() -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=3))
        async with MqttBroker() as broker, MqttConsumer(model, port=broker.port,
                                                        interval_s=0.0) as heater:
            client = Broker("watch", MqttBrokerConfig(host="127.0.0.1", port=broker.port,
                                                      status_topic=None))
            powers: list[str] = []
            states: list[str] = []
            client.subscribe("sim/heater/power", lambda t, p, r: powers.append(p.decode()))
            client.subscribe("sim/heater/state", lambda t, p, r: states.append(p.decode()))
            await client.start()
            await client.wait_connected(5)
            await heater.wait_connected()
            await eventually(lambda: states == ["off"])  # retained: the subscription is in
            heater.garbage()
            model.step(1)
            await eventually(lambda: bool(powers) and not powers[-1].replace(".", "").isdigit())
            heater.silent()
            count = len(powers)
            client.publish("sim/heater/set", "on")
            await eventually(lambda: heater.load.on)
            model.step(1)
            assert len(powers) == count  # it switches, but says nothing
            heater.clear()
            await eventually(lambda: powers[-1] == "2000.0")
            await heater.go_away()
            await eventually(lambda: broker.retained["sim/heater/LWT"].payload == b"Offline")
            client.publish("sim/heater/set", "off")
            await heater.come_back()
            await eventually(lambda: broker.retained["sim/heater/LWT"].payload == b"Online")
            await client.close()
    run(scenario())
