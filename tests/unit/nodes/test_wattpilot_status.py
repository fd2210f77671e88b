"""How the Wattpilot client merges its charger's status (protocol sheet §2.1-§2.3)."""

from __future__ import annotations

import logging

import pytest

from nodes.devices.wattpilot_status import WattpilotHello, WattpilotStatus, request_number


def book() -> tuple[WattpilotStatus, list[frozenset[str]]]:
    status = WattpilotStatus("wattpilot test")
    changes: list[frozenset[str]] = []
    status.on_change(changes.append)
    status.expect_full()
    return status, changes


def test_full_status_parts_are_merged_and_ready_at_the_last_part() -> None:
    status, changes = book()
    assert status.full({"amp": 6, "car": 1}, partial=True) is False
    assert not status.ready and status.values == {} and changes == []
    assert status.full({"frc": 0}, partial=False) is True
    assert status.ready and status.values == {"amp": 6, "car": 1, "frc": 0}
    assert changes == [frozenset({"amp", "car", "frc"})]


def test_a_full_status_without_partial_is_complete_at_the_first_delta() -> None:
    status, _ = book()
    assert status.full({"amp": 6}, partial=None) is False
    assert status.delta({"nrg": [0] * 16}) is True
    assert status.ready and set(status.values) == {"amp", "nrg"}


def test_a_delta_before_any_full_status_part_waits_for_the_parts() -> None:
    status, _ = book()
    assert status.delta({"utc": "now"}) is False
    assert status.full({"amp": 6}, partial=False) is True
    assert status.values == {"utc": "now", "amp": 6}


def test_deltas_report_only_the_keys_that_changed() -> None:
    status, changes = book()
    status.full({"amp": 6, "car": 1}, partial=False)
    status.delta({"amp": 6, "car": 2, "utc": "x"})
    status.delta({"amp": 6})
    assert changes[1:] == [frozenset({"car", "utc"})]


def test_a_new_connections_full_status_replaces_the_old_in_place() -> None:
    status, changes = book()
    held = status.values
    status.full({"amp": 6, "gone": 1}, partial=False)
    status.lost()
    assert not status.ready and held == {"amp": 6, "gone": 1}  # the last known, not ready
    status.expect_full()
    status.full({"amp": 8}, partial=False)
    assert held is status.values and held == {"amp": 8}
    assert changes[-1] == frozenset({"amp", "gone"})


def test_a_failing_listener_is_logged_and_the_others_still_hear(
        caplog: pytest.LogCaptureFixture) -> None:
    status, changes = book()

    def broken(_keys: frozenset[str]) -> None:
        raise RuntimeError("boom")

    status.on_change(broken)
    status.on_change(changes.append)
    with caplog.at_level(logging.ERROR):
        status.full({"amp": 6}, partial=False)
    assert "a listener failed" in caplog.text and len(changes) == 2


@pytest.mark.parametrize(("echo", "number"), [
    (3, 3), ("3", 3), ("3sm", 3), ("sm", None), ("x3", None), (True, None), (None, None),
    (3.0, None), ("٣", None),
])
def test_response_ids_match_in_every_form_the_sources_show(echo: object,
                                                           number: int | None) -> None:
    assert request_number(echo) == number


@pytest.mark.parametrize(("secured", "expected"), [
    (True, True), (False, False), (1, True), (0, False), (2.5, True), (None, False),
    ("true", False),
])
def test_hello_secured_is_a_bool_or_a_number(secured: object, expected: bool) -> None:
    message = {"type": "hello", "serial": "91400617", "devicetype": "wattpilot",
               "version": "42.5", "secured": secured}
    hello = WattpilotHello.parse(message)
    assert hello.secured is expected
    assert (hello.serial, hello.devicetype, hello.version) == ("91400617", "wattpilot", "42.5")


def test_hello_without_secured_is_not_secured() -> None:
    assert WattpilotHello.parse({"type": "hello"}).secured is False
