"""Where the admin API listens and the token it asks for; standard library only.

The runtime writes a new random token to `<state_dir>/admin.token` (mode 0600, atomically)
each time it starts, and listens on `<state_dir>/admin.sock` (mode 0600) or, when the
site file says `admin: {listen: tcp, port: N}`, on that loopback port. The command line
reads the token from the same file and sends it as `Authorization: Bearer <token>`; only
the user that runs the runtime can read it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowengine.atomic import write_atomically
from flowengine.formats import ADMIN_HOSTS

__all__ = ["DEFAULT_STATE_DIR", "SOCKET_NAME", "TOKEN_NAME", "AdminAddress",
           "AdminUnreachable", "drop_token", "new_token", "read_token"]

DEFAULT_STATE_DIR = "/data/es-ESS-flows/state"  # the site file's default
SOCKET_NAME = "admin.sock"
TOKEN_NAME = "admin.token"


class AdminUnreachable(Exception):
    """No runtime answers, or it refused the token: the message says which and what to do."""


@dataclass(frozen=True)
class AdminAddress:
    """The admin API of the runtime that uses `state_dir`."""

    state_dir: Path
    listen: str = "unix"  # or "tcp"
    host: str = "127.0.0.1"
    port: int | None = None

    def __post_init__(self) -> None:
        if self.listen not in ("unix", "tcp"):
            raise ValueError(f"admin listen {self.listen!r}: use unix or tcp")
        if self.listen == "tcp" and (self.port is None or self.host not in ADMIN_HOSTS):
            raise ValueError(f"admin over tcp needs a port on {' or '.join(ADMIN_HOSTS)}")

    @classmethod
    def from_site_data(cls, data: Any, state_dir: str | None = None) -> AdminAddress:
        """From a site file's parsed YAML (as far as it is valid); `state_dir` wins."""
        data = data if isinstance(data, dict) else {}
        admin = data.get("admin") if isinstance(data.get("admin"), dict) else {}
        directory = state_dir or data.get("state_dir")
        listen, port = admin.get("listen", "unix"), admin.get("port")
        host = admin.get("host", "127.0.0.1")
        if listen != "tcp" or not isinstance(port, int) or host not in ADMIN_HOSTS:
            listen, port = "unix", None
        return cls(Path(directory if isinstance(directory, str) else DEFAULT_STATE_DIR),
                   listen, host, port)

    @property
    def socket_path(self) -> Path:
        return self.state_dir / SOCKET_NAME

    @property
    def token_path(self) -> Path:
        return self.state_dir / TOKEN_NAME

    def __str__(self) -> str:
        if self.listen == "unix":
            return str(self.socket_path)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def new_token(address: AdminAddress) -> str:
    """A new random token, written to the token file (0600) before anything listens."""
    token = secrets.token_urlsafe(32)
    write_atomically(address.token_path, token + "\n", mode=0o600)
    return token


def drop_token(address: AdminAddress, token: str) -> None:
    """Remove the token file if it still holds `token` (this runtime's)."""
    with contextlib.suppress(OSError):
        if address.token_path.read_text(encoding="utf-8").strip() == token:
            os.unlink(address.token_path)


def read_token(address: AdminAddress) -> str:
    """The token of the runtime at `address`; AdminUnreachable saying why not."""
    try:
        return address.token_path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise AdminUnreachable(
            f"no runtime answers at {address}: is `esess-flowctl run` running? "
            f"(no token in {address.token_path})") from None
    except PermissionError:
        raise AdminUnreachable(
            f"cannot read {address.token_path}: run this as the user that runs the "
            "runtime") from None
    except OSError as exc:
        raise AdminUnreachable(f"cannot read {address.token_path}: {exc.strerror}") from None
