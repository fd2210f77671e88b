"""Ready-made situations of the simulated site, for tests and experiments."""

from __future__ import annotations

from sim.model import EnergyModel, ModelParams
from sim.profiles import LoadProfile

__all__ = ["mixed_phases_noon"]


def mixed_phases_noon(seed: int = 11, *, settle_s: float = 600.0) -> EnergyModel:
    """A sunny noon with a full battery and a 3.5 kW oven on L1: L1 imports from the grid
    while L2 and L3 export — the case where gross and net metering differ."""
    params = ModelParams(seed=seed, start_hour=12.5, initial_soc=100.0,
                         load=LoadProfile(phase_shares=(0.8, 0.15, 0.05)))
    model = EnergyModel(params)
    model.add_load("oven", 3500.0, phases=(1,), on=True)
    model.step(settle_s)
    return model
