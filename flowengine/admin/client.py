"""The command line's side of the admin API: HTTP over the unix socket (or loopback TCP),
standard library only, so `status` starts fast on a GX."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

from flowengine.admin.access import AdminAddress, AdminUnreachable, read_token

__all__ = ["AdminClient", "AdminReply"]


class AdminReply:
    """An answer: its HTTP status and JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body

    @property
    def error(self) -> str | None:
        if self.status < 400:
            return None
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return str(self.body["error"])
        return f"HTTP {self.status}"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class AdminClient:
    """Requests to the runtime at `address`; AdminUnreachable when none answers."""

    def __init__(self, address: AdminAddress) -> None:
        self.address = address
        self._token = read_token(address)

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.address.listen == "unix":
            return _UnixConnection(str(self.address.socket_path), timeout)
        return http.client.HTTPConnection(self.address.host, self.address.port,
                                          timeout=timeout)

    def _send(self, method: str, path: str, body: Any, timeout: float | None
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        connection = self._connection(timeout)
        headers = {"Authorization": f"Bearer {self._token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=data, headers=headers)
            return connection, connection.getresponse()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            connection.close()
            raise AdminUnreachable(f"no runtime answers at {self.address}: is `esess-flowctl "
                                   "run` running?") from exc
        except TimeoutError as exc:
            connection.close()
            raise AdminUnreachable(f"the runtime at {self.address} did not answer within "
                                   f"{timeout:g} s") from exc
        except OSError as exc:
            connection.close()
            raise AdminUnreachable(f"cannot reach the runtime at {self.address}: "
                                   f"{exc.strerror or exc}") from exc

    def request(self, method: str, path: str, body: Any = None, *,
                timeout: float = 10.0) -> AdminReply:
        connection, response = self._send(method, path, body, timeout)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise AdminUnreachable(f"the runtime at {self.address} broke off: {exc}") from exc
        finally:
            connection.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        reply = AdminReply(response.status, parsed)
        if response.status == 401:
            raise AdminUnreachable(f"the runtime at {self.address} refused the token: "
                                   f"{reply.error}")
        return reply

    def stream(self, path: str) -> Iterator[dict[str, Any]]:
        """Each NDJSON line of a streamed answer, until the runtime ends it; an error
        answer comes as one {"error": ...}."""
        connection, response = self._send("GET", path, None, 10.0)
        try:
            if response.status >= 400:
                reply = AdminReply(response.status, _json(response.read()))
                if response.status == 401:
                    raise AdminUnreachable(f"the runtime at {self.address} refused the "
                                           f"token: {reply.error}")
                yield {"error": reply.error}
                return
            if connection.sock is not None:
                connection.sock.settimeout(None)  # a quiet node may say nothing for long
            for raw in response:
                item = _json(raw)
                if isinstance(item, dict):
                    yield item
        except (OSError, http.client.HTTPException):
            return  # the runtime went away: the stream ends
        finally:
            connection.close()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
