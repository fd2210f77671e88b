"""The MQTT broker crashes or freezes under a running runtime; the runtime keeps its
memory and picks up again when the broker is back."""

from __future__ import annotations

import asyncio
import signal
import textwrap
import time
from pathlib import Path

from conftest import eventually, run
from testkit.mosquitto import Mosquitto
from testkit.mqtt import client
from testkit.process import RuntimeProcess

RELAY = """\
    id: relay
    nodes:
      - id: incoming
        type: mqtt.in
        topic: fault/in/+
        wildcards: [name]
        output: "{name}"
        to: [outgoing]
      - id: outgoing
        type: mqtt.out
        topic: fault/out/{topic}
"""

BACK_WITHIN_S = 15  # generous: tests/integration/mqtt prove the reconnect backoff itself


def site_for(tmp_path: Path, broker: Mosquitto, flow: str, extra: str = "") -> Path:
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(flow), encoding="utf-8")
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(f"""\
        state_dir: {tmp_path / 'state'}
        connections:
          mqtt:
            main: {{host: {broker.host}, port: {broker.port}{extra}}}
        flows:
          - file: flow.yaml
    """), encoding="utf-8")
    return path


def test_a_relay_works_again_after_the_broker_is_killed_and_restarted(
        tmp_path: Path, broker: Mosquitto) -> None:
    async def scenario() -> None:
        runtime = RuntimeProcess(site_for(tmp_path, broker, RELAY), tmp_path)
        await runtime.start()
        async with client(broker, "relay") as listener:
            listener.listen("fault/out/#")

            async def relayed(value: str) -> None:
                deadline = time.monotonic() + BACK_WITHIN_S
                while listener.last("fault/out/a") != value:
                    assert runtime.running(), runtime.output()
                    assert time.monotonic() < deadline, (
                        f"{value} not relayed; last {listener.last('fault/out/a')!r}\n"
                        + runtime.output())
                    listener.broker.publish("fault/in/a", value)
                    await asyncio.sleep(0.2)

            await relayed("1")
            broker.kill()
            await asyncio.sleep(1.0)  # down for a while: the runtime's reconnects fail
            broker.start()
            await relayed("2")
            await relayed("3")
        assert await runtime.stop() == 0, runtime.output()
        log = runtime.output()
        assert "Traceback" not in log, log

    run(scenario())


def test_memory_stays_bounded_while_the_broker_is_frozen(
        tmp_path: Path, broker: Mosquitto) -> None:
    """SIGSTOP: the TCP link stays up but nothing is read. Two timers publish 40 kB
    every 10 ms (8 MB/s); kept without bound, that is over 40 MB in the 6 s frozen."""
    big = "x" * 40_000
    flow = f"""\
        id: load
        nodes:
          - {{id: one, type: timer, interval_ms: 10, topic: one, value: "{big}", to: [out]}}
          - {{id: two, type: timer, interval_ms: 10, topic: two, value: "{big}", to: [out]}}
          - {{id: beat, type: timer, interval_ms: 100, topic: beat, to: [out]}}
          - {{id: out, type: mqtt.out, topic: "fault/{{topic}}"}}
    """

    async def scenario() -> None:
        runtime = RuntimeProcess(site_for(tmp_path, broker, flow), tmp_path)
        await runtime.start()
        assert broker.process is not None
        async with client(broker, "beat") as listener:
            listener.listen("fault/beat")
            await eventually(lambda: len(listener.payloads("fault/beat")) >= 10, 10)
            before = runtime.rss_kb()
            broker.process.send_signal(signal.SIGSTOP)
            try:
                peak = before
                frozen_until = time.monotonic() + 6
                while time.monotonic() < frozen_until:
                    await asyncio.sleep(0.25)
                    peak = max(peak, runtime.rss_kb())
                    assert runtime.running(), runtime.output()
            finally:
                broker.process.send_signal(signal.SIGCONT)
            assert peak - before < 20_000, f"RSS grew {before} -> {peak} kB while frozen"
            thawed = time.time()
            await eventually(lambda: float(listener.last("fault/beat") or 0) > thawed,
                             BACK_WITHIN_S)
        assert await runtime.stop() == 0, runtime.output()
        assert "Traceback" not in runtime.output(), runtime.output()

    run(scenario())
