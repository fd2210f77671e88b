"""Idle stays idle: with every shipped flow running against a frozen simulated site, the
runtime's event loop wakes up only for the configured polls (issue 17).

`esess-flowctl run` counts its wake-ups and names their sources (ESESS_WAKEUPS, see
flowengine.watchdog.WakeupCounter); `testkit.idle.budget` says what the site's
configuration explains: each node timer at most once per period of its config (exactly:
a drift-free timer fires at most window / period + 1 times in a window), the MQTT
keep-alive checks, the Wattpilot's liveness probe, the observer's waiting status
texts, and up to 2 to 4 reads for what each request brings back (an HTTP answer, the
announcements and allowances the broker hands back to us, the charger's status in its
parts). A source nothing explains fails the test, so does one that woke the loop more
often than its period allows. bench/idle.py is the same measurement over a minute, with
RSS and CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from conftest import run
from testkit.idle import FLOWS_DIR, budget, explain, where_of, write_site
from testkit.process import RuntimeProcess

from sim.site import SimSite, SiteOptions

WARMUP_S = 4.0  # after the start and the last login: the first announcements settle
WINDOW_S = 12.0  # twelve polls of every 1 s poll; the 30 s and 60 s timers may fall in it


def test_an_idle_runtime_wakes_up_only_for_its_configured_polls(tmp_path: Path) -> None:
    flows = len(list(FLOWS_DIR.glob("*.yaml")))

    async def scenario() -> None:
        async with SimSite(SiteOptions(freeze=True)) as sim:
            site = write_site(tmp_path, where_of(sim))
            expected = budget(site)
            counts = tmp_path / "wakeups.json"
            runtime = RuntimeProcess(site, tmp_path, env={
                "DBUS_SYSTEM_BUS_ADDRESS": sim.bus_address, "ESESS_WAKEUPS": str(counts)})
            await runtime.start()
            try:
                await runtime.until(lambda: f"running {flows} of {flows} flow(s)"
                                    in runtime.output(), 30, "every shipped flow running")
                await runtime.until(lambda: sim.wattpilot is not None and
                                    sim.wattpilot.clients > 0, 30, "the Wattpilot's login")
                await asyncio.sleep(WARMUP_S)  # the measurement itself: time passing idle
                os.kill(runtime.pid, signal.SIGUSR1)  # the window opens (the start's counts)
                await runtime.until(counts.exists, 10, "the start's wake-up counts")
                startup = counts.read_text()
                await asyncio.sleep(WINDOW_S)
                os.kill(runtime.pid, signal.SIGUSR1)  # and closes
                await runtime.until(lambda: counts.read_text() != startup, 10,
                                    "the window's wake-up counts")
            finally:
                await runtime.stop()
        report = json.loads(counts.read_text())
        _, findings = explain(report, expected)
        assert report["wakeups"] > WINDOW_S, report  # it counted (the polls alone do more)
        assert not findings, "\n".join(
            [f"{f.count} x {f.source}: " + ("no configured poll explains it" if f.why is None
                                            else f"allowed {f.allowed} by {f.why}")
             for f in findings] + [f"all sources: {report['sources']}"])

    run(scenario())

