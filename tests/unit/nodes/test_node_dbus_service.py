"""dbus.service config checks that need no bus: presets refuse paths they do not know."""

from __future__ import annotations

import pytest
from conftest import run

from flowengine.errors import ConfigErrors
from flowengine.testing import FlowHarness
from nodes.dbus.presets import PRESETS, Writable
from nodes.dbus.text import render


def errors_of(flow: str) -> str:
    with pytest.raises(ConfigErrors) as caught:
        run(FlowHarness(flow).__aenter__())
    return str(caught.value)


def test_a_preset_refuses_a_configured_path_it_does_not_know() -> None:
    text = errors_of("""
        id: bad
        nodes:
          - {id: bms, type: dbus.service, preset: battery, name: x, device_instance: 1,
             values: {/Dc/0/Voltag: 1}}
    """)
    assert "preset battery has no path /Dc/0/Voltag; did you mean '/Dc/0/Voltage'?" in text


def test_a_preset_refuses_upstream_topics_it_does_not_know() -> None:
    text = errors_of("""
        id: bad
        nodes:
          - {id: calc, type: formula, expression: "1", output: /Sco, to: [bms]}
          - {id: bms, type: dbus.service, preset: battery, name: x, device_instance: 1}
    """)
    assert "input topic '/Sco' is no path of preset battery; did you mean '/Soc'?" in text


def test_generic_needs_a_service_type_and_takes_any_path() -> None:
    text = errors_of("""
        id: bad
        nodes:
          - {id: svc, type: dbus.service, preset: generic, name: x, device_instance: 1}
    """)
    assert "preset generic needs service_type" in text
    assert PRESETS["generic"].knows("/Anything/At/All")
    assert PRESETS["battery"].knows("/Alarms/LowVoltage")
    assert not PRESETS["battery"].knows("/Ac/Power")


def test_writes_are_checked_for_type_and_range() -> None:
    amps = Writable("number", 6, 32)
    assert amps.check(10) == (0, 10)
    assert amps.check(40) == (2, None)
    assert amps.check("10") == (1, None)
    assert amps.check(True) == (1, None)
    assert Writable("integer", 0, 2).check(1.0) == (0, 1)
    assert Writable("integer", 0, 2).check(1.5) == (1, None)
    assert Writable("text").check(3) == (1, None)


def test_texts_carry_units_and_show_invalid_as_dashes() -> None:
    assert render(123.42, "W") == "123.4W"
    assert render(51.23, "V") == "51.2V"
    assert render(85, "%") == "85%"
    assert render(None, "W") == "---"
    assert render(0xA144, path="/ProductId") == "0xA144"
    assert render(12.345, "kWh") == "12.35kWh"
