"""The HTTP session's own client over real loopback sockets: a small asyncio server that
serves crafted answers (counting connections and requests), and the Shelly simulators
for Gen1 Basic and Gen2 digest authentication."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from conftest import ROOT, eventually, free_port, run
from testkit.servers import LoopbackServer

from flowengine.model import Secret
from nodes.http import client as client_module
from nodes.http.session import (
    DeviceUnreachable,
    HttpAuth,
    HttpSession,
    HttpSessionConfig,
    open_session,
)
from sim import mixed_phases_noon
from sim.devices import Shelly3EMGen1, ShellyPro3EM
from sim.devices.auth import parse_digest

PASSWORD = "hunter2-Secret"
JSON = b'{"power": 42.5}'


@dataclass
class Answer:
    """What the server does with one request."""

    data: bytes | list[bytes] = b""  # a list: written piece by piece, 10 ms apart
    close: bool = False  # close the connection after writing
    delay_s: float = 0.0
    hang: bool = False  # never answer; wait until the client closes


def ok(body: bytes = JSON, *extra: str) -> Answer:
    head = "".join(f"{line}\r\n" for line in extra)
    return Answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  + head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


Script = Callable[[int, int, bytes], Answer]  # (request number, connection number, head)


class Crafted(LoopbackServer):
    """An HTTP server on a free loopback port answering what `script` says."""

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(head)
                answer = self.script(len(self.requests), number, head)
                if answer.delay_s:
                    await asyncio.sleep(answer.delay_s)
                if answer.hang:
                    await reader.read()  # until the client closes
                    return
                pieces = answer.data if isinstance(answer.data, list) else [answer.data]
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    if len(pieces) > 1:
                        await asyncio.sleep(0.01)
                if answer.close:
                    return
        except ConnectionError:
            return
        finally:
            self.open -= 1


def always(answer: Answer) -> Script:
    return lambda request, connection, head: answer


@contextlib.asynccontextmanager
async def session(max_connections: int = 16) -> AsyncIterator[HttpSession]:
    async with open_session("default", HttpSessionConfig(max_connections=max_connections)) \
            as opened:
        yield opened


def no_leaks(*servers: Crafted) -> None:
    """No task is left but the test's and the servers' own; every transport was closed
    (a forgotten one warns when collected, which fails the test)."""
    gc.collect()
    tasks = asyncio.all_tasks() - {t for server in servers for t in server._tasks}
    assert tasks == {asyncio.current_task()}, tasks


# keep-alive

def test_a_connection_is_kept_alive_and_reused() -> None:
    async def scenario() -> None:
        async with Crafted(always(ok())) as server, session() as http:
            device = http.client()
            for _ in range(5):
                assert await device.get_json(server.url + "/rpc/EM.GetStatus?id=0",
                                             timeout_s=2) == {"power": 42.5}
            assert (server.connections, len(server.requests)) == (1, 5)
            assert http.open_connections == 1
        assert server.open == 0  # closed with the session

    run(scenario())


def test_the_request_has_its_line_host_connection_accept_and_user_agent() -> None:
    async def scenario() -> None:
        async with Crafted(always(ok())) as server, session() as http:
            await http.client().get_json(server.url + "/a%20b/c?x=1&y=2", timeout_s=2)
            await http.client().get_text(server.url, timeout_s=2)
        lines = server.requests[0].decode().split("\r\n")
        assert lines[0] == "GET /a%20b/c?x=1&y=2 HTTP/1.1"
        headers = dict(line.split(": ", 1) for line in lines[1:] if line)
        assert headers["Host"] == f"127.0.0.1:{server.port}"
        assert headers["Connection"] == "keep-alive"
        assert headers["Accept"].startswith("application/json")
        assert headers["User-Agent"].startswith("esess-flows")
        assert "Authorization" not in headers
        assert server.requests[1].startswith(b"GET / HTTP/1.1\r\n")

    run(scenario())


@pytest.mark.parametrize(("answer", "reused"), [
    (ok(JSON, "Connection: close"), False),
    (Answer(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}"), False),
    (Answer(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}"), True),
    (Answer(b"HTTP/1.1 200 OK\r\n\r\n{}", close=True), False),  # a body until close
], ids=["connection-close", "http-1.0", "http-1.0-keep-alive", "until-close"])
def test_which_answers_leave_the_connection_for_reuse(answer: Answer, reused: bool) -> None:
    async def scenario() -> None:
        async with Crafted(always(answer)) as server, session() as http:
            device = http.client()
            for _ in range(3):
                assert isinstance(await device.get_json(server.url, timeout_s=2), dict)
            assert server.connections == (1 if reused else 3)
            await eventually(lambda: http.open_connections == (1 if reused else 0))

    run(scenario())


def test_a_reused_connection_the_device_closed_unseen_is_retried_once_on_a_new_one() -> None:
    def script(request: int, connection: int, head: bytes) -> Answer:
        # the device drops its first connection on the second request, unanswered
        return Answer(close=True) if (request, connection) == (2, 1) else ok()

    async def scenario() -> None:
        async with Crafted(script) as server, session() as http:
            device = http.client()
            await device.get_json(server.url, timeout_s=2)
            assert await device.get_json(server.url, timeout_s=2) == {"power": 42.5}
            assert (server.connections, len(server.requests)) == (2, 3)

    run(scenario())


def test_a_fresh_connection_closed_unanswered_is_not_retried() -> None:
    async def scenario() -> None:
        async with Crafted(always(Answer(close=True))) as server, session() as http:
            with pytest.raises(DeviceUnreachable, match=r"^the device closed the connection$"):
                await http.client().get_json(server.url, timeout_s=2)
            assert (server.connections, len(server.requests)) == (1, 1)

    run(scenario())


def test_a_reused_connection_closed_in_the_middle_of_the_answer_is_not_retried() -> None:
    def script(request: int, connection: int, head: bytes) -> Answer:
        return Answer(b"HTTP/1.1 200 OK\r\nContent-Le", close=True) if request == 2 else ok()

    async def scenario() -> None:
        async with Crafted(script) as server, session() as http:
            device = http.client()
            await device.get_json(server.url, timeout_s=2)
            with pytest.raises(DeviceUnreachable, match=r"^the device closed the connection$"):
                await device.get_json(server.url, timeout_s=2)
            assert (server.connections, len(server.requests)) == (1, 2)
            assert await device.get_json(server.url, timeout_s=2) == {"power": 42.5}
            assert server.connections == 2

    run(scenario())


def test_an_idle_connection_the_device_closes_is_dropped_at_once() -> None:
    async def scenario() -> None:
        async with Crafted(always(ok(JSON))) as server, session() as http:
            device = http.client()
            await device.get_json(server.url, timeout_s=2)
            assert http.open_connections == 1
            for task in list(server._tasks):  # the device ends its idle connection
                task.cancel()
            await eventually(lambda: http.open_connections == 0)
            await device.get_json(server.url, timeout_s=2)
            assert (server.connections, len(server.requests)) == (2, 2)

    run(scenario())


def test_an_idle_connection_older_than_the_idle_limit_is_not_reused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "IDLE_S", 0.05)

    async def scenario() -> None:
        async with Crafted(always(ok())) as server, session() as http:
            device = http.client()
            await device.get_json(server.url, timeout_s=2)
            await device.get_json(server.url, timeout_s=2)
            assert server.connections == 1
            await asyncio.sleep(0.1)
            await device.get_json(server.url, timeout_s=2)
            assert server.connections == 2
            await eventually(lambda: server.open == 1)  # the old one was closed, not kept
            assert http.open_connections == 1

    run(scenario())


# answers

def test_chunked_answers_with_extensions_and_trailers_arrive_in_pieces() -> None:
    pieces = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"6;ext=1\r\n",
              b'{"powe', b"\r\n9\r\n", b'r": 42.5}', b"\r\n0\r\nX-Trailer: 1\r\n", b"\r\n"]

    async def scenario() -> None:
        async with Crafted(always(Answer(pieces))) as server, session() as http:
            device = http.client()
            assert await device.get_json(server.url, timeout_s=2) == {"power": 42.5}
            assert await device.get_json(server.url, timeout_s=2) == {"power": 42.5}
            assert server.connections == 1

    run(scenario())


def test_interim_answers_are_skipped() -> None:
    final = ok().data
    assert isinstance(final, bytes)
    answer = Answer([b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 102 Processing\r\n\r\n",
                     final])

    async def scenario() -> None:
        async with Crafted(always(answer)) as server, session() as http:
            assert await http.client().get_json(server.url, timeout_s=2) == {"power": 42.5}

    run(scenario())


def test_no_redirect_is_followed() -> None:
    answer = Answer(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")

    async def scenario() -> None:
        async with Crafted(always(answer)) as server, session() as http:
            with pytest.raises(DeviceUnreachable, match=r"^HTTP 302 \(Found\)$"):
                await http.client().get_json(server.url, timeout_s=2)
            with pytest.raises(DeviceUnreachable, match=r"^HTTP 302 \(Found\)$"):
                await http.client().get_text(server.url, timeout_s=2)
            assert len(server.requests) == 2

    run(scenario())


def test_get_json_wants_200_and_get_text_any_2xx() -> None:
    answer = Answer(b"HTTP/1.1 204 No Content\r\n\r\n")

    async def scenario() -> None:
        async with Crafted(always(answer)) as server, session() as http:
            assert await http.client().get_text(server.url, timeout_s=2) == ""
            with pytest.raises(DeviceUnreachable, match=r"^HTTP 204 \(No Content\)$"):
                await http.client().get_json(server.url, timeout_s=2)
            assert server.connections == 1  # a 204 has no body: the connection goes on

    run(scenario())


def _limit_answers(limit: int) -> dict[str, Answer]:
    body = b"x" * (limit + 1)
    return {
        "length": Answer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body),
        "chunked": Answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          + b"%x\r\n" % limit + body[:limit] + b"\r\n1\r\nx\r\n0\r\n\r\n"),
        "until-close": Answer(b"HTTP/1.1 200 OK\r\n\r\n" + body, close=True),
    }


@pytest.mark.parametrize("framing", ["length", "chunked", "until-close"])
def test_one_byte_beyond_max_bytes_is_refused_and_the_connection_closed(framing: str) -> None:
    limit = 1000

    async def scenario() -> None:
        answers = {"under": always(Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                                          + b"y" * limit))}
        async with Crafted(answers["under"]) as fits, session() as http:
            assert await http.client().get_text(fits.url, timeout_s=2, max_bytes=limit) \
                == "y" * limit
        async with Crafted(always(_limit_answers(limit)[framing])) as server, \
                session() as http:
            with pytest.raises(DeviceUnreachable, match=r"^reply larger than 1000 bytes$"):
                await http.client().get_text(server.url, timeout_s=2, max_bytes=limit)
            await eventually(lambda: server.open == 0)
            assert http.open_connections == 0

    run(scenario())


def test_an_error_status_with_a_large_body_says_the_status() -> None:
    answer = Answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 99999\r\n\r\n")

    async def scenario() -> None:
        async with Crafted(always(answer)) as server, session() as http:
            with pytest.raises(DeviceUnreachable, match=r"^HTTP 404 \(Not Found\)$"):
                await http.client().get_text(server.url, timeout_s=2, max_bytes=10)

    run(scenario())


MALFORMED = {
    "status-line": (b"HTTP/1.1 OK\r\n\r\n", "malformed status line"),
    "not-http": (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "malformed status line"),
    "length": (b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n", "bad Content-Length"),
    "both": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
             "both Transfer-Encoding and Content-Length"),
    "conflicting": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n",
                    "conflicting Content-Length"),
    "head-too-large": (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 17000 + b"\r\n\r\n",
                       "header block larger than 16384 bytes"),
    "too-many-lines": (b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n",
                       "more than 100 header lines"),
    "chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_answer_is_device_unreachable_and_the_session_goes_on(name: str) -> None:
    data, text = MALFORMED[name]

    def script(request: int, connection: int, head: bytes) -> Answer:
        return Answer(data) if request == 1 else ok()

    async def scenario() -> None:
        async with Crafted(script) as server, session() as http:
            device = http.client()
            with pytest.raises(DeviceUnreachable, match=rf"^malformed reply: {text}$"):
                await device.get_json(server.url, timeout_s=2)
            assert await device.get_json(server.url, timeout_s=2) == {"power": 42.5}
            assert server.connections == 2  # the broken one was not reused

    run(scenario())


# timeouts, cancels, limits, leaks

def test_a_timeout_closes_the_connection_and_leaves_nothing_behind() -> None:
    def script(request: int, connection: int, head: bytes) -> Answer:
        return Answer(hang=True) if request == 2 else ok()

    async def scenario() -> None:
        async with Crafted(script) as server, session() as http:
            device = http.client()
            await device.get_json(server.url, timeout_s=2)
            with pytest.raises(DeviceUnreachable, match=r"^no answer within 100 ms$"):
                await device.get_json(server.url, timeout_s=0.1)
            assert http.open_connections == 0
            await eventually(lambda: server.open == 0)  # the device saw it closed
            assert await device.get_json(server.url, timeout_s=2) == {"power": 42.5}
            assert server.connections == 2
            no_leaks(server)

    run(scenario())


def test_a_cancelled_request_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        async with Crafted(always(Answer(hang=True))) as server, session() as http:
            poll = asyncio.create_task(http.client().get_json(server.url, timeout_s=5))
            await eventually(lambda: len(server.requests) == 1)
            poll.cancel()
            with pytest.raises(asyncio.CancelledError):
                await poll
            assert http.open_connections == 0
            await eventually(lambda: server.open == 0)
            no_leaks()

    run(scenario())


def test_a_cancel_during_the_tls_handshake_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        async with Crafted(always(Answer(hang=True))) as server, session() as http:
            # the server never speaks TLS: the handshake waits until the cancel
            url = f"https://127.0.0.1:{server.port}/"
            poll = asyncio.create_task(http.client().get_json(url, timeout_s=5))
            await eventually(lambda: server.connections == 1)
            await asyncio.sleep(0.05)
            poll.cancel()
            with pytest.raises(asyncio.CancelledError):
                await poll
            assert http.open_connections == 0
            await eventually(lambda: server.open == 0)
            no_leaks()

    run(scenario())


def test_at_most_max_connections_are_open_and_the_others_wait() -> None:
    async def scenario() -> None:
        async with Crafted(always(ok(JSON))) as server, session(max_connections=2) as http:
            server.script = lambda r, c, h: Answer(ok().data, delay_s=0.1)
            device = http.client()
            replies = await asyncio.gather(*(device.get_json(server.url, timeout_s=3)
                                             for _ in range(6)))
            assert replies == [{"power": 42.5}] * 6
            assert server.most_open == 2 and server.connections == 2
            assert http.open_connections == 2

    run(scenario())


def test_a_waiting_request_times_out_and_the_queue_goes_on() -> None:
    async def scenario() -> None:
        async with Crafted(always(Answer(ok().data, delay_s=0.3))) as server, \
                session(max_connections=1) as http:
            device = http.client()
            first = asyncio.create_task(device.get_json(server.url, timeout_s=2))
            await eventually(lambda: len(server.requests) == 1)
            with pytest.raises(DeviceUnreachable, match="no answer within 50 ms"):
                await device.get_json(server.url, timeout_s=0.05)  # waits for a place
            assert await first == {"power": 42.5}
            assert await device.get_json(server.url, timeout_s=2) == {"power": 42.5}
            assert server.connections == 1

    run(scenario())


def test_a_full_pool_closes_an_idle_connection_of_another_device() -> None:
    async def scenario() -> None:
        async with Crafted(always(ok())) as one, Crafted(always(ok())) as other, \
                session(max_connections=1) as http:
            device = http.client()
            await device.get_json(one.url, timeout_s=2)
            assert one.open == 1
            await device.get_json(other.url, timeout_s=2)
            await eventually(lambda: one.open == 0)
            assert other.open == 1 and http.open_connections == 1

    run(scenario())


def test_closing_the_session_closes_every_connection() -> None:
    async def scenario() -> None:
        async with Crafted(always(ok())) as server:
            async with session() as http:
                device = http.client()
                await asyncio.gather(*(device.get_json(server.url, timeout_s=2)
                                       for _ in range(3)))
                assert server.open == 3
            await eventually(lambda: server.open == 0)
            with pytest.raises(DeviceUnreachable, match="session is closed"):
                await device.get_json(server.url, timeout_s=2)
            no_leaks()

    run(scenario())


def test_nothing_listening_is_cannot_connect() -> None:
    port = free_port()

    async def scenario() -> None:
        async with session() as http:
            with pytest.raises(DeviceUnreachable, match=rf"^cannot connect to 127.0.0.1:{port}$"):
                await http.client().get_json(f"http://127.0.0.1:{port}/", timeout_s=2)
            assert http.open_connections == 0

    run(scenario())


def test_a_host_name_is_resolved_once_and_kept() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        calls: list[str] = []
        real = loop.getaddrinfo

        async def counting(host: str, *args: object, **kwargs: object) -> object:
            calls.append(host)
            return await real(host, *args, **kwargs)  # type: ignore[arg-type]

        loop.getaddrinfo = counting  # type: ignore[method-assign,assignment]
        async with Crafted(always(ok(JSON, "Connection: close"))) as server, session() as http:
            device = http.client()
            for _ in range(3):  # a new connection each time
                await device.get_json(f"http://localhost:{server.port}/", timeout_s=2)
            await device.get_json(server.url, timeout_s=2)  # an IP address: not resolved
            assert calls == ["localhost"] and server.connections == 4
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(client_module, "DNS_TTL_S", 0.0)  # kept no time: asked again
                async with session() as other:
                    for _ in range(2):
                        await other.client().get_json(f"http://localhost:{server.port}/",
                                                      timeout_s=2)
            assert calls == ["localhost"] * 3

    run(scenario())


def test_the_errors_never_hold_the_password() -> None:
    """Every way a request fails, with credentials of each kind."""
    hang = Crafted(always(Answer(hang=True)))
    refuse = Crafted(always(Answer(b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest '
                                   b'realm="r", nonce="n", algorithm=SHA-999\r\n'
                                   b"Content-Length: 0\r\n\r\n")))
    basic = Crafted(always(Answer(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")))

    async def scenario() -> None:
        async with hang, refuse, basic, session() as http:
            texts = []
            for kind in ("basic", "digest"):
                device = http.client(HttpAuth(kind, "admin", Secret("p", PASSWORD)))
                for url, timeout in ((hang.url, 0.05), (refuse.url, 2), (basic.url, 2),
                                     (f"http://admin:{PASSWORD}@127.0.0.1/", 2),
                                     (f"http://127.0.0.1:{free_port()}/", 2)):
                    with pytest.raises(DeviceUnreachable) as caught:
                        await device.get_json(url, timeout_s=timeout)
                    texts.append(str(caught.value))
            assert all(PASSWORD not in text for text in texts), texts
            assert "digest algorithm 'SHA-999' not supported" in texts
            assert "HTTP 401 (wrong credentials)" in texts
            assert texts.count("credentials in the URL are refused; give username and "
                               "password") == 2

    run(scenario())


# authentication against the Shelly simulators

def test_gen1_basic_auth_is_sent_with_every_request() -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(mixed_phases_noon(seed=5), password=PASSWORD) as device, \
                session() as http:
            good = http.client(HttpAuth("basic", "admin", Secret("p", PASSWORD)))
            for _ in range(3):
                assert "emeters" in await good.get_json(device.url + "/status", timeout_s=2)
            bad = http.client(HttpAuth("basic", "admin", Secret("p", "wrong")))
            with pytest.raises(DeviceUnreachable, match=r"^HTTP 401 \(wrong credentials\)$"):
                await bad.get_json(device.url + "/status", timeout_s=2)

    run(scenario())


@contextlib.asynccontextmanager
async def pro3em(password: str = PASSWORD) -> AsyncIterator[tuple[ShellyPro3EM, list[str]]]:
    """The simulated Pro 3EM, and the nonces of each 401 it sends."""
    async with ShellyPro3EM(mixed_phases_noon(seed=5), password=password) as device:
        assert device.digest is not None
        challenges: list[str] = []
        challenge = device.digest.challenge

        def counted() -> str:
            challenges.append(challenge())
            return challenges[-1]

        device.digest.challenge = counted  # type: ignore[method-assign]
        yield device, challenges


def test_digest_reuses_the_nonce_so_a_poll_costs_no_401() -> None:
    async def scenario() -> None:
        async with pro3em() as (device, challenges), session() as http:
            meter = http.client(HttpAuth("digest", "admin", Secret("p", PASSWORD)))
            for _ in range(5):
                reply = await meter.get_json(device.url + "/rpc/EM.GetStatus?id=0",
                                             timeout_s=2)
                assert "total_act_power" in reply
            assert len(challenges) == 1  # only the first request went without credentials

    run(scenario())


def test_digest_retries_once_with_the_new_nonce_when_the_old_one_expired() -> None:
    async def scenario() -> None:
        async with pro3em() as (device, challenges), session() as http:
            meter = http.client(HttpAuth("digest", "admin", Secret("p", PASSWORD)))
            url = device.url + "/rpc/EM.GetStatus?id=0"
            await meter.get_json(url, timeout_s=2)
            assert device.digest is not None
            device.digest._nonces.clear()  # the device forgot the nonce (a reboot, its age)
            assert "total_act_power" in await meter.get_json(url, timeout_s=2)
            assert len(challenges) == 2
            await meter.get_json(url, timeout_s=2)
            assert len(challenges) == 2

    run(scenario())


def test_digest_with_the_wrong_password_is_wrong_credentials_after_one_retry() -> None:
    async def scenario() -> None:
        async with pro3em(password="the-device-one") as (device, challenges), \
                session() as http:
            meter = http.client(HttpAuth("digest", "admin", Secret("p", PASSWORD)))
            with pytest.raises(DeviceUnreachable,
                               match=r"^HTTP 401 \(wrong credentials\)$") as caught:
                await meter.get_json(device.url + "/rpc/EM.GetStatus?id=0", timeout_s=2)
            assert PASSWORD not in str(caught.value)
            assert len(challenges) == 2  # unsigned, then signed once: no loop

    run(scenario())


def _stale_script() -> tuple[Script, list[dict[str, str]]]:
    """A device whose nonce 'n1' turns stale after two requests; it then answers
    401 stale=true with nonce 'n2'. MD5, an opaque, qop offered as a list."""
    seen: list[dict[str, str]] = []
    challenge = ('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="x"\r\n'
                 'WWW-Authenticate: Digest realm="dev", qop="auth,auth-int", nonce="{n}", '
                 'opaque="op\\"aque", algorithm=MD5{stale}\r\nContent-Length: 0\r\n\r\n')

    def script(request: int, connection: int, head: bytes) -> Answer:
        lines = head.decode().split("\r\n")
        target = lines[0].split(" ")[1]
        value = next((line.split(": ", 1)[1] for line in lines
                      if line.startswith("Authorization: ")), "")
        params = parse_digest(value)
        if params is None:
            return Answer(challenge.format(n="n1", stale="").encode())
        seen.append(params)
        ha1 = hashlib.md5(f"admin:dev:{PASSWORD}".encode()).hexdigest()
        ha2 = hashlib.md5(f"GET:{target}".encode()).hexdigest()
        expected = hashlib.md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}"
                               f":auth:{ha2}".encode()).hexdigest()
        current = "n1" if len(seen) <= 2 else "n2"
        if params["response"] != expected or params.get("opaque") != 'op"aque':
            return Answer(challenge.format(n=current, stale="").encode())
        if params["nonce"] != current:
            return Answer(challenge.format(n=current, stale=", stale=true").encode())
        return ok()

    return script, seen


def test_digest_takes_a_stale_nonce_s_successor_and_answers_md5_with_opaque() -> None:
    script, seen = _stale_script()

    async def scenario() -> None:
        async with Crafted(script) as server, session() as http:
            device = http.client(HttpAuth("digest", "admin", Secret("p", PASSWORD)))
            for _ in range(4):
                assert await device.get_json(server.url + "/rpc/x?id=0", timeout_s=2) \
                    == {"power": 42.5}
        assert [(p["nonce"], p["nc"]) for p in seen] == [
            ("n1", "00000001"), ("n1", "00000002"), ("n1", "00000003"), ("n2", "00000001"),
            ("n2", "00000002")]
        assert len(server.requests) == 6  # one unsigned first, one stale retry
        assert all(p["uri"] == "/rpc/x?id=0" and p["algorithm"] == "MD5" for p in seen)

    run(scenario())


def test_the_client_does_not_load_aiohttp_or_start_a_thread() -> None:
    """In a fresh interpreter: a session polls over http, an IP address, no CA store."""
    code = """
import asyncio, json, ssl, sys, threading
made = []
real = ssl.create_default_context
ssl.create_default_context = lambda *a, **k: made.append(1) or real(*a, **k)
from nodes.http.session import HttpSessionConfig, open_session

async def main():
    async def serve(reader, writer):
        await reader.readuntil(b"\\r\\n\\r\\n")
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with open_session("default", HttpSessionConfig()) as http:
        reply = await http.client().get_json(f"http://127.0.0.1:{port}/", timeout_s=2)
    server.close()
    await server.wait_closed()
    return reply

reply = asyncio.run(main())
print(json.dumps({"reply": reply, "aiohttp": any(m.startswith("aiohttp") for m in sys.modules),
                  "threads": threading.active_count(), "tls_contexts": len(made)}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == {"reply": {}, "aiohttp": False, "threads": 1,
                                      "tls_contexts": 0}
