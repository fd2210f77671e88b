"""A real mosquitto on a free loopback port, and a throwaway CA for TLS tests."""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port

__all__ = ["Mosquitto", "make_ca", "mosquitto_binary"]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None)
    if found is None:
        pytest.fail("mosquitto is not installed: run scripts/system-deps, or "
                    "`sudo apt-get install mosquitto` (Debian/Ubuntu)", pytrace=False)
    return found


class Mosquitto:
    """One mosquitto process with a generated config; `stop()` and `start()` at will."""

    def __init__(self, directory: Path, *, tls: dict[str, Path] | None = None) -> None:
        self.directory = directory
        self.port = free_port()
        self.host = "127.0.0.1"
        self.tls = tls
        self.config = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None
        # as root, mosquitto would switch to the user "mosquitto", who cannot read our files
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1",
                 "allow_anonymous true",
                 "persistence false", f"log_dest file {self.log}", "log_type all"]
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}",
                      f"keyfile {tls['key']}"]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.process = subprocess.Popen([mosquitto_binary(), "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}\n{self._log_tail()}")
            with (contextlib.suppress(OSError),
                  socket.create_connection((self.host, self.port), timeout=0.2)):
                return
            time.sleep(0.02)  # waiting for a child process to listen, not for a result
        raise RuntimeError(f"mosquitto did not listen on {self.port}\n{self._log_tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, even of a frozen (SIGSTOPped) broker; nothing is kept."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(5)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def _log_tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""

    def settings(self, **extra: Any) -> dict[str, Any]:
        """Site-file style settings of a connection to this broker."""
        return {"host": self.host, "port": self.port, **extra}


def make_ca(directory: Path, name: str) -> dict[str, Path]:
    """A throwaway CA and a server certificate for localhost/127.0.0.1 signed by it."""
    ca_key, ca = directory / f"{name}-ca.key", directory / f"{name}-ca.pem"
    key, csr, cert = (directory / f"{name}-server.key", directory / f"{name}-server.csr",
                      directory / f"{name}-server.pem")
    ext = directory / f"{name}-ext.cnf"
    ext.write_text(textwrap.dedent("""
        basicConstraints = CA:FALSE
        subjectAltName = DNS:localhost, IP:127.0.0.1
        keyUsage = digitalSignature, keyEncipherment
        extendedKeyUsage = serverAuth
    """))

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        f"/CN={name} test CA", "-keyout", str(ca_key), "-out", str(ca))
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(key), "-out", str(csr))
    ssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return {"ca": ca, "cert": cert, "key": key}
