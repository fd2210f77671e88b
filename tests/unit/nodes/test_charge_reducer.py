"""energy.charge_reducer: the feed-in controller on a plant model, and the node around it.

The plant: battery current = (dc_pv - load - feed_in) / voltage, the feed-in acting at
once (the Multi settles within one 5 s cycle) or one cycle late (a slow grid meter).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from conftest import run

from flowengine.errors import ConfigErrors
from flowengine.testing import NodeHarness
from nodes.energy.charge_reducer import FeedInController
from nodes.logic.expression import Expression

V = 52.0


def plant(pv: float, load: float, feed_in: float, voltage: float = V) -> float:
    return (pv - load - feed_in) / voltage


def controller(**kwargs: float) -> FeedInController:
    return FeedInController(max_feed_in_w=kwargs.pop("max_feed_in_w", 5000.0), **kwargs)


class Site:
    """The plant around one controller; the feed-in it last answered stays applied."""

    def __init__(self, c: FeedInController, *, delay: int = 0) -> None:
        self.c = c
        self.delay = delay
        self.applied = [0.0] * (delay + 1)

    def drive(self, cycles: int, *, pv: float = 5000.0, load: float = 500.0,
              desired: float = 30.0) -> tuple[list[float], list[float | None]]:
        """The battery current and the controller's answer of each cycle."""
        currents: list[float] = []
        answers: list[float | None] = []
        for _ in range(cycles):
            current = plant(pv, load, self.applied[-1 - self.delay])
            answer = self.c.update(current, V, desired)
            self.applied.append(answer or 0.0)
            currents.append(current)
            answers.append(answer)
        return currents, answers


def drive(c: FeedInController, cycles: int, *, delay: int = 0,
          **kwargs: float) -> tuple[list[float], list[float | None]]:
    """A fresh site driven for `cycles`."""
    return Site(c, delay=delay).drive(cycles, **kwargs)


def settled_after(currents: list[float], target: float, tolerance: float) -> int | None:
    """The first cycle from which every current is within the tolerance of the target."""
    return next((i for i in range(len(currents))
                 if all(abs(c - target) <= tolerance for c in currents[i:])), None)


# -- the controller ------------------------------------------------------------------------------

def test_it_settles_within_one_amp_in_ten_cycles_without_overshoot() -> None:
    # 57 A above the desired 30 A: DC PV 5000 W, load 500 W, 52 V
    currents, answers = drive(controller(), 40)
    assert currents[0] == pytest.approx(86.5, abs=0.1)
    settled = settled_after(currents, 30.0, 1.0)
    assert settled is not None and settled <= 10
    assert min(currents) >= 30.0 - 1.0  # it does not overshoot below the desired current
    assert answers[-1] == pytest.approx(5000 - 500 - 30 * V, abs=V)  # about 2940 W


def test_a_feed_in_acting_one_cycle_late_still_settles_without_oscillating() -> None:
    currents, _ = drive(controller(), 60, delay=1)
    settled = settled_after(currents, 30.0, 1.0)
    assert settled is not None and settled <= 12
    assert min(currents) >= 30.0 - 5.0
    tail = currents[-20:]
    assert max(tail) - min(tail) <= 1.0


def test_the_feed_in_grows_by_at_most_max_step_per_cycle() -> None:
    _, answers = drive(controller(max_step_w=400.0), 10)
    feed = [0.0] + [a or 0.0 for a in answers]
    assert max(b - a for a, b in pairwise(feed)) <= 400.0 + 1e-9


def test_the_answer_is_never_negative_so_the_request_is_never_positive() -> None:
    site = Site(controller())
    site.drive(20)
    for pv in (3000.0, 1000.0, 0.0, 0.0, 0.0, 6000.0, 0.0):
        _, answers = site.drive(5, pv=pv)
        assert all(a is None or a > 0 for a in answers)


def test_below_the_desired_current_with_no_feed_in_it_revokes() -> None:
    c = controller()
    _, answers = drive(c, 5, pv=1500.0)  # (1500 - 500) / 52 = 19 A < 30 A
    assert answers == [None] * 5
    assert c.feed_in_w == 0.0


def test_it_backs_off_as_the_current_drops_and_then_revokes() -> None:
    c = controller()
    site = Site(c)
    _, answers = site.drive(20)
    before = answers[-1]
    assert before is not None
    _, after = site.drive(20, pv=3000.0)  # a cloud: 2000 W less excess
    assert after[0] is not None and after[0] < before
    assert after[-1] == pytest.approx(3000 - 500 - 30 * V, abs=V)
    _, last = site.drive(10, pv=1000.0)  # no excess left
    assert last[-1] is None and c.feed_in_w == 0.0


