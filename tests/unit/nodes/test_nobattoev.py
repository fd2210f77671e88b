"""energy.nobattoev: grid loss, the relay gate, absent and lost paths, the request, changes only."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run

from flowengine.errors import ConfigErrors
from flowengine.model import JsonValue
from flowengine.testing import NodeHarness

NODE = """\
id: nobattoev
type: energy.nobattoev
interval_ms: 2000
"""


def harness(tmp_path: Path, extra: str = "") -> NodeHarness:
    return NodeHarness(NODE + extra, tmp_dir=tmp_path)


async def system(h: NodeHarness, *, consumption: tuple[JsonValue, ...] = (1000.0, 0.0, 0.0),
                 pv_grid: tuple[JsonValue, ...] = (0.0, 0.0, 0.0), pv_dc: JsonValue = 0.0,
                 phases: JsonValue = 3, ev: JsonValue = 0.0) -> None:
    """One set of system values and the EV charger's power (as the two sources send them)."""
    for n, value in enumerate(consumption, 1):
        await h.send(f"consumption_l{n}", value)
    for n, value in enumerate(pv_grid, 1):
        await h.send(f"pv_grid_l{n}", value)
    await h.send("pv_dc", pv_dc)
    await h.send("input_phases", phases)
    await h.send("ev_power", ev, meta={"service": "com.victronenergy.evcharger.ev1"})


async def cycle(h: NodeHarness) -> None:
    await h.advance(2000)


