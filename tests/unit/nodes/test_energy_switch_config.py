"""energy.switch's config as `validate` checks it (with file:line), and the texts it
publishes."""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import nodes.energy.switch as switch_module
from flowengine.errors import ConfigErrors
from flowengine.loader import load_flow
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from nodes.energy.switch import EnergySwitch
from nodes.energy.switch_run import number_text, parse_allowance

REGISTRY = Registry.default(plugins=False)
Write = Callable[[str, str], Path]

HTTP = """\
      on_url: http://192.168.1.60/relay/0?turn=on
      off_url: http://192.168.1.60/relay/0?turn=off
      status_url: http://192.168.1.60/status
"""
MQTT = """\
      on_topic: heater/set
      on_value: "on"
      off_topic: heater/set
      off_value: "off"
      status_topic: heater/state
"""


def node_flow(write: Write, body: str) -> Path:
    return write("flow.yaml", "id: f\nnodes:\n  - id: boiler\n    type: energy.switch\n"
                 "    key: boiler\n    request_w: 2000\n" + body)


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as exc:
        plan_flow(load_flow(path), REGISTRY)
    return [str(e) for e in exc.value.errors]


def node(path: Path) -> EnergySwitch:
    planned = plan_flow(load_flow(path), REGISTRY).nodes["boiler"]
    assert isinstance(planned.node, EnergySwitch)
    return planned.node


def test_a_bad_regex_is_refused_with_its_line(write: Write) -> None:
    path = node_flow(write, "    http:\n" + HTTP + "      on_keyword_regex: '\"ison\":(true'\n")
    [error] = problems(path)
    assert error.startswith(f"{path}:11:7: flow 'f', node 'boiler' (energy.switch): "
                            "http.on_keyword_regex: not a regex: missing ), unterminated")


def test_a_power_regex_needs_exactly_one_group(write: Write) -> None:
    path = node_flow(write, "    mqtt:\n" + MQTT + "      on_keyword_regex: ^on$\n"
                     "      power_extract_regex: 'W=(\\d+)\\.(\\d+)'\n")
    [error] = problems(path)
    assert f"{path}:14:7:" in error
    assert "mqtt.power_extract_regex has 2 groups; it needs exactly 1" in error
    assert "(?:...)" in error


def test_the_readme_spelling_is_accepted(write: Write) -> None:
    path = node_flow(write, "    http:\n" + HTTP + "      is_on_keyword_regex: 'ison.: *true'\n")
    assert node(path)._on_pattern.pattern == "ison.: *true"


@pytest.mark.parametrize("regexes", ["", "      on_keyword_regex: x\n"
                                         "      is_on_keyword_regex: x\n"])
def test_exactly_one_spelling_of_the_on_regex(write: Write, regexes: str) -> None:
    [error] = problems(node_flow(write, "    http:\n" + HTTP + regexes))
    assert "give exactly one of on_keyword_regex and is_on_keyword_regex" in error


@pytest.mark.parametrize("blocks", ["", "    http:\n" + HTTP + "      on_keyword_regex: x\n"
                                    "    mqtt:\n" + MQTT + "      on_keyword_regex: x\n"])
def test_exactly_one_of_http_and_mqtt(write: Write, blocks: str) -> None:
    [error] = problems(node_flow(write, blocks))
    assert "give exactly one of `http:` and `mqtt:`" in error


def test_basic_auth_needs_a_password(write: Write) -> None:
    path = node_flow(write, "    http:\n" + HTTP + "      on_keyword_regex: x\n"
                     "      auth: basic\n")
    [error] = problems(path)
    assert f"{path}:12:7:" in error and "auth: basic needs a password" in error


def test_a_key_cannot_hold_topic_levels(write: Write) -> None:
    path = write("flow.yaml", "id: f\nnodes:\n  - id: boiler\n    type: energy.switch\n"
                 "    key: a/b\n    request_w: 2000\n    mqtt:\n" + MQTT
                 + "      on_keyword_regex: x\n")
    [error] = problems(path)
    assert f"{path}:5:5:" in error and "option 'key' does not match" in error


def test_two_switches_with_one_key_are_refused(write: Write) -> None:
    block = ("    type: energy.switch\n    key: boiler\n    request_w: 2000\n    mqtt:\n"
             + MQTT + "      on_keyword_regex: x\n")
    path = write("flow.yaml", "id: f\nnodes:\n  - id: one\n" + block + "  - id: two\n" + block)
    from flowengine.preflight import check_claims  # the check `validate` runs over all flows

    errors = check_claims([plan_flow(load_flow(path), REGISTRY)])
    assert len(errors) == 1 and "boiler" in str(errors[0])


def test_the_request_fields_are_those_of_an_npc(write: Write) -> None:
    path = node_flow(write, "    custom_name: Pool heater\n    minimum_w: 1500.5\n"
                     "    priority: 35\n    priority_shift: 1\n    vrm_instance: 1011\n"
                     "    ignore_bat_reservation: true\n"
                     "    mqtt:\n" + MQTT + "      on_keyword_regex: x\n")
    assert node(path).request_fields() == {
        "IsMqttConsumer": "true", "IsAutomatic": "true", "CustomName": "Pool heater",
        "Request": "2000", "StepSize": "2000", "Minimum": "1500.5", "Priority": "35",
        "PriorityShift": "1", "IgnoreBatReservation": "true", "VRMInstanceID": "1011"}


def test_the_module_example_validates(tmp_path: Path) -> None:
    doc = inspect.getdoc(switch_module) or ""
    example = "\n".join(line[4:] for line in doc.split("\n\n")[1].splitlines())
    path = tmp_path / "example.yaml"
    path.write_text("id: example\nnodes:\n" + textwrap.indent(example, "  ") + "\n")
    assert plan_flow(load_flow(path), REGISTRY).nodes["boiler"].spec.type == "energy.switch"


@pytest.mark.parametrize(("value", "text"), [(2000, "2000"), (1365.5, "1365.5"),
                                             (0.0, "0"), (-0.0, "0"), (0.1 + 0.2, "0.3")])
def test_numbers_as_the_topics_carry_them(value: float, text: str) -> None:
    assert number_text(value) == text


@pytest.mark.parametrize("payload", [b"abc", b"-1", b"nan", b"inf", b"", b"1e400"])
def test_a_malformed_allowance_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_allowance(payload)


def test_allowances_as_the_distributor_writes_them() -> None:
    assert [parse_allowance(p) for p in (b"0", b"1365", b"1365.5", b" 1380.0\n")] == \
        [0, 1365, 1365.5, 1380]
