"""energy.counter: gross and net metering, gaps, invalid phases, persistence across restarts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run

from flowengine.errors import ConfigErrors
from flowengine.testing import NodeHarness

COUNTER = """
    id: energy
    type: energy.counter
    metering: {metering}
    emit_every_ms: 60000
    persist_every_s: 300
"""


async def feed_hour(h: NodeHarness, powers: tuple[float, float, float], *,
                    every_s: float = 5.0, hours: float = 1.0) -> None:
    """Readings of all three phases every `every_s` seconds for `hours`."""
    steps = round(hours * 3600 / every_s)
    for step in range(steps + 1):
        for phase, power in zip(("L1", "L2", "L3"), powers, strict=True):
            await h.send(f"{phase}/power", power)
        if step < steps:
            await h.advance(every_s * 1000)


def totals(h: NodeHarness) -> dict[str, float]:
    return h.node.totals()  # type: ignore[no-any-return]


@pytest.mark.parametrize(("metering", "forward", "reverse"),
                         [("gross", 1.346, 0.830), ("net", 0.516, 0.0)])
def test_one_hour_of_mixed_phases_counts_as_the_reference_says(
        metering: str, forward: float, reverse: float) -> None:
    # L1 +1250 W, L2 -830 W, L3 +96 W for one hour (the worked example of devices.md)
    async def scenario() -> None:
        async with NodeHarness(COUNTER.format(metering=metering)) as h:
            await feed_hour(h, (1250.0, -830.0, 96.0))
            got = totals(h)
            assert got["energy_forward"] == pytest.approx(forward, abs=1e-9)
            assert got["energy_reverse"] == pytest.approx(reverse, abs=1e-9)
            # per phase is always gross: the phase's own import and export
            assert got["L1/energy_forward"] == pytest.approx(1.25)
            assert got["L2/energy_reverse"] == pytest.approx(0.83)
            await h.advance(60000)
            sent = {m.topic: m.value for m in h.messages()}
            assert sent["energy_forward"] == pytest.approx(forward, abs=1e-6)

    run(scenario())


def test_a_gap_longer_than_max_gap_is_not_counted() -> None:
    async def scenario() -> None:
        async with NodeHarness(COUNTER.format(metering="gross")) as h:
            await feed_hour(h, (1000.0, 0.0, 0.0), hours=0.5)
            await h.advance(20 * 60 * 1000)  # offline for 20 minutes: no readings
            await feed_hour(h, (1000.0, 0.0, 0.0), hours=0.5)
            assert totals(h)["energy_forward"] == pytest.approx(1.0, abs=1e-9)

    run(scenario())


def test_an_unknown_phase_is_not_counted_and_stops_net_counting() -> None:
    async def scenario() -> None:
        async with NodeHarness(COUNTER.format(metering="net")) as h:
            await feed_hour(h, (1000.0, None, 500.0))  # type: ignore[arg-type]
            got = totals(h)
            assert got["L1/energy_forward"] == pytest.approx(1.0)
            assert got["L2/energy_forward"] == 0.0
            assert got["energy_forward"] == 0.0  # the sum is unknown, so net counts nothing

    run(scenario())


def test_totals_survive_a_restart_and_are_sent_at_start(tmp_path: Path) -> None:
    async def first() -> None:
        async with NodeHarness(COUNTER.format(metering="gross"), state_dir=tmp_path) as h:
            await feed_hour(h, (2000.0, -1000.0, 0.0))

    async def second() -> None:
        async with NodeHarness(COUNTER.format(metering="gross"), state_dir=tmp_path) as h:
            sent = {m.topic: m.value for m in h.messages()}
            assert sent["energy_forward"] == pytest.approx(2.0)
            assert sent["energy_reverse"] == pytest.approx(1.0)
            await feed_hour(h, (2000.0, -1000.0, 0.0))
            assert totals(h)["energy_forward"] == pytest.approx(4.0)

    run(first())
    saved = list(tmp_path.rglob("energy.json"))
    assert len(saved) == 1
    run(second())


def test_totals_are_saved_every_persist_interval_not_on_every_reading(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with NodeHarness(COUNTER.format(metering="gross"), state_dir=tmp_path) as h:
            await feed_hour(h, (1000.0, 0.0, 0.0), hours=0.05)  # 3 minutes
            assert "forward" not in h.runner("energy").node_state()
            await feed_hour(h, (1000.0, 0.0, 0.0), hours=0.05)  # past 5 minutes
            saved = h.runner("energy").node_state()["forward"]
            assert saved["L1/power"] == pytest.approx(0.1, abs=0.02)

    run(scenario())


def test_the_periodic_save_reaches_the_disk_at_once(tmp_path: Path) -> None:
    """A kill right after the periodic save loses nothing before it: the runtime writes a
    changed state as soon as it is due, it does not wait for a poll."""
    counter = COUNTER.replace("persist_every_s: 300", "persist_every_s: 302")

    async def scenario() -> None:
        async with NodeHarness(counter.format(metering="gross"), state_dir=tmp_path) as h:
            await h.send("L1/power", 3600.0)  # 1 Wh per second
            for _ in range(302):
                await h.advance(1000)
                await h.send("L1/power", 3600.0)
            await h.advance(100)  # the save at 302 s, and 0.1 s for the write
            [path] = tmp_path.rglob("energy.json")
            saved = json.loads(path.read_text())["forward"]["L1/power"]
            assert saved == pytest.approx(0.302, abs=0.002)  # kWh of the first 302 s

    run(scenario())


def test_a_phase_listed_twice_is_refused_at_load_time() -> None:
    async def scenario() -> None:
        async with NodeHarness("""
            id: energy
            type: energy.counter
            phases: [L1/power, L1/power]
        """):
            pass

    with pytest.raises(ConfigErrors, match="a phase topic is listed twice"):
        run(scenario())


@pytest.mark.parametrize("odd", [float("inf"), float("-inf"), float("nan"), 10**400, 1e308],
                         ids=["inf", "-inf", "nan", "int-beyond-a-double", "near-the-limit"])
def test_a_reading_no_total_can_hold_is_unknown_and_the_node_keeps_counting(
        odd: float, tmp_path: Path) -> None:
    """A formula or a JSON payload upstream can give any number; one that would make a
    total infinite used to fail the node at every save (a state holds no Infinity)."""
    async def scenario() -> None:
        async with NodeHarness(COUNTER.format(metering="net"), state_dir=tmp_path) as h:
            await feed_hour(h, (1000.0, odd, odd), every_s=5.0)
            got = totals(h)
            assert got["L1/energy_forward"] == pytest.approx(1.0)
            assert all(math.isfinite(v) for v in got.values()), got
            assert h.runner("energy").restarts == 0
            assert h.node_status.level == "ok"

    run(scenario())
    saved = json.loads(next(tmp_path.rglob("energy.json")).read_text())
    assert saved["forward"]["L1/power"] == pytest.approx(1.0)



FAST = """
    id: energy
    type: energy.counter
    phases: [L1/power, L2/power]
    emit_every_ms: 1000
