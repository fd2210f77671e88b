"""Simulated site for tests and the demo: a physical model and device simulators.

`EnergyModel` is the deterministic site (PV, house load, battery, ESS, grid);
`sim.devices` serves Shelly meters and relays over real loopback sockets, with
readings taken from the same model.
"""

from sim.driver import ModelDriver
from sim.model import EnergyModel, EssSettings, ExtraLoad, ModelParams, Snapshot
from sim.profiles import LoadProfile, Phases, PvProfile
from sim.scenarios import mixed_phases_noon

__all__ = [
    "EnergyModel",
    "EssSettings",
    "ExtraLoad",
    "LoadProfile",
    "ModelDriver",
    "ModelParams",
    "Phases",
    "PvProfile",
    "Snapshot",
    "mixed_phases_noon",
]
