"""Deterministic daily profiles: PV production and house load, drawn from a seed.

Every value is a pure function of the seed and the simulated time, so a series does
not depend on how finely a caller steps through the day. Noise is smooth: a random
value per bucket of time, interpolated linearly between buckets.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["DAY_S", "LoadProfile", "Phases", "PvProfile", "smooth_noise"]

DAY_S = 86_400.0

Phases = tuple[float, float, float]
"""One value per phase: L1, L2, L3."""


def _bucket_value(seed: int, stream: str, bucket: int) -> float:
    return random.Random(f"{seed}:{stream}:{bucket}").uniform(-1.0, 1.0)


def smooth_noise(seed: int, stream: str, t_s: float, period_s: float) -> float:
    """Noise in [-1, 1] that drifts over `period_s`; equal arguments give equal values."""
    position = t_s / period_s
    bucket = math.floor(position)
    frac = position - bucket
    start = _bucket_value(seed, stream, bucket)
    end = _bucket_value(seed, stream, bucket + 1)
    return start + (end - start) * frac


@dataclass(frozen=True, kw_only=True)
class PvProfile:
    """A clear-sky bell between sunrise and sunset, dimmed by passing clouds."""

    peak_w: float
    sunrise_h: float = 6.0
    sunset_h: float = 20.0
    clouds: float = 0.3
    """the largest share of output a cloud takes away (0 = always clear sky)"""
    cloud_period_s: float = 600.0

    def __post_init__(self) -> None:
        if self.peak_w < 0:
            raise ValueError(f"PV peak must not be negative, got {self.peak_w} W")
        if not 0 <= self.sunrise_h < self.sunset_h <= 24:
            raise ValueError(
                f"need 0 <= sunrise < sunset <= 24, got {self.sunrise_h} and {self.sunset_h}")
        if not 0 <= self.clouds <= 1:
            raise ValueError(f"clouds is a share between 0 and 1, got {self.clouds}")

    def power_w(self, seed: int, stream: str, t_s: float) -> float:
        """Output in W at simulated time `t_s` (seconds since midnight of day one)."""
        hour = (t_s % DAY_S) / 3600.0
        if not self.sunrise_h < hour < self.sunset_h:
            return 0.0
        angle = math.pi * (hour - self.sunrise_h) / (self.sunset_h - self.sunrise_h)
        clear = self.peak_w * float(math.sin(angle) ** 1.5)
        shade = (smooth_noise(seed, stream, t_s, self.cloud_period_s) + 1.0) / 2.0
        return clear * (1.0 - self.clouds * shade)


_HOUSE: tuple[tuple[float, float], ...] = (
    (0.0, 250.0), (5.5, 250.0), (6.5, 700.0), (8.5, 650.0), (9.5, 400.0),
    (12.0, 650.0), (13.5, 400.0), (17.0, 500.0), (18.5, 1100.0), (21.5, 900.0),
    (23.0, 350.0), (24.0, 250.0),
)


@dataclass(frozen=True, kw_only=True)
class LoadProfile:
    """A household's base load over the day, with noise and short appliance spikes."""

    shape: tuple[tuple[float, float], ...] = _HOUSE
    """(hour, W) points, interpolated linearly; must start at 0 h and end at 24 h"""
    noise: float = 0.15
    """the largest deviation from the shape, as a share of it"""
    noise_period_s: float = 60.0
    phase_shares: Phases = (0.5, 0.3, 0.2)
    spike_w: float = 2000.0
    """an appliance (kettle, oven) that runs for one spike period now and then"""
    spike_chance: float = 0.06
    spike_period_s: float = 300.0

    def __post_init__(self) -> None:
        hours = [hour for hour, _ in self.shape]
        if len(hours) < 2 or hours[0] != 0 or hours[-1] != 24 or hours != sorted(hours):
            raise ValueError("load shape needs ascending hours from 0 to 24")
        if any(share < 0 for share in self.phase_shares) or sum(self.phase_shares) <= 0:
            raise ValueError(f"phase shares must be >= 0 and not all 0: {self.phase_shares}")

    def base_w(self, hour: float) -> float:
        for (h0, w0), (h1, w1) in zip(self.shape, self.shape[1:], strict=False):
            if h0 <= hour <= h1:
                return w0 if h1 == h0 else w0 + (w1 - w0) * (hour - h0) / (h1 - h0)
        return self.shape[-1][1]

    def phases_w(self, seed: int, t_s: float) -> Phases:
        """Per-phase load in W at simulated time `t_s` (seconds since midnight of day one)."""
        base = self.base_w((t_s % DAY_S) / 3600.0)
        total_share = sum(self.phase_shares)
        loads = []
        for index, share in enumerate(self.phase_shares):
            wobble = smooth_noise(seed, f"load{index}", t_s, self.noise_period_s)
            loads.append(base * share / total_share * (1.0 + self.noise * wobble))
        bucket = math.floor(t_s / self.spike_period_s)
        dice = random.Random(f"{seed}:spike:{bucket}")
        if dice.random() < self.spike_chance:
            loads[dice.randrange(3)] += self.spike_w
        return (loads[0], loads[1], loads[2])
