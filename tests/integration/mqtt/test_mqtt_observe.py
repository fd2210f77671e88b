"""es-ESS/$SYS/Status, service messages and node status from `esess-flowctl run`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT, eventually, run

from .mqttkit import Mosquitto, client

STATUS = "es-ESS/$SYS/Status"
FLOW = """
    id: watch
    nodes:
      - {id: temp, type: mqtt.in, topic: obs/temp, payload: number}
"""
SECRET = "s3cret-Pa55word"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| "


def start_runtime(server: Mosquitto, directory: Path) -> subprocess.Popen[str]:
    (directory / "watch.yaml").write_text(textwrap.dedent(FLOW))
    (directory / "site.yaml").write_text(textwrap.dedent(f"""
        connections:
          mqtt:
            main:
              host: {server.host}
              port: {server.port}
              client_id: observed
              username: esess
              password: !secret mqtt_password
        observe: [mqtt.main]
        state_dir: {directory / "state"}
        flows:
          - file: watch.yaml
    """))
    (directory / "secrets.yaml").write_text(f"mqtt_password: {SECRET}\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(ROOT / "esess-flowctl"), "run",
                             "--log-level", "DEBUG", str(directory / "site.yaml")],
                            env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_last_will_says_offline_when_the_runtime_is_killed(
        own_mosquitto: Mosquitto, tmp_path: Path) -> None:
    process = start_runtime(own_mosquitto, tmp_path)

    async def scenario() -> None:
        async with client(own_mosquitto, "watcher") as watcher:
            watcher.listen(STATUS)
            watcher.listen("es-ESS/watch/#")
            await eventually(lambda: watcher.last(STATUS) == "Online", timeout=10)
            started = "es-ESS/watch/ServiceMessages/Operational/Message00"
            await eventually(lambda: watcher.last(started) is not None, timeout=5)
            assert re.fullmatch(STAMP + r"started \(1 nodes\)", watcher.last(started) or "")
            node = "es-ESS/watch/Status/temp"
            await eventually(lambda: watcher.last(node) is not None, timeout=5)
            # the node said "not connected" before the broker connection was up: that
            # status was replaced by "ok" while it waited, so "ok" is the only one sent
            # (it once went out first, and this line raced with the "ok" behind it)
            assert [json.loads(p)["level"] for p in watcher.payloads(node)] == ["ok"]
            process.send_signal(signal.SIGKILL)
            await eventually(lambda: watcher.last(STATUS) == "Offline", timeout=5)
            assert watcher.payloads(STATUS) == ["Online", "Offline"]
    try:
        run(scenario())
    finally:
        process.kill()
        process.communicate(timeout=10)


async def started_then_stopped(server: Mosquitto, directory: Path) -> str:
    """Run the runtime until it says Online, SIGTERM it, see Offline and exit 0; what
    it wrote."""
    process = start_runtime(server, directory)
    try:
        async with client(server, "watcher") as watcher:
            watcher.listen(STATUS)
            await eventually(lambda: watcher.last(STATUS) == "Online", timeout=10)
            process.send_signal(signal.SIGTERM)
            await eventually(lambda: watcher.last(STATUS) == "Offline", timeout=5)
        assert process.wait(5) == 0
    finally:
        process.kill()
        output, _ = process.communicate(timeout=10)
    return output


def test_clean_shutdown_reports_stopped_then_offline(own_mosquitto: Mosquitto,
                                                     tmp_path: Path) -> None:
    async def scenario() -> str:
        output = await started_then_stopped(own_mosquitto, tmp_path)
        async with client(own_mosquitto, "later") as later:  # retained, seen later
            later.listen("es-ESS/#")
            ring = "es-ESS/watch/ServiceMessages/Operational/"
            await eventually(lambda: later.last(ring + "Message01") is not None, timeout=5)
            assert re.fullmatch(STAMP + r"stopped \(shutdown\)", later.last(ring + "Message01")
                                or "")
            assert later.last(STATUS) == "Offline"
        return output

    output = run(scenario())
    assert "connected to 127.0.0.1" in output  # the log was written, at DEBUG
    assert SECRET not in output


def test_the_service_message_ring_goes_on_after_a_restart(own_mosquitto: Mosquitto,
                                                           tmp_path: Path) -> None:
    """started 00, stopped 01; after a restart started 02, stopped 03 (not 00 again,
    which would overwrite the newest messages)."""
    ring = "es-ESS/watch/ServiceMessages/Operational/"

    async def scenario() -> None:
        await started_then_stopped(own_mosquitto, tmp_path)
        await started_then_stopped(own_mosquitto, tmp_path)
        async with client(own_mosquitto, "later") as later:
            later.listen(ring + "#")
            await eventually(lambda: len(later.received) == 4, timeout=5)
            texts = {r.topic.rsplit("/", 1)[1]: r.payload.split(" | ", 1)[1]
                     for r in later.received}
            assert texts == {"Message00": "started (1 nodes)",
                             "Message01": "stopped (shutdown)",
                             "Message02": "started (1 nodes)",
                             "Message03": "stopped (shutdown)"}
    run(scenario())
