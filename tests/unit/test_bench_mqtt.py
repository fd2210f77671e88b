"""bench/mqtt.py: what it counts, the ratios it prints, and the flows it runs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_mqtt", ROOT / "bench" / "mqtt.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Client:
    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []

    def publish(self, topic: str, payload: str) -> None:
        self.published.append((topic, payload))


def contender(full: float, rate: float, rss: float = 50.0) -> dict[str, Any]:
    return {"cpu_us_per_msg": full, "rate_cpu_us_per_msg": rate, "msg_per_s": 1e4,
            "rss_mb": rss}


def test_index_of_reads_every_contenders_payload(bench: ModuleType) -> None:
    # 7 * 1.5 + 3: Python's str (gmqtt), JSON (mqtt.out), JavaScript's String (Node-RED)
    assert [bench.index_of(p) for p in (b"13.5", b"13.5e0", b"6", b"6.0")] == [7, 7, 2, 2]


def test_burst_counts_answers_of_its_own_phase_and_each_topics_last(
        bench: ModuleType) -> None:
    load = bench.Load(port=0)
    load.client = Client()
    load.begin("b", counted=True, total=2 * bench.TOPICS)
    for i in range(2 * bench.TOPICS):
        load.send(f"b{i % bench.TOPICS}", i)
    load._on_message(None, "out/l3", b"4.5", 0, None)  # late answer of the fixed-rate run
    for i in range(bench.TOPICS // 2, 2 * bench.TOPICS):  # the first 32 were coalesced
        load._on_message(None, f"out/b{i % bench.TOPICS}", str(i * 1.5 + 3).encode(), 0, None)
    assert (load.sent, load.count) == (128, 96)
    assert len(load.last_per_topic) == bench.TOPICS
    assert len(load.latencies) == 96


def test_ratios_meet_or_miss_issue_17s_goals(bench: ModuleType) -> None:
    results = {"runtime": contender(full=26, rate=100, rss=40),
               "gmqtt": contender(full=20, rate=90, rss=20),
               "node-red": contender(full=30, rate=120, rss=100),
               "aiomqtt": contender(full=100, rate=200)}
    table = bench.ratios(results, rate=1000)
    assert table["gmqtt"]["cpu_us_per_msg"] == {"ratio": 1.3, "goal": 1.3, "meets": True}
    assert table["gmqtt"]["rate_cpu_us_per_msg"]["meets"] is True  # 1.11x <= 1.2x
    assert table["node-red"]["cpu_us_per_msg"]["meets"] is False  # 0.87x > 0.8x
    assert table["node-red"]["rss_mb"] == 0.4
    assert table["aiomqtt"]["cpu_us_per_msg"]["goal"] is None


def test_fixed_rate_goal_holds_only_at_1000_msg_per_s(bench: ModuleType) -> None:
    results = {"runtime": contender(full=26, rate=100), "gmqtt": contender(full=20, rate=90)}
    row = bench.ratios(results, rate=500)["gmqtt"]
    assert row["rate_cpu_us_per_msg"]["goal"] is None
    assert row["cpu_us_per_msg"]["goal"] == 1.3


@pytest.mark.parametrize(("peaks", "bounded"), [((55.0, 55.5), True), ((50.3, 50.9), True),
                                                 ((52.0, 54.0), False)])
def test_memory_is_bounded_when_the_double_burst_does_not_double_the_peak(
        bench: ModuleType, peaks: tuple[float, float], bounded: bool) -> None:
    runs = [{"rss_before_mb": 50.0, "rss_peak_mb": peaks[0]},
            {"rss_before_mb": peaks[0], "rss_peak_mb": peaks[1]}]
    assert bench.memory_bounded(runs)[2] is bounded


def test_runtime_flows_validate(bench: ModuleType, tmp_path: Path) -> None:
    sites = []
    for name in ("runtime", "runtime-events"):
        (tmp_path / name).mkdir()
        bench.contender_command(name, 1883, tmp_path / name)
        sites.append(str(tmp_path / name / "site.yaml"))
    assert "keep: every" in (tmp_path / "runtime-events" / "bench.yaml").read_text()
    done = subprocess.run([sys.executable, str(ROOT / "esess-flowctl"), "validate", *sites],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_setup_installs_the_bench_extras_packages_not_the_project(bench: ModuleType) -> None:
    # `pip install -e '.[bench]'` would point the venv at the checkout that ran --setup
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["bench"]
    packages = bench.bench_requirements()
    assert packages == extra and "aiomqtt" in packages
    assert not any(str(ROOT) in p or p.startswith((".", "-")) for p in packages)


def figures(cpu: float, rate_cpu: float, arrived: int = 1000, **extra: Any) -> dict[str, Any]:
    return {"msg_per_s": 1e4, "cpu_us_per_msg": cpu, "rate_cpu_us_per_msg": rate_cpu,
            "p50_ms": 1.0, "p99_ms": 2.0, "rss_idle_mb": 35.0, "rss_mb": 36.0,
            "rate_sent": 1000, "rate_arrived": arrived, **extra}


def test_the_ratio_that_counts_is_the_median_of_the_rounds(bench: ModuleType) -> None:
    # runtime / node-red at 1000 msg/s in the rounds: 0.9 (alone it would miss), 0.7, 0.75
    rounds = [{"runtime": figures(20, 90), "node-red": figures(40, 100)},
              {"runtime": figures(22, 70), "node-red": figures(40, 100)},
              {"runtime": figures(21, 75), "node-red": figures(40, 100)}]
    cell = bench.round_ratios(rounds, rate=1000)["node-red"]["rate_cpu_us_per_msg"]
    assert cell["rounds"] == [0.9, 0.7, 0.75]
    assert (cell["ratio"], cell["goal"], cell["meets"]) == (0.75, 0.8, True)
    rounds[2]["runtime"]["rate_cpu_us_per_msg"] = 85
    assert bench.round_ratios(rounds, rate=1000)["node-red"]["rate_cpu_us_per_msg"][
        "meets"] is False  # median 0.85


def test_combine_takes_medians_sums_the_fixed_rate_and_keeps_the_first_bursts(
        bench: ModuleType) -> None:
    burst = [{"sent": 20000}]
    rounds = [{"runtime": figures(30, 100, burst=burst)},
              {"runtime": figures(10, 300, arrived=990)},
              {"runtime": figures(20, 200)}]
    runtime = bench.combine(rounds)["runtime"]
    assert (runtime["cpu_us_per_msg"], runtime["rate_cpu_us_per_msg"]) == (20, 200)
    assert (runtime["rate_sent"], runtime["rate_arrived"]) == (3000, 2990)  # a loss shows
    assert runtime["burst"] is burst


def test_each_round_starts_one_contender_later_and_bursts_once(
        bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, bool]] = []

    async def measure(name: str, port: int, args: Any, *, burst: bool) -> dict[str, Any]:
        calls.append((name, burst))
        return figures(10, 100)

    monkeypatch.setattr(bench, "measure", measure)
    args = type("Args", (), {"only": ["runtime", "gmqtt", "node-red"], "rounds": 3})()
    rounds = bench.asyncio.run(bench.run_all(args, 1883))
    assert [name for name, _ in calls] == ["runtime", "gmqtt", "node-red",
                                           "gmqtt", "node-red", "runtime",
                                           "node-red", "runtime", "gmqtt"]
    assert [burst for _, burst in calls] == [True] * 3 + [False] * 6
    assert all(list(r) == ["runtime", "gmqtt", "node-red"] for r in rounds)