def test_the_ev_gets_what_the_pv_leaves_after_the_house_from_the_grid(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            # house 1000 W + EV 7000 W = 8000 W; PV 1200 W AC + 800 W DC = 2000 W
            await system(h, consumption=(8000.0, 0.0, 0.0), pv_grid=(400.0, 400.0, 400.0),
                         pv_dc=800.0, ev=7000.0)
            await cycle(h)
            # the house's 1000 W from PV, the other 1000 W of PV to the EV: 6000 W
            assert h.values() == [6000]
            assert h.node_status.level == "ok"
            assert h.node_status.text == ("request 6000 W from the grid (EV 7000 W, "
                                          "consumption 8000 W, PV 2000 W)")

    run(scenario())


def test_with_little_pv_the_whole_ev_power_is_requested(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            # 3 phases: house 500+600+400, EV 3680.4 on L1; PV 300 W: less than the house
            await system(h, consumption=(4180.4, 600.0, 400.0), pv_dc=300.0, ev=3680.4)
            await cycle(h)
            assert h.values() == [3680]  # whole W

    run(scenario())


def test_when_the_pv_covers_the_consumption_or_the_ev_is_idle_it_revokes(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await system(h, consumption=(8000.0, 0.0, 0.0), ev=7000.0)
            await cycle(h)
            await system(h, consumption=(8000.0, 0.0, 0.0), pv_dc=9000.0, ev=7000.0)
            await cycle(h)
            assert h.values() == [7000, None]
            assert "the PV covers the consumption" in h.node_status.text
            await system(h, consumption=(1000.0, 0.0, 0.0), ev=0.0)
            await cycle(h)
            assert h.values() == [7000, None]  # None once
            assert "the EV is not charging" in h.node_status.text

    run(scenario())


def test_it_sends_only_changes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await system(h, consumption=(8000.0, 0.0, 0.0), ev=7000.0)
            for _ in range(5):
                await cycle(h)
            await system(h, consumption=(8000.2, 0.0, 0.0), ev=7000.2)  # rounds the same
            await cycle(h)
            await system(h, consumption=(9000.0, 0.0, 0.0), ev=8000.0)
            await cycle(h)
            assert h.values() == [7000, 8000]

    run(scenario())


def test_the_first_cycle_sends_a_revoke_so_nothing_old_stays(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await system(h, ev=0.0)
            await cycle(h)
            await cycle(h)
            assert h.values() == [None]

    run(scenario())


def test_a_path_that_never_had_a_value_counts_as_zero(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            # a single-phase site without AC PV: systemcalc leaves these invalid
            await system(h, consumption=(8000.0, None, None), pv_grid=(None, None, None),
                         pv_dc=None, ev=7000.0)
            await h.send("pv_genset_l1", None)
            await cycle(h)
            assert h.values() == [7000]
            assert h.node_status.level == "ok"

    run(scenario())


@pytest.mark.parametrize(("lost", "value"), [("consumption_l1", 8000.0),
                                             ("consumption_l2", 0.0)])
def test_a_consumption_phase_that_had_a_value_and_is_now_invalid_revokes(
        lost: str, value: float, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await system(h, consumption=(8000.0, 0.0, 0.0), ev=7000.0)
            await cycle(h)
            await h.send(lost, None)
            await cycle(h)
            assert h.values() == [7000, None]
            assert h.node_status.level == "error"
            assert h.node_status.text == f"no request: invalid input {lost}"
            await h.send(lost, value)
            await cycle(h)
            assert h.values() == [7000, None, 7000]

    run(scenario())


def test_an_invalid_ev_power_revokes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await system(h, consumption=(8000.0, 0.0, 0.0), ev=7000.0)
            await cycle(h)
            await h.send("ev_power", None, meta={"service": "com.victronenergy.evcharger.ev1"})
            await cycle(h)
            assert h.values() == [7000, None]
            assert "ev_power of com.victronenergy.evcharger.ev1" in h.node_status.text

    run(scenario())


def test_two_chargers_add_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await system(h, consumption=(10000.0, 0.0, 0.0), ev=4000.0)
            await h.send("ev_power", 5000.0, meta={"service": "com.victronenergy.evcharger.ev2"})
            await cycle(h)
            assert h.values() == [9000]

    run(scenario())


@pytest.mark.parametrize("phases", [0, None])
def test_grid_loss_revokes_with_a_warning_logged_once(phases: JsonValue, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await system(h, consumption=(8000.0, 0.0, 0.0), ev=7000.0)
            await cycle(h)
            await h.send("input_phases", phases)
            for _ in range(5):
                await cycle(h)
            assert h.values() == [7000, None]
            assert h.node_status.level == "warning"
            assert "grid lost" in h.node_status.text
            await h.send("input_phases", 3)
            await cycle(h)
            assert h.values() == [7000, None, 7000]

    with caplog.at_level("INFO"):
        run(scenario())
    lost = [r for r in caplog.records if "grid lost" in r.getMessage()]
    back = [r for r in caplog.records if "grid back" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelname == "WARNING"
    assert len(back) == 1


def test_the_relay_gate_revokes_while_the_relay_is_off(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "relay: 1\n") as h:
            await system(h, consumption=(8000.0, 0.0, 0.0), ev=7000.0)
            await cycle(h)
            assert h.values() == [None]  # relay 1 not known yet: closed
            assert h.node_status.text == "no request: relay 1 is invalid"
            await h.send("relay_1", 1)
            await cycle(h)
            await h.send("relay_0", 0)  # another relay: no matter
            await cycle(h)
            assert h.values() == [None, 7000]
            await h.send("relay_1", 0)
            await cycle(h)
            assert h.values() == [None, 7000, None]
            assert h.node_status.text == "no request: relay 1 is off"

    run(scenario())


def test_without_a_relay_it_is_always_active(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.send("relay_0", 0)
            await system(h, consumption=(8000.0, 0.0, 0.0), ev=7000.0)
            await cycle(h)
            assert h.values() == [7000]

    run(scenario())


def test_before_the_system_values_come_it_waits(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.send("ev_power", 7000.0)
            await cycle(h)
            assert h.values() == [None]
            assert h.node_status.level == "warning"
            assert h.node_status.text == "no request: waiting for input_phases"

    run(scenario())


def test_a_relay_no_source_emits_is_refused_at_validate(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("""\
id: check
nodes:
  - id: system
    type: dbus.source
    service: com.victronenergy.system
    paths: {input_phases: /Ac/ActiveIn/NumberOfPhases, ev_power: /Ac/Power}
    to: [nobattoev]
  - id: nobattoev
    type: energy.nobattoev
    relay: 2
""")
    from flowengine.loader import load_flow
    from flowengine.plan import plan_flow
    from flowengine.registry import Registry

    with pytest.raises(ConfigErrors, match=r"flow\.yaml:10:\d+: .*'relay_2'"):
        plan_flow(load_flow(flow), Registry.default(plugins=False))


@pytest.mark.parametrize(("lost", "after"), [("pv_grid_l2", 6500), ("pv_dc", 6500),
                                             ("pv_output_l1", 5000)])
def test_a_pv_path_that_goes_invalid_counts_as_0_not_a_revoke(lost: str, after: int,
                                                             tmp_path: Path) -> None:
    """A PV inverter that leaves the bus at night: the EV still charges from the grid."""
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            # house 1000 W + EV 7000 W; PV 1500 W AC on L2 + 1500 W DC: 2000 W of it to
            # the EV, so 5000 W from the grid
            await system(h, consumption=(8000.0, 0.0, 0.0), pv_grid=(0.0, 1500.0, 0.0),
                         pv_dc=1500.0, ev=7000.0)
            await h.send("pv_output_l1", 0.0)
            await cycle(h)
            assert h.values()[-1] == 5000
            await h.send(lost, None)  # 1500 W less PV (or 0 W less): more from the grid
            await cycle(h)
            assert h.values()[-1] == after and h.node_status.level == "ok"
    run(scenario())
