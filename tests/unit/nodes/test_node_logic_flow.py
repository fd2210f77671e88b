"""The logic nodes together: a lost input turns into invalid at the end of a chain."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flowengine.registry import Registry
from flowengine.testing import FlowHarness

FLOW = """
id: charge-limit
nodes:
  - id: battery
    type: join
    topics: [soc, power]
    max_age_ms: 5000
    to: limit
  - id: limit
    type: formula
    expression: clamp(5000 - 40 * soc, 0, 5000) if power < 10000 else 0
    output: limit
    to: quiet
  - id: quiet
    type: filter
    deadband: 100
    to: kw
  - id: kw
    type: change
    topic: "{topic}_kw"
    scale: 0.001
    to: [show, pace]
  - id: pace
    type: delay
    mode: rate
    delay_ms: 1000
  - id: show
    type: log
"""


def test_logic_chain_passes_values_and_turns_a_lost_input_invalid(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FlowHarness(FLOW, registry=Registry.default(plugins=False),
                               tmp_dir=tmp_path) as h:
            await h.send("battery", "power", 300)
            await h.send("battery", "soc", 50)
            await h.send("battery", "soc", 51)   # 3000 -> 2960: inside the deadband
            await h.send("battery", "soc", 60)   # 2600
            assert [(m.topic, m.value) for m in h.messages("kw")] == \
                [("limit_kw", 3.0), ("limit_kw", 2.6)]
            await h.advance(5000)
            assert h.messages("kw")[-1].value is None
            assert h.status("battery").text == "stale: power, soc"
            assert [m.value for m in h.messages("pace")] == [3.0, 2.6, None]
    asyncio.run(scenario())
