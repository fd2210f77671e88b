"""A flow that cannot start: one line that says why, then exit or retry with backoff.

The bus name case is the one a GX user meets first: the old es-ESS still owns the
names of the services a flow publishes.
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import run
from testkit.process import RuntimeProcess

from nodes.dbus.bus import NameTaken, open_bus

NAME = "com.victronenergy.temperature.esess_taken"
SENSOR = """
id: sensor
nodes:
  - {id: svc, type: dbus.service, preset: temperature, name: esess_taken, device_instance: 20}
"""
TICK = """
id: tick
nodes:
  - {id: t, type: timer, interval_ms: 60000, to: [show]}
  - {id: show, type: log}
"""


def _site(tmp_path: Path, *flows: str) -> Path:
    entries = []
    for i, text in enumerate(flows):
        (tmp_path / f"flow{i}.yaml").write_text(text, encoding="utf-8")
        entries.append(f"  - file: flow{i}.yaml\n")
    site = tmp_path / "site.yaml"
    site.write_text(f"state_dir: {tmp_path / 'state'}\nflows:\n" + "".join(entries),
                    encoding="utf-8")
    return site


def test_a_taken_name_says_which_process_owns_it(bus_address: str) -> None:
    async def scenario() -> None:
        async with open_bus(bus_address) as holder, open_bus(bus_address) as other:
            await holder.request_name(NAME)
            try:
                await other.request_name(NAME)
            except NameTaken as exc:
                text = str(exc)
            else:
                raise AssertionError("the second request got the name")
        assert f"the bus name '{NAME}' is owned by {holder.unique_name}, process " \
            f"{os.getpid()} (" in text
        assert "pytest" in text or "python" in text  # its command line, from /proc
        assert text.endswith("; stop that process first (the old es-ESS uses the same "
                             "names), or give this service another name")

    run(scenario())


def test_run_exits_at_once_with_one_line_when_no_flow_can_start(
        bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_bus(bus_address) as holder:
            await holder.request_name(NAME)
            runtime = RuntimeProcess(_site(tmp_path, SENSOR), tmp_path)
            await runtime.start()
            assert await runtime.wait(15) == 1
        out = runtime.output()
        assert "Traceback" not in out and "running 0 of" not in out
        (line,) = [x for x in out.splitlines() if " ERROR " in x and "owned by" in x]
        assert f" ERROR flowengine.cli: flow 'sensor': node 'svc' (dbus.service) did not " \
            f"start: the bus name '{NAME}' is owned by {holder.unique_name}, process " \
            f"{os.getpid()} (" in line
        assert line.endswith("); stop that process first (the old es-ESS uses the same "
                             "names), or give this service another name")
        assert "no flow could start; exiting" in out

    run(scenario())


def test_a_flow_that_did_not_start_is_tried_again_until_it_does(
        bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        runtime = RuntimeProcess(_site(tmp_path, TICK, SENSOR), tmp_path)
        async with open_bus(bus_address) as holder:
            await holder.request_name(NAME)
            await runtime.start()
            try:
                await runtime.until(lambda: "next try in 1 s" in runtime.output(), 15,
                                    "the failed flow's retry is announced")
                assert "running 1 of 2 flow(s)" in runtime.output()
                await runtime.until(lambda: "attempt 2 did not start either; next try in "
                                    "2 s" in runtime.output(), 15, "a second attempt")
                await holder.release_name(NAME)
                await runtime.until(lambda: "flow 'sensor': started at attempt" in
                                    runtime.output(), 15, "the flow started once it could")
                assert await holder.name_owner(NAME) not in (None, holder.unique_name)
            finally:
                code = await runtime.stop()
        assert code == 0, runtime.output()  # every flow ran at the end
        assert "Traceback" not in runtime.output()

    run(scenario())
