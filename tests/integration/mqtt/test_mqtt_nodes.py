"""mqtt.in and mqtt.out in a running flow, against a real mosquitto."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import eventually, run

from flowengine.model import Message
from flowengine.runner import NodeRunner

from .mqttkit import Mosquitto, client, running, settle


def test_mqtt_in_formula_out_round_trip(mosquitto: Mosquitto, tmp_path: Path) -> None:
    flow = """
        id: bridge
        nodes:
          - {id: source, type: mqtt.in, topic: rt/in/power, output: power, to: [calc]}
          - {id: calc, type: formula, expression: power * 1.5 + 3, output: result, to: [sink]}
          - {id: sink, type: mqtt.out, topic: "rt/out/{topic}"}
    """

    async def scenario() -> None:
        async with running(flow, mosquitto, tmp_path) as (_, flow_run), \
                client(mosquitto, "rt") as other:
            other.listen("rt/out/#")
            other.broker.publish("rt/in/power", "100", qos=1)
            await eventually(lambda: len(other.received) == 1, timeout=5)
            other.broker.publish("rt/in/power", "-2", qos=1)
            await eventually(lambda: len(other.received) == 2, timeout=5)
            assert other.payloads("rt/out/result") == ["153.0", "0.0"]
            assert flow_run.runners["sink"].status.level == "ok"
            assert flow_run.runners["source"].status.text == "rt/in/power"
    run(scenario())


def test_mqtt_in_names_wildcards_and_decodes_regex_and_json_paths(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    flow = r"""
        id: decode
        nodes:
          - id: relays
            type: mqtt.in
            topic: wd/+/status
            wildcards: [device]
            regex: '"ison":\s*true'
            output: "{device}/on"
          - id: power
            type: mqtt.in
            topic: wd/+/power/#
            wildcards: [device, rest]
            regex: '"apower":([^,]+),'
            payload: number
            output: "{device}/{rest}"
          - {id: meter, type: mqtt.in, topic: wd/meter, json_path: /emeters/1/power}
          - {id: tasmota, type: mqtt.in, topic: wd/tasmota, json_path: ENERGY.Power}
    """
    seen: list[Message] = []

    def tap(runner: NodeRunner, port: str, msg: Message) -> None:
        seen.append(msg)

    async def scenario() -> None:
        async with running(flow, mosquitto, tmp_path, tap=tap), client(mosquitto, "wd") as other:
            publish = other.broker.publish
            publish("wd/pool/status", '{"id": 0, "ison": true}', qos=1)
            publish("wd/pump/status", '{"id": 0, "ison": false}', qos=1)
            publish("wd/pool/power/switch/0", '{"apower":1234.5,"voltage":230}', qos=1)
            publish("wd/meter", '{"emeters": [{"power": 1}, {"power": -250.5}]}', qos=1)
            publish("wd/tasmota", '{"ENERGY": {"Power": 42}}', qos=1)
            await eventually(lambda: len(seen) == 5, timeout=5)
    run(scenario())
    by_topic = {m.topic: m for m in seen}
    assert {t: m.value for t, m in by_topic.items()} == {
        "pool/on": True, "pump/on": False, "pool/switch/0": 1234.5,
        "wd/meter": -250.5, "wd/tasmota": 42}
    assert by_topic["pool/switch/0"].meta == {
        "mqtt_topic": "wd/pool/power/switch/0", "retained": False,
        "device": "pool", "rest": "switch/0"}


def test_a_retained_and_a_live_message_of_one_topic_say_which_they_are(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    flow = """
        id: retained
        nodes:
          - {id: source, type: mqtt.in, topic: rk/+/soc, wildcards: [device],
             output: "{device}_soc"}
    """
    seen: list[Message] = []

    def tap(runner: NodeRunner, port: str, msg: Message) -> None:
        seen.append(msg)

    async def scenario() -> None:
        async with client(mosquitto, "rk") as other:
            other.broker.publish("rk/bms/soc", "55", qos=1, retain=True)
            await settle(other.broker)
            async with running(flow, mosquitto, tmp_path, tap=tap):
                await eventually(lambda: len(seen) == 1, timeout=5)
                other.broker.publish("rk/bms/soc", "56", qos=1)
                other.broker.publish("rk/inv/soc", "57", qos=1)
                await eventually(lambda: len(seen) == 3, timeout=5)
            other.broker.publish("rk/bms/soc", "", qos=1, retain=True)  # clean up
    run(scenario())
    assert [(m.topic, m.value, m.meta) for m in seen] == [
        ("bms_soc", 55, {"mqtt_topic": "rk/bms/soc", "retained": True, "device": "bms"}),
        ("bms_soc", 56, {"mqtt_topic": "rk/bms/soc", "retained": False, "device": "bms"}),
        ("inv_soc", 57, {"mqtt_topic": "rk/inv/soc", "retained": False, "device": "inv"})]


def test_mqtt_in_counts_and_drops_bad_payloads_and_keeps_running(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    flow = """
        id: sensors
        nodes:
          - {id: temp, type: mqtt.in, topic: bp/temp, payload: number}
    """
    seen: list[object] = []

    async def scenario() -> None:
        async with running(flow, mosquitto, tmp_path,
                           tap=lambda r, p, m: seen.append(m.value)) as (_, flow_run), \
                client(mosquitto, "bp") as other:
            for payload in ("21.5", "warm", "{", "\xff", "22"):
                other.broker.publish("bp/temp", payload, qos=1)
            await eventually(lambda: seen == [21.5, 22], timeout=5)
            node = flow_run.runners["temp"]
            await eventually(lambda: "3 payload(s) not decoded" in node.status.text, 3)
            assert node.status.level == "warning"
            assert node.node.bad == 3
            other.broker.publish("bp/temp", "23", qos=1)
            await eventually(lambda: seen[-1] == 23, timeout=5)
    caplog.set_level(logging.DEBUG)
    run(scenario())
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 3
    assert all("bp/temp" in line for line in dropped)
    assert "not a number: 'warm'" in dropped[0]


def test_mqtt_out_exporter_star_venus_json_template_and_retain(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    flow = """
        id: export
        nodes:
          - {id: grid, type: mqtt.out, topic: "ex/Grid/*", retain: true}
          - {id: vrm, type: mqtt.out, topic: "ex/N/{topic}", format: venus_json}
          - id: shaped
            type: mqtt.out
            topic: "ex/{consumer}/Request"
            format: template
            template: '{{"consumer": "{consumer}", "watts": {value}}}'
    """

    async def scenario() -> None:
        async with running(flow, mosquitto, tmp_path) as (_, flow_run):
            runners = flow_run.runners
            runners["grid"].mailbox.put("in", Message("/Ac/L1/Power", 1200.5))
            runners["grid"].mailbox.put("in", Message("l2", 5, meta={"path": "/Ac/L2/Power"}))
            runners["vrm"].mailbox.put("in", Message("TimeToGo", None))
            runners["shaped"].mailbox.put("in", Message("x", 800, meta={"consumer": "pool"}))
            runners["shaped"].mailbox.put("in", Message("x", 1))  # no consumer: skipped
            async with client(mosquitto, "ex") as other:  # after the fact: retained only
                other.listen("ex/Grid/#")
                await eventually(lambda: len(other.received) == 2, timeout=5)
                assert {(r.topic, r.payload, r.retained) for r in other.received} == {
                    ("ex/Grid/Ac/L1/Power", "1200.5", True),
                    ("ex/Grid/Ac/L2/Power", "5", True)}
            async with client(mosquitto, "ex2") as other:
                other.listen("ex/N/#")
                other.listen("ex/pool/#")
                runners["vrm"].mailbox.put("in", Message("TimeToGo", 3600))
                runners["shaped"].mailbox.put("in", Message("x", 800,
                                                            meta={"consumer": "pool"}))
                await eventually(lambda: len(other.received) == 2, timeout=5)
                assert json.loads(other.payloads("ex/N/TimeToGo")[0]) == {"value": 3600}
                assert json.loads(other.payloads("ex/pool/Request")[0]) == \
                    {"consumer": "pool", "watts": 800}
            shaped = runners["shaped"]
            await eventually(lambda: "1 message(s) not published" in shaped.status.text)
    run(scenario())


def test_mqtt_out_only_on_change_and_min_interval_keep_the_last_value(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    flow = """
        id: pacing
        nodes:
          - {id: changes, type: mqtt.out, topic: "pc/changes", only_on_change: true}
          - {id: paced, type: mqtt.out, topic: "pc/paced", min_interval_ms: 300}
    """

    async def scenario() -> None:
        async with running(flow, mosquitto, tmp_path) as (_, flow_run), \
                client(mosquitto, "pc") as other:
            other.listen("pc/#")
            await settle(other.broker)
            # distinct input topics, so the input queue does not merge them
            for i, value in enumerate((1, 1, 2, 2, 1)):
                flow_run.runners["changes"].mailbox.put("in", Message(f"v{i}", value))
            for i, value in enumerate((1, 2, 3, 4)):
                flow_run.runners["paced"].mailbox.put("in", Message(f"v{i}", value))
            await eventually(lambda: other.payloads("pc/paced") == ["1", "4"], timeout=3)
            assert other.payloads("pc/changes") == ["1", "2", "1"]
    run(scenario())


def test_mqtt_in_counts_json_nested_too_deeply_as_undecoded_without_a_traceback(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`[` x 100000 makes json recurse too deeply: counted like any bad payload, warned
    about once for its topic (INFO once when the topic decodes again), and the next
    good payload comes through; nothing reaches the MQTT library's error log."""
    flow = """
        id: deep
        nodes:
          - {id: doc, type: mqtt.in, topic: dj/doc, payload: json}
          - {id: guess, type: mqtt.in, topic: dj/doc}
          - {id: path, type: mqtt.in, topic: dj/doc, json_path: a, payload: number}
    """
    seen: list[tuple[str, object]] = []

    async def scenario() -> None:
        async with running(flow, mosquitto, tmp_path,
                           tap=lambda r, p, m: seen.append((r.node_id, m.value))) \
                as (_, flow_run), client(mosquitto, "dj") as other:
            for payload in ("[" * 100_000, "[" * 100_000, '{"a": 5}'):
                other.broker.publish("dj/doc", payload, qos=1)
            await eventually(lambda: len(seen) == 3, timeout=10)
            assert sorted(seen) == [("doc", {"a": 5}), ("guess", {"a": 5}), ("path", 5)]
            for node_id in ("doc", "guess", "path"):
                runner = flow_run.runners[node_id]
                assert runner.node.bad == 2
                await eventually(lambda r=runner: "2 payload(s) not decoded" in r.status.text)
                assert runner.status.level == "warning" and runner.phase == "running"
    caplog.set_level(logging.DEBUG)
    run(scenario())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
              and "not decoded" in r.getMessage()]
    assert len(warned) == 3  # one per node: the first bad payload on the topic
    assert all("payload on dj/doc not decoded: JSON nested too deeply" in w for w in warned)
    again = [r.getMessage() for r in caplog.records if "decode again" in r.getMessage()]
    assert sorted(again) == [f"deep/{node}: payloads on dj/doc decode again"
                             for node in ("doc", "guess", "path")]