def test_at_its_limit_the_feed_in_does_not_wind_up() -> None:
    site = Site(controller(max_feed_in_w=2000.0))
    currents, answers = site.drive(30, pv=8000.0)  # needs 5940 W, may give 2000 W
    assert max(a or 0.0 for a in answers) == 2000.0
    assert currents[-1] > 30.0
    _, after = site.drive(1, pv=2800.0)  # now 2000 W is too much: it backs off at once
    assert after[0] is not None and after[0] < 2000.0


def test_the_target_follows_the_soc_formula() -> None:
    formula = Expression("max(100 - SOC, 30)")
    site = Site(controller())
    desired = float(formula.evaluate({"SOC": 50}))  # type: ignore[arg-type]
    currents, _ = site.drive(30, desired=desired)
    assert desired == 50.0 and currents[-1] == pytest.approx(50.0, abs=1.0)
    desired = float(formula.evaluate({"SOC": 65}))  # type: ignore[arg-type]
    currents, _ = site.drive(30, desired=desired)
    assert desired == 35.0 and currents[-1] == pytest.approx(35.0, abs=1.0)
    assert min(currents) >= 35.0 - 1.0


# -- the node --------------------------------------------------------------------------------------

REDUCER = """
    id: reducer
    type: energy.charge_reducer
    desired_current: {formula}
    max_feed_in_w: 5000
    interval_ms: 5000
"""


def harness(tmp_path: Path, formula: str = "max(100 - SOC, 30)") -> NodeHarness:
    return NodeHarness(REDUCER.format(formula=formula), tmp_dir=tmp_path)


async def cycle(h: NodeHarness, current: float | None, *, voltage: float | None = V,
                soc: float | None = 70.0) -> None:
    await h.send("battery_current", current)
    await h.send("battery_voltage", voltage)
    await h.send("soc", soc)
    await h.advance(5000)


def test_the_node_converges_on_the_plant_and_never_requests_import(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            feed_in = 0.0
            currents = []
            for _ in range(30):
                current = plant(5000.0, 500.0, feed_in)
                currents.append(current)
                await cycle(h, current)  # SoC 70 %: desired max(30, 30) = 30 A
                values = h.values()
                feed_in = -float(values[-1]) if values and values[-1] is not None else 0.0
            values = h.values()
            assert all(v is None or (isinstance(v, int) and v < 0) for v in values)
            assert values[-1] == pytest.approx(-(5000 - 500 - 30 * V), abs=V)
            assert abs(currents[-1] - 30.0) <= 1.0
            assert all(a != b for a, b in pairwise(values))  # changes only
            assert h.node_status.level == "ok"
            assert "desired 30.0 A" in h.node_status.text

    run(scenario())


def test_the_node_sends_only_changes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            for _ in range(4):
                await cycle(h, 10.0)  # below the desired 30 A: revoked, once
            assert h.values() == [None]
            assert h.node_status.text.startswith("no request")

    run(scenario())


def test_below_the_desired_current_the_node_revokes_its_feed_in(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await cycle(h, 60.0)
            assert h.values()[-1] == -round(min(0.65 * 30 * V, 1000))  # first step, bounded
            for _ in range(10):
                await cycle(h, 5.0)
            assert h.values()[-1] is None
            assert h.values().count(None) == 1

    run(scenario())


def test_a_failing_formula_revokes_with_an_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "100 / (SOC - 50)") as h:
            await cycle(h, 60.0, soc=70.0)  # desired 5 A
            assert isinstance(h.values()[-1], int) and h.values()[-1] < 0
            await cycle(h, 60.0, soc=50.0)  # division by zero
            assert h.values()[-1] is None
            assert h.node_status.level == "error"
            assert "desired_current failed" in h.node_status.text
            assert h.node.controller.feed_in_w == 0.0

    run(scenario())


@pytest.mark.parametrize(("voltage", "soc", "why"), [
    (None, 70.0, "invalid input battery_voltage"),
    (0.0, 70.0, "battery_voltage 0 V"),
    (V, 150.0, "soc 150 %"),
])
def test_an_invalid_input_revokes_with_an_error(voltage: float | None, soc: float,
                                                why: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await cycle(h, 60.0)
            assert h.values()[-1] is not None
            await cycle(h, 60.0, voltage=voltage, soc=soc)
            assert h.values()[-1] is None
            assert h.node_status.level == "error"
            assert why in h.node_status.text

    run(scenario())


def test_before_every_input_came_it_waits_and_revokes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.send("battery_current", 60.0)
            await h.advance(5000)
            assert h.values() == [None]
            assert h.node_status.level == "warning"
            assert "waiting for battery_voltage, soc" in h.node_status.text

    run(scenario())


def test_a_name_other_than_soc_is_refused_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match=r"flow\.yaml:\d+:\d+: .*unknown name 'soc'.*"
                                           r"did you mean 'SOC'"):
        run(harness(tmp_path, "max(100 - soc, 30)").__aenter__())
