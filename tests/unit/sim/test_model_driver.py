"""ModelDriver steps the model in real (scaled) time and stops with its block."""

from __future__ import annotations

import asyncio

import pytest
from conftest import eventually, run

from sim import EnergyModel, ModelDriver, ModelParams


def test_driver_advances_scaled_time_until_the_block_ends() -> None:
    model = EnergyModel(ModelParams(time_scale=600.0))
    start = model.snapshot.time_s

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with ModelDriver(model, interval_s=0.02) as driver:
            await eventually(lambda: driver.steps >= 3)
            elapsed = loop.time() - began
        assert model.snapshot.time_s - start == pytest.approx(elapsed * 600.0, rel=0.5)
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "sim/model:step"]
    run(scenario())


def test_driver_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        ModelDriver(EnergyModel(), interval_s=0)