"""


def sent_forward(h: NodeHarness) -> list[float]:
    return [m.value for m in h.messages() if m.topic == "energy_forward"]  # type: ignore[misc]


def test_totals_go_out_with_the_reading_not_on_a_timer() -> None:
    """A poll's readings are counted and the changed totals sent in the turn they came,
    so a D-Bus service signals them with the meter's other values; between readings
    nothing is sent, however long."""
    async def scenario() -> None:
        async with NodeHarness(FAST) as h:
            await h.advance(300)
            await h.send("L1/power", 3600.0)  # 1 Wh per second
            await h.send("L2/power", 0.0)
            start = len(sent_forward(h))
            await h.advance(1000)
            before = len(h.messages())
            await h.send("L1/power", 3600.0)
            await h.send("L2/power", 0.0)
            await h.settle()
            assert sent_forward(h)[start:] == [pytest.approx(0.001)]
            assert {m.topic for m in h.messages()[before:]} == {
                "energy_forward", "L1/energy_forward"}  # only what changed
            quiet = len(h.messages())
            await h.advance(20_000)  # no readings: no timer sends anything
            assert len(h.messages()) == quiet

    run(scenario())


def test_readings_faster_than_the_period_are_sent_once_when_it_ends() -> None:
    async def scenario() -> None:
        async with NodeHarness(FAST) as h:
            await h.send("L2/power", 0.0)
            await h.advance(100)  # 0.1 s into the first period of the grid
            await h.send("L1/power", 3600.0)
            await h.settle()
            first = len(sent_forward(h))
            for _ in range(5):  # five more readings within the same period
                await h.advance(100)
                await h.send("L1/power", 3600.0)
            await h.settle()
            assert len(sent_forward(h)) == first  # they wait for the period's end
            await h.advance(400)  # the grid tick at 1.0 s
            assert sent_forward(h)[first:] == [pytest.approx(0.0005)]  # 0.5 s of 1 Wh/s, once
            await h.advance(50)
            await h.send("L1/power", 3600.0)  # the next period's first reading: at once
            await h.settle()
            assert sent_forward(h)[first + 1:] == [pytest.approx(0.00095)]  # 0.1 to 1.05 s

    run(scenario())
