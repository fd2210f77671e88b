"""https through the HTTP session: the TLS context (and with it the system's CA store) is
made when the first https connection starts, not before; certificate and host name are
verified, so a self-signed certificate or one for another name is refused. Certificates
are made here with the openssl command (offline); SSL_CERT_FILE stands for the system
store where a test needs a certificate it trusts."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run
from testkit.servers import LoopbackServer

from nodes.http.session import DeviceUnreachable, HttpSessionConfig, open_session

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="the openssl command makes the test certificates")

ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n' \
         b'{"ok": true}'


@dataclass(frozen=True)
class Certs:
    ca: Path  # a CA the tests may trust
    signed: tuple[Path, Path]  # (cert, key) for IP 127.0.0.1, signed by `ca`
    self_signed: tuple[Path, Path]  # (cert, key) for IP 127.0.0.1, signed by itself


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
             "-subj", "/CN=esess test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", *key, "-keyout", "dev.key", "-out", "dev.csr", "-subj", "/CN=device",
             cwd=d)
    (d / "dev.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=critical,digitalSignature\n"
                               "extendedKeyUsage=serverAuth\n"
                               "authorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", "dev.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "dev.pem", "-days", "30", "-extfile", "dev.ext", cwd=d)
    _openssl("req", "-x509", *key, "-keyout", "self.key", "-out", "self.pem", "-days", "30",
             "-subj", "/CN=device", "-addext", "subjectAltName=IP:127.0.0.1", cwd=d)
    return Certs(d / "ca.pem", (d / "dev.pem", d / "dev.key"), (d / "self.pem", d / "self.key"))


class TlsDevice(LoopbackServer):
    """An https server on a free loopback port; counts connections."""

    def __init__(self, cert: tuple[Path, Path], answer: bytes = ANSWER, *,
                 close: bool = False) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        super().__init__(tls=context)
        self.answer, self.close = answer, close

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(self.answer)
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext]:
    """The TLS contexts ssl.create_default_context made from now on."""
    contexts: list[ssl.SSLContext] = []
    real: Callable[..., ssl.SSLContext] = ssl.create_default_context

    def spy(*args: object, **kwargs: object) -> ssl.SSLContext:
        contexts.append(real(*args, **kwargs))
        return contexts[-1]

    monkeypatch.setattr(ssl, "create_default_context", spy)
    return contexts


def test_the_ca_store_loads_at_the_first_https_connection_and_a_self_signed_cert_is_refused(
        certs: Certs, made: list[ssl.SSLContext]) -> None:
    system = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    system.load_default_certs()
    system_cas = system.cert_store_stats()["x509_ca"]

    async def scenario() -> None:
        async with TlsDevice(certs.self_signed) as device, \
                open_session("default", HttpSessionConfig()) as http:
            client = http.client()
            with pytest.raises(DeviceUnreachable):  # plain http to a TLS port: no TLS context
                await client.get_text(f"http://127.0.0.1:{device.port}/", timeout_s=2)
            assert made == []
            with pytest.raises(DeviceUnreachable) as caught:
                await client.get_json(f"https://127.0.0.1:{device.port}/", timeout_s=2)
            assert str(caught.value) == \
                f"cannot connect to 127.0.0.1:{device.port}: self-signed certificate"
            with pytest.raises(DeviceUnreachable, match="self-signed certificate"):
                await client.get_json(f"https://127.0.0.1:{device.port}/", timeout_s=2)
            assert len(made) == 1  # one context for the session, made once
            context = made[0]
            assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
            assert context.cert_store_stats()["x509_ca"] == system_cas
            assert http.open_connections == 0

    run(scenario())


def test_a_trusted_certificate_is_accepted_and_its_connection_kept_alive(
        certs: Certs, made: list[ssl.SSLContext], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))  # the store: our CA alone

    async def scenario() -> None:
        async with TlsDevice(certs.signed) as device, \
                open_session("default", HttpSessionConfig()) as http:
            client = http.client()
            for _ in range(3):
                assert await client.get_json(f"https://127.0.0.1:{device.port}/status",
                                             timeout_s=2) == {"ok": True}
            assert device.connections == 1
            assert made[0].cert_store_stats()["x509_ca"] == 1

    run(scenario())


def test_a_certificate_for_another_name_is_refused(
        certs: Certs, made: list[ssl.SSLContext], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))

    async def scenario() -> None:
        async with TlsDevice(certs.signed) as device, \
                open_session("default", HttpSessionConfig()) as http:
            # localhost is 127.0.0.1, but the certificate names only the IP address
            with pytest.raises(DeviceUnreachable,
                               match=rf"^cannot connect to localhost:{device.port}: "
                                     r"Hostname mismatch") as caught:
                await http.client().get_json(f"https://localhost:{device.port}/", timeout_s=2)
            assert "'localhost'" in str(caught.value)
            assert http.open_connections == 0

    run(scenario())


def test_an_answer_until_close_over_tls_is_read_to_its_end(
        certs: Certs, made: list[ssl.SSLContext], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    answer = b"HTTP/1.1 200 OK\r\n\r\n" + b"relay: on " * 500

    async def scenario() -> None:
        async with TlsDevice(certs.signed, answer, close=True) as device, \
                open_session("default", HttpSessionConfig()) as http:
            text = await http.client().get_text(f"https://127.0.0.1:{device.port}/",
                                                timeout_s=2)
            assert text == "relay: on " * 500

    run(scenario())
