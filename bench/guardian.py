"""Guardian benchmark: how soon the grid setpoint is safe when the runtime cannot see to it.

A flow holds the ESS setpoint of the simulated Venus OS (its settings service on a
private dbus-daemon) at -3000 W through `dbus.write` (safe value 0), under
`esess-flowctl run --guardian`. Then, each `--rounds` times:

- kill -9 of the runtime: time until the setpoint reads 0 (the guardian wrote it);
- SIGSTOP of the runtime (a hang: its loop stops turning): time until the setpoint
  reads 0, with the guardian's heartbeat timeout of `--timeout` seconds;
- SIGTERM of the guardian at the end: time until the setpoint reads 0 (the runtime's
  own safe state) and the guardian has exited.

Also printed: the guardian's resident memory beside a bare `python3 -S` (the floor).

    .venv/bin/python bench/guardian.py [--rounds 2] [--timeout 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nodes.dbus.daemon import PrivateBus  # noqa: E402
from sim import EnergyModel, ModelParams  # noqa: E402
from sim.venus import SimVenus  # noqa: E402

FLOW = """\
id: hold
nodes:
  - {id: every, type: timer, interval_ms: 200, at_start: true, value: -3000, to: [setpoint]}
  - id: setpoint
    type: dbus.write
    service: com.victronenergy.settings
    path: /Settings/CGwacs/AcPowerSetPoint
    min_interval_ms: 0
    safe_value: 0
"""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(pid)


async def until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until `condition()` holds (checked every millisecond)."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.001)
    return time.monotonic() - began


class Started:
    """The guardian's output, read as it comes; the pids of the runtimes it started."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pids: list[int] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := (await self.proc.stdout.readline()).decode():
            if "runtime started (pid " in line:
                self.pids.append(int(line.rsplit("pid ", 1)[1].rstrip(")\n")))

    async def next_runtime(self, after: int) -> int:
        await until(lambda: len(self.pids) > after, 70)  # the restart backoff grows
        return self.pids[after]


async def bench(rounds: int, timeout: float) -> dict[str, Any]:
    model = EnergyModel(ModelParams(seed=1))
    with tempfile.TemporaryDirectory(prefix="esess-bench-guardian-") as tmp:
        flow = Path(tmp) / "hold.yaml"
        flow.write_text(FLOW)
        async with PrivateBus() as address, SimVenus(model, address=address):
            def setpoint() -> float:
                return float(model.settings.setpoint_w)

            env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address, PYTHONPATH=str(ROOT))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "esess-flowctl"), "run", "--guardian",
                "--guardian-timeout", f"{timeout:g}", "--state-dir", str(Path(tmp) / "state"),
                str(flow), env=env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)
            out = Started(proc)
            kills, hangs = [], []
            try:
                for n in range(rounds):
                    pid = await out.next_runtime(2 * n)
                    await until(lambda: setpoint() == -3000, 30)
                    os.kill(pid, signal.SIGKILL)
                    kills.append(await until(lambda: setpoint() == 0, 10))
                    pid = await out.next_runtime(2 * n + 1)
                    await until(lambda: setpoint() == -3000, 30)
                    os.kill(pid, signal.SIGSTOP)
                    hangs.append(await until(lambda: setpoint() == 0, timeout + 10))
                await out.next_runtime(2 * rounds)
                await until(lambda: setpoint() == -3000, 30)
                guardian_kb = rss_kb(proc.pid)
                proc.send_signal(signal.SIGTERM)
                term = await until(lambda: setpoint() == 0, 10)
                code = await asyncio.wait_for(proc.wait(), 15)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                for pid in out.pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                out.task.cancel()
    return {"rounds": rounds, "timeout_s": timeout, "kill9_s": kills, "hang_s": hangs,
            "sigterm_s": term, "guardian_exit": code, "guardian_rss_kb": guardian_kb}


def bare_python_rss_kb() -> int:
    """The floor: a python3 -S that does nothing (outside the event loop)."""
    floor = subprocess.run([sys.executable, "-S", "-c",
                            "print(open('/proc/self/status').read())"],
                           capture_output=True, text=True, check=True).stdout
    return int(next(line for line in floor.splitlines()
                    if line.startswith("VmRSS:")).split()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2,
                        help="kill and hang rounds (each restart waits longer: backoff)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="the guardian's heartbeat timeout (default 10 s, as shipped)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(bench(args.rounds, args.timeout))
    result["bare_python_rss_kb"] = bare_python_rss_kb()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    kills, hangs = result["kill9_s"], result["hang_s"]
    guardian, floor = result["guardian_rss_kb"] / 1024, result["bare_python_rss_kb"] / 1024
    print(f"guardian, {args.rounds} round(s), heartbeat timeout {args.timeout:g} s")
    print(f"  kill -9 of the runtime  -> setpoint safe: median "
          f"{statistics.median(kills) * 1000:.0f} ms, max {max(kills) * 1000:.0f} ms")
    print(f"  runtime hangs (SIGSTOP) -> setpoint safe: median "
          f"{statistics.median(hangs):.2f} s, max {max(hangs):.2f} s")
    print(f"  SIGTERM of the service  -> setpoint safe: {result['sigterm_s'] * 1000:.0f} ms "
          f"(guardian exit code {result['guardian_exit']})")
    print(f"  guardian resident memory: {guardian:.1f} MB (bare python3 -S: {floor:.1f} MB, "
          f"ratio {guardian / floor:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
