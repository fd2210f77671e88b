"""Wattpilot websocket benchmark: our client (nodes/devices/wsclient.py) beside websockets'.

- CPU per received status frame: a `websockets` server in another process sends
  `--frames` text frames of a 270-byte deltaStatus, paced by its own send() of each
  (a few frames per read: the event loop's wake-ups count as much as the parsing) and
  in a burst (all frames written at once: the client's own cost); the client process's
  CPU time (`time.process_time`) to receive them, per frame. Rounds alternate between
  the two clients, each on its own connection; websockets is configured as the
  Wattpilot adapter used it (no compression, pings or proxy).
- Resident memory of the import: a fresh interpreter that has imported asyncio, hashlib,
  json and logging (the runtime has them before it loads an adapter), its VmRSS before
  and after importing each client.

    .venv/bin/python bench/wattpilot.py [--rounds 5] [--frames 20000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # the repository, not bench/, first

from websockets.asyncio.client import connect as library_connect  # noqa: E402

from nodes.devices.wsclient import connect as our_connect  # noqa: E402

STATUS = json.dumps({"type": "deltaStatus", "status": {
    "nrg": [230.1, 229.8, 231.0, 0, 9.9, 10.1, 9.8, 2291.2, 2281.4, 2263.1, 0, 6836.1],
    "eto": 1234567, "wh": 8123.4, "car": 2, "amp": 10, "modelStatus": 3, "tpa": 6812.3,
    "utc": "2024-05-01T12:00:00.123", "rbt": 123456789, "fhz": 49.98}})

SERVER = f"""
import asyncio, sys
from websockets.asyncio.server import serve
STATUS = {STATUS!r}
FRAME = bytes((0x81, 126)) + len(STATUS).to_bytes(2, "big") + STATUS.encode()
async def send(ws):
    async for request in ws:
        mode, frames = request.split()
        if mode == "burst":  # the same frames, written at once: the client is the limit
            ws.transport.write(FRAME * int(frames))
        else:
            for _ in range(int(frames)):
                await ws.send(STATUS)
        await ws.send("done")
async def main():
    async with serve(send, "127.0.0.1", 0, compression=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().create_future()
asyncio.run(main())
"""

RSS = """
import asyncio, hashlib, json, logging
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
before, modules = rss(), len(__import__("sys").modules)
import {module}
print(rss() - before, len(__import__("sys").modules) - modules)
"""
MODULES = {"ours": "nodes.devices.wsclient", "websockets": "websockets.asyncio.client"}
MODES = {"paced": "paced by the server's send() of each frame: a few frames per read",
         "burst": "all frames written at once: the client's own cost per frame"}


async def receive(ws: Any, frames: int, mode: str = "paced") -> float:
    """CPU seconds of this process to receive `frames` status frames."""
    began = time.process_time()
    await ws.send(f"{mode} {frames}")
    for _ in range(frames):
        message = await ws.recv()
        assert len(message) == len(STATUS)
    cpu = time.process_time() - began
    assert await ws.recv() == "done"
    return cpu


async def cpu_per_frame(port: int, rounds: int, frames: int
                        ) -> dict[str, dict[str, list[float]]]:
    url = f"ws://127.0.0.1:{port}/ws"
    ours = await our_connect(url)
    library = await library_connect(url, compression=None, ping_interval=None,
                                    user_agent_header=None, proxy=None)
    results: dict[str, dict[str, list[float]]] = {
        mode: {"ours": [], "websockets": []} for mode in MODES}
    try:
        await receive(ours, 1000)  # warm both up
        await receive(library, 1000)
        for n in range(rounds):
            order = [("ours", ours), ("websockets", library)]
            for mode in MODES:
                for name, ws in order if n % 2 == 0 else order[::-1]:
                    cpu = await receive(ws, frames, mode)
                    results[mode][name].append(cpu / frames * 1e6)
    finally:
        await ours.close()
        await library.close()
    return results


def import_rss(rounds: int) -> dict[str, dict[str, int]]:
    """With bytecode written (the first run), as an installed runtime has it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out: dict[str, dict[str, int]] = {}
    for name, module in MODULES.items():
        runs = [subprocess.run([sys.executable, "-c", RSS.format(module=module)], cwd=ROOT,
                               env=env, capture_output=True, text=True, check=True
                               ).stdout.split() for _ in range(rounds + 1)][1:]
        out[name] = {"rss_kb": int(statistics.median(int(kb) for kb, _ in runs)),
                     "modules": int(runs[0][1])}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        cpu = asyncio.run(cpu_per_frame(port, args.rounds, args.frames))
    finally:
        server.terminate()
        server.wait(5)
        if server.stdout:
            server.stdout.close()
    rss = import_rss(args.rounds)
    result = {"frames": args.frames, "frame_bytes": len(STATUS), "cpu_us_per_frame": cpu,
              "import": rss}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"receive {args.frames} text frames of {len(STATUS)} bytes, {args.rounds} "
          f"alternating rounds (CPU of the client process, median)")
    for mode, what in MODES.items():
        ours, library = (statistics.median(cpu[mode][name]) for name in MODULES)
        print(f"  {mode}: {what}")
        for name, median in (("ours", ours), ("websockets", library)):
            print(f"    {name:<10}  {median:6.2f} us/frame  (rounds: "
                  f"{', '.join(f'{x:.2f}' for x in cpu[mode][name])})")
        print(f"    ratio ours / websockets: {ours / library:.2f}")
    print("import into a fresh interpreter that has asyncio, hashlib, json and logging "
          "(median RSS)")
    for name, module in MODULES.items():
        print(f"  {name:<10}  +{rss[name]['rss_kb'] / 1024:5.2f} MB, "
              f"+{rss[name]['modules']} modules  ({module})")
    print(f"  ratio ours / websockets: "
          f"{rss['ours']['rss_kb'] / max(1, rss['websockets']['rss_kb']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
