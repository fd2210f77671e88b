"""Idle: every shipped flow against a frozen simulator; the runtime's wake-ups, RSS and CPU.

Starts `esess-flowctl sim --freeze` (every value held still, no device sends anything
unasked) and `esess-flowctl run` on a site file that enables every shipped flow against
it (`testkit.idle.write_site`), with ESESS_WAKEUPS set so that the runtime counts its
event loop's wake-ups and names what caused each. After `--warmup` s it opens a window
of `--seconds` (SIGUSR1 opens and closes it), then prints:

- wake-ups per minute, against what the configured polls explain (`testkit.idle.budget`:
  each node's timers with the periods of its configuration, the MQTT keep-alives, the
  Wattpilot's liveness probe, the observer's waiting status texts, and what their
  requests bring back), each source with what it was allowed; anything no line explains
  is a finding;
- RSS (MB) and CPU (% of one core over the window) of the runtime, with the goals of
  issue 17 (<= 40 MB, <= 0.3 %).

    .venv/bin/python bench/idle.py [--seconds 60] [--warmup 30] [--json]

Exit 0 when nothing but the configured polls woke the runtime, 1 otherwise (RSS and CPU
are reported, not checked: the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from soak import FLOWCTL, REPO, cpu_s, rss_kb, start_sim  # sets sys.path for testkit
from testkit.idle import budget, explain, lines_of, write_site

RSS_GOAL_MB = 40.0
CPU_GOAL_PERCENT = 0.3


def measure(seconds: float, warmup: float) -> dict[str, object]:
    sim, where = start_sim(1.0, freeze=True)
    try:
        with tempfile.TemporaryDirectory(prefix="esess-idle-") as tmp:
            site = write_site(Path(tmp), where)
            plan = budget(site)
            counts = Path(tmp) / "wakeups.json"
            env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=where["bus"], PYTHONPATH=str(REPO),
                       ESESS_WAKEUPS=str(counts))
            with (Path(tmp) / "runtime.log").open("w+") as log:
                runtime = subprocess.Popen([*FLOWCTL, "run", str(site)], cwd=REPO, env=env,
                                           stdout=subprocess.DEVNULL, stderr=log)
                try:
                    report, rss, cpu = _window(runtime, counts, seconds, warmup)
                finally:
                    runtime.send_signal(signal.SIGTERM)
                    runtime.wait(15)
                log.seek(0)
                errors = [line for line in log if " ERROR " in line or "Traceback" in line]
    finally:
        sim.send_signal(signal.SIGINT)
        sim.communicate(timeout=15)
    matched, findings = explain(report, plan)
    window = float(report["window_s"])
    return {
        "window_s": window,
        "wakeups_per_min": round(float(report["wakeups"]) * 60 / window, 1),
        "expected_per_min": round(plan.per_minute(), 1),
        "lines": [{"why": why, "woke": woke, "allowed": allowed, "sources": matched[why]}
                  for why, woke, allowed in lines_of(plan, report)],
        "findings": [f.__dict__ for f in findings],
        "sources": report["sources"],
        "rss_mb": round(rss / 1024, 1),
        "cpu_percent": round(cpu, 3),
        "errors_logged": errors[:5],
    }


def _window(runtime: subprocess.Popen[bytes], counts: Path, seconds: float,
            warmup: float) -> tuple[dict[str, object], int, float]:
    time.sleep(warmup)
    if runtime.poll() is not None:
        raise SystemExit(f"the runtime ended during the warm-up (exit {runtime.returncode})")
    runtime.send_signal(signal.SIGUSR1)  # the window opens
    start, cpu0 = time.monotonic(), cpu_s(runtime.pid)
    time.sleep(seconds)
    cpu1, end = cpu_s(runtime.pid), time.monotonic()
    before = counts.stat().st_mtime_ns
    runtime.send_signal(signal.SIGUSR1)  # and closes
    deadline = time.monotonic() + 10
    while counts.stat().st_mtime_ns == before and time.monotonic() < deadline:
        time.sleep(0.05)
    rss = rss_kb(runtime.pid)
    report: dict[str, object] = json.loads(counts.read_text())
    return report, rss, 100 * (cpu1 - cpu0) / (end - start)


def _verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the window")
    parser.add_argument("--warmup", type=float, default=30, help="seconds before it")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.seconds, args.warmup)
    if args.json:
        print(json.dumps(result, indent=1))
        return 1 if result["findings"] else 0
    findings: list[dict[str, object]] = result["findings"]
    print(f"every shipped flow against `esess-flowctl sim --freeze`, "
          f"{result['window_s']:.0f} s after {args.warmup:g} s warm-up")
    print(f"  wake-ups   {result['wakeups_per_min']:7.1f}/min  the configured polls explain "
          f"{result['expected_per_min']:.0f}/min (each timer once per period, one answer "
          f"per request; timers due together wake the loop once)")
    print(f"             goal: no wake-up beyond the configured polls: "
          f"{_verdict(not findings)} ({len(findings)} finding(s))")
    print(f"  RSS        {result['rss_mb']:7.1f} MB    goal <= {RSS_GOAL_MB:g} MB: "
          f"{_verdict(float(result['rss_mb']) <= RSS_GOAL_MB)}")
    print(f"  CPU        {result['cpu_percent']:7.2f} %     goal <= {CPU_GOAL_PERCENT:g} % "
          f"of a core: {_verdict(float(result['cpu_percent']) <= CPU_GOAL_PERCENT)}")
    print("  woke/allowed  what (sources)")
    for line in result["lines"]:
        if line["woke"] or line["allowed"]:
            print(f"  {line['woke']:4d}/{line['allowed']:<4d}   {line['why']}")
    for finding in findings:
        what = "not a configured poll" if finding["why"] is None else \
            f"more than allowed by: {finding['why']}"
        print(f"  FINDING {finding['count']} x {finding['source']}: {what}")
    for line in result["errors_logged"]:
        print(f"  runtime logged: {line.rstrip()}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
