"""The energy nodes take their inputs directly: the emitting node calls `receive` in its
own turn (no queue, no task switch per system value), as their inputs only set values
that a timer's cycle reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run

from flowengine.model import Message
from flowengine.node import Node
from flowengine.registry import Registry
from flowengine.testing import NodeHarness


@pytest.mark.parametrize("type_name", ["energy.nobattoev", "energy.charge_reducer",
                                       "energy.distributor"])
def test_the_type_takes_inputs_directly(type_name: str) -> None:
    cls = Registry.default().get(type_name)
    assert cls.receive is not Node.receive
    assert not cls.breaks_cycles


@pytest.mark.parametrize("node", [
    "id: n\ntype: energy.nobattoev\ninterval_ms: 2000\n",
    "id: n\ntype: energy.charge_reducer\ndesired_current: max(100 - SOC, 30)\nmax_feed_in_w: 5000\n"
    "interval_ms: 5000\n",
])
def test_every_input_is_taken_in_the_call(tmp_path: Path, node: str) -> None:
    async def scenario() -> None:
        async with NodeHarness(node, tmp_dir=tmp_path) as h:
            for topic, value in [("soc", 50.0), ("pv_dc", 100.0), ("battery_current", 2.5),
                                 ("unknown", 1), ("soc", None)]:
                assert h.node.receive("in", Message(topic, value, 0.0, 0.0)) is True
    run(scenario())
