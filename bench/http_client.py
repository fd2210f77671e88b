"""HTTP client benchmark: our client (nodes/http/client.py, behind nodes/http/session.py)
against aiohttp's, both polling the simulated Shelly Pro 3EM with SHA-256 digest auth.

The simulator runs in a process of its own; both clients run in this one, each with one
session kept for the whole run (aiohttp: one ClientSession, TCPConnector(limit=16,
ttl_dns_cache=300), DigestAuthMiddleware(preemptive=True), as the session adapter used
it). Each poll is what a poller does: GET `EM.GetStatus?id=0` under asyncio.timeout,
read the body, decode the JSON. After a warm-up (the first 401 and connection), rounds
alternate between the clients, the same number of polls each; printed: CPU µs per poll
(user + system of this process, median of the rounds) and the ratio; then the RSS that
importing each client adds in a fresh interpreter (over what `esess-flowctl run` loads
anyway: asyncio, ssl, hashlib, secrets, urllib.parse and the engine's modules), and after
50 polls as well.

    .venv/bin/python bench/http_client.py [--polls 2000] [--rounds 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO)  # not bench/: this file's name would hide the standard `http`

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Awaitable, Callable  # noqa: E402
from typing import Any  # noqa: E402

PASSWORD = "bench-secret"
PATH = "/rpc/EM.GetStatus?id=0"
SIM = f"""
import asyncio
from sim import mixed_phases_noon
from sim.devices import ShellyPro3EM

async def main():
    async with ShellyPro3EM(mixed_phases_noon(seed=5, settle_s=60),
                            password={PASSWORD!r}) as device:
        print(device.port, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""
BASE = ("import asyncio, ssl, hashlib, secrets, base64, urllib.parse, "  # `run` loads them
        "flowengine.connections, flowengine.node, flowengine.jsontext")
RSS = """
import asyncio, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
{base}
before = rss()
{client}
imported = rss()
asyncio.run(polls(sys.argv[1], 50))
print(imported - before, rss() - before)
"""
OURS = """
from flowengine.model import Secret
from nodes.http.session import HttpAuth, HttpSessionConfig, open_session

async def polls(url, count):
    async with open_session("default", HttpSessionConfig()) as http:
        device = http.client(HttpAuth("digest", "admin", Secret("bench", {password!r})))
        for _ in range(count):
            await device.get_json(url, timeout_s=2)
"""
AIOHTTP = """
import aiohttp
from flowengine.jsontext import load_json

async def polls(url, count):
    digest = (aiohttp.DigestAuthMiddleware("admin", {password!r}, preemptive=True),)
    connector = aiohttp.TCPConnector(limit=16, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(count):
            async with asyncio.timeout(2):
                async with session.get(url, middlewares=digest, allow_redirects=False) as r:
                    assert r.status == 200
                    load_json(await r.content.read((1 << 20) + 1))
"""

Poll = Callable[[], Awaitable[Any]]


@contextlib.asynccontextmanager
async def ours(url: str) -> AsyncIterator[Poll]:
    from flowengine.model import Secret
    from nodes.http.session import HttpAuth, HttpSessionConfig, open_session

    async with open_session("default", HttpSessionConfig()) as http:
        device = http.client(HttpAuth("digest", "admin", Secret("bench", PASSWORD)))
        yield lambda: device.get_json(url, timeout_s=2)


@contextlib.asynccontextmanager
async def theirs(url: str) -> AsyncIterator[Poll]:
    import aiohttp

    from nodes.http.session import MAX_BODY_BYTES, decode_json

    digest = (aiohttp.DigestAuthMiddleware("admin", PASSWORD, preemptive=True),)
    connector = aiohttp.TCPConnector(limit=16, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def poll() -> Any:  # the old adapter's JsonClient._get, then decode_json
            async with asyncio.timeout(2):
                async with session.get(url, headers={}, middlewares=digest,
                                       allow_redirects=False) as reply:
                    if reply.status != 200:
                        raise RuntimeError(f"HTTP {reply.status}")
                    body = await reply.content.read(MAX_BODY_BYTES + 1)
            return decode_json(body)

        yield poll


async def measure(url: str, polls: int, rounds: int) -> dict[str, list[float]]:
    cpu: dict[str, list[float]] = {"ours": [], "aiohttp": []}
    async with ours(url) as our_poll, theirs(url) as their_poll:
        contenders = {"ours": our_poll, "aiohttp": their_poll}
        for poll in contenders.values():  # the first 401, the connection, warm caches
            for _ in range(50):
                assert "total_act_power" in await poll()
        for index in range(rounds):
            order = list(contenders) if index % 2 == 0 else list(contenders)[::-1]
            for name in order:
                poll = contenders[name]
                start = time.process_time()
                for _ in range(polls):
                    await poll()
                cpu[name].append((time.process_time() - start) / polls * 1e6)
    return cpu


def rss_mb(url: str, client: str) -> tuple[float, float]:
    """(after the import, after 50 polls) over the base, in a fresh interpreter. The
    repo's modules are byte-compiled first (as an install does; aiohttp's are): compiling
    a module on import costs more memory than the module."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "flowengine", "nodes"],
                   cwd=REPO, check=True, capture_output=True)
    code = RSS.format(base=BASE, client=client.format(password=PASSWORD))
    out = subprocess.run([sys.executable, "-c", code, url], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)
    imported, polled = (int(x) / 1024 for x in out.stdout.split())
    return imported, polled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=2000, help="polls per client per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sim = subprocess.Popen([sys.executable, "-c", SIM], cwd=REPO, text=True,
                           stdout=subprocess.PIPE)
    try:
        assert sim.stdout is not None
        url = f"http://127.0.0.1:{sim.stdout.readline().strip()}{PATH}"
        cpu = asyncio.run(measure(url, args.polls, args.rounds))
        memory = {"ours": rss_mb(url, OURS), "aiohttp": rss_mb(url, AIOHTTP)}
    finally:
        sim.terminate()
        sim.wait(15)
    median = {name: statistics.median(values) for name, values in cpu.items()}
    print(f"{args.rounds} rounds x {args.polls} polls per client, alternating; the simulated "
          "Shelly Pro 3EM, digest SHA-256, one kept-alive connection")
    for name, values in cpu.items():
        rounds = " ".join(f"{v:.0f}" for v in values)
        print(f"  {name:8} {median[name]:7.1f} µs CPU per poll   (rounds: {rounds})")
    print(f"  aiohttp / ours: {median['aiohttp'] / median['ours']:.2f}x")
    print("RSS added in a fresh interpreter (over asyncio, ssl, hashlib and the engine):")
    for name, (imported, polled) in memory.items():
        print(f"  {name:8} import {imported:5.1f} MB   after 50 polls {polled:5.1f} MB")


if __name__ == "__main__":
    main()
