"""SIGKILL of the runtime while it writes state: every state file parses afterwards, and
the next start goes on from it (energy totals never fall back)."""

from __future__ import annotations

import asyncio
import json
import random
import textwrap
import time
from pathlib import Path

from conftest import run
from testkit.process import RuntimeProcess

COUNTERS = 16
KILLS = 20


def counting_site(tmp_path: Path) -> Path:
    """A timer feeding 3.6 kW to COUNTERS energy counters, each with its own state file,
    saved 1 s after start (the first save of a file is not throttled)."""
    nodes = [{"id": "power", "type": "timer", "interval_ms": 50, "topic": "L1/power",
              "value": 3600, "at_start": True,
              "to": [f"count{i}" for i in range(COUNTERS)]}]
    nodes += [{"id": f"count{i}", "type": "energy.counter", "phases": ["L1/power"],
               "persist_every_s": 1, "emit_every_ms": 100} for i in range(COUNTERS)]
    flow = {"id": "counting", "nodes": nodes}
    (tmp_path / "flow.yaml").write_text(json.dumps(flow), encoding="utf-8")  # JSON is YAML
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(f"""\
        state_dir: {tmp_path / 'state'}
        flows:
          - file: flow.yaml
    """), encoding="utf-8")
    return path


def state_files(tmp_path: Path) -> dict[str, float]:
    """Each counter's saved forward total (kWh); AssertionError if a file is torn."""
    totals: dict[str, float] = {}
    for file in sorted((tmp_path / "state").rglob("*")):
        assert ".corrupt-" not in file.name, f"the runtime set {file.name} aside"
        if file.suffix != ".json" or not file.is_file():
            continue
        text = file.read_text(encoding="utf-8")
        try:
            state = json.loads(text)
        except ValueError as exc:
            raise AssertionError(f"{file} does not parse: {exc}: {text[:200]!r}") from exc
        totals[file.stem] = state["forward"]["L1/power"]
    return totals


def mtimes(directory: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in directory.rglob("*.json")} \
        if directory.exists() else {}


def test_every_state_file_parses_after_kills_during_writes(tmp_path: Path) -> None:
    rng = random.Random(11)
    site = counting_site(tmp_path)
    state_dir = tmp_path / "state"

    async def scenario() -> None:
        saved: dict[str, float] = {}
        mid_write = 0
        for _ in range(KILLS):
            before = mtimes(state_dir)
            runtime = RuntimeProcess(site, tmp_path)
            await runtime.start()
            deadline = time.monotonic() + 15
            while mtimes(state_dir) == before:  # until the first file of this run is saved
                assert runtime.running(), runtime.output()
                assert time.monotonic() < deadline, "no state written\n" + runtime.output()
                await asyncio.sleep(0.002)
            await asyncio.sleep(rng.uniform(0, 0.006))  # somewhere in the burst of writes
            runtime.kill()
            await runtime.wait()
            now = state_files(tmp_path)
            changed = sum(1 for p, t in mtimes(state_dir).items() if before.get(p) != t)
            mid_write += 0 < changed < COUNTERS
            for name, total in saved.items():  # a restart went on from the file
                assert now.get(name, 0.0) >= total, (name, total, now.get(name))
            saved.update(now)
        assert saved, "no kill left a state file"
        assert mid_write >= 3, f"only {mid_write} of {KILLS} kills landed mid-burst"
        # and a clean start reads every file: the totals go on growing from them
        runtime = RuntimeProcess(site, tmp_path, args=("--duration", "1.5"))
        await runtime.start()
        assert await runtime.wait() == 0, runtime.output()
        assert runtime.output().count("restored totals") == len(saved), runtime.output()
        final = state_files(tmp_path)
        assert len(final) == COUNTERS  # a clean stop saves every counter
        assert all(final[name] > total for name, total in saved.items()), (saved, final)

    run(scenario())


BROKEN_STATES = {
    "count0": b'{"forward": {"L1/po',            # torn (what an unsafe write leaves)
    "count1": b"",                                 # empty
    "count2": b"[" * 50_000,                       # nested past the parser's recursion
    "count3": b'{"forward": "\xff\xfe"}',          # invalid UTF-8
    "count4": b"[1, 2, 3]",                        # JSON, not an object
    "count5": b'{"forward": NaN}',                 # not JSON at all, Python's extension
}


def test_broken_state_files_are_set_aside_and_the_runtime_starts(tmp_path: Path) -> None:
    site = counting_site(tmp_path)
    flow_dir = tmp_path / "state" / "counting"
    flow_dir.mkdir(parents=True)
    for node, data in BROKEN_STATES.items():
        (flow_dir / f"{node}.json").write_bytes(data)

    async def scenario() -> None:
        runtime = RuntimeProcess(site, tmp_path, args=("--duration", "1.5"))
        await runtime.start()
        assert await runtime.wait() == 0, runtime.output()
        log = runtime.output()
        assert log.count("set aside as") == len(BROKEN_STATES), log
        assert "Traceback" not in log and "restarting in" not in log, log

    run(scenario())
    aside = sorted(p.name.split(".json")[0] for p in flow_dir.glob("*.corrupt-*"))
    assert aside == sorted(BROKEN_STATES)  # kept for the user, never deleted
    totals = state_files_except_aside(tmp_path)
    assert len(totals) == COUNTERS and all(t > 0 for t in totals.values()), totals


def state_files_except_aside(tmp_path: Path) -> dict[str, float]:
    return {p.stem: json.loads(p.read_text())["forward"]["L1/power"]
            for p in (tmp_path / "state").rglob("*.json") if p.is_file()}
