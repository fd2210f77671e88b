"""The model is deterministic: the same seed and time scale give the same series."""

from __future__ import annotations

from sim import EnergyModel, ModelParams, Snapshot


def series(params: ModelParams, steps: int = 600, dt: float = 30.0) -> list[Snapshot]:
    model = EnergyModel(params)
    return [model.step(dt) for _ in range(steps)]


def test_same_seed_gives_the_same_series() -> None:
    assert series(ModelParams(seed=3)) == series(ModelParams(seed=3))


def test_another_seed_gives_another_series() -> None:
    first = [s.load_w for s in series(ModelParams(seed=3))]
    second = [s.load_w for s in series(ModelParams(seed=4))]
    assert first != second


def test_same_seed_and_time_scale_give_the_same_series() -> None:
    fast = ModelParams(seed=3, time_scale=60.0)
    assert series(fast, dt=0.5) == series(fast, dt=0.5)


def test_profiles_do_not_depend_on_the_step_size() -> None:
    coarse = series(ModelParams(seed=5), steps=10, dt=60.0)
    fine = series(ModelParams(seed=5), steps=60, dt=10.0)[5::6]
    assert [s.load_l for s in coarse] == [s.load_l for s in fine]
    assert [s.pv_w for s in coarse] == [s.pv_w for s in fine]
