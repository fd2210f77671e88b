"""energy.counter: outputs counted from a phase the source says is unknown are invalid."""

from __future__ import annotations

import pytest
from conftest import run

from flowengine.testing import NodeHarness

COUNTER = """
    id: energy
    type: energy.counter
    emit_every_ms: 1000
"""


def last(h: NodeHarness) -> dict[str, object]:
    return {m.topic: m.value for m in h.messages()}


def test_an_unknown_phase_makes_its_counters_and_the_totals_invalid_until_it_is_read() -> None:
    async def scenario() -> None:
        async with NodeHarness(COUNTER) as h:
            assert last(h)["energy_forward"] == 0.0  # before any reading: the totals
            for _ in range(4):
                for phase in ("L1", "L2", "L3"):
                    await h.send(f"{phase}/power", 3600.0)
                await h.advance(1000)
            await h.send("L2/power", None)  # the meter marks L2 invalid
            counted = h.node.totals()
            await h.advance(1000)
            sent = last(h)
            assert sent["energy_forward"] is None and sent["energy_reverse"] is None
            assert sent["L2/energy_forward"] is None and sent["L2/energy_reverse"] is None
            assert sent["L1/energy_forward"] == pytest.approx(counted["L1/energy_forward"])
            await h.send("L2/power", 3600.0)
            await h.advance(1000)
            sent = last(h)
            assert sent["L2/energy_forward"] == pytest.approx(counted["L2/energy_forward"])
            assert isinstance(sent["energy_forward"], float)
            assert sent["energy_forward"] >= counted["energy_forward"]  # kept, not reset

    run(scenario())
