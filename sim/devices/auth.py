"""Server side of Shelly's HTTP authentication: Basic (Gen1) and SHA-256 Digest (Gen2+).

Digest follows RFC 7616 as Shelly Gen2+ devices use it: user `admin`, realm = the
device id, `qop="auth"`, algorithm SHA-256. A request without valid credentials gets
401 with `WWW-Authenticate: Digest qop="auth", realm="<id>", nonce="<n>", algorithm=SHA-256`.
Nonces stay valid while they are among the last few issued; nc is not checked for
replays (several pollers may share a nonce and race).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict

from aiohttp import web

__all__ = ["BasicAuth", "DigestAuth", "parse_digest"]

_PAIR = re.compile(r'(\w+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
_KEEP_NONCES = 64


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_digest(header: str) -> dict[str, str] | None:
    """The parameters of a `Digest ...` Authorization header, or None for other schemes."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    for key, raw in _PAIR.findall(rest):
        value = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\") if raw[:1] == '"' else raw
        params[key.lower()] = value
    return params


class BasicAuth:
    """HTTP Basic, as Shelly Gen1 devices check it."""

    def __init__(self, username: str, password: str, realm: str) -> None:
        self._expected = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._realm = realm

    def allows(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64encode(base64.b64decode(token.strip(), validate=True)).decode()
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._expected)

    def refuse(self) -> web.Response:
        return web.Response(status=401, text="401 Unauthorized",
                            headers={"WWW-Authenticate": f'Basic realm="{self._realm}"'})


class DigestAuth:
    """HTTP Digest with SHA-256 and qop=auth, user `admin`, realm = the device id."""

    username = "admin"

    def __init__(self, password: str, realm: str) -> None:
        self.realm = realm
        self._ha1 = _sha256(f"{self.username}:{realm}:{password}")
        self._nonces: OrderedDict[str, None] = OrderedDict()

    def challenge(self) -> str:
        nonce = secrets.token_hex(8)
        self._nonces[nonce] = None
        while len(self._nonces) > _KEEP_NONCES:
            self._nonces.popitem(last=False)
        return f'Digest qop="auth", realm="{self.realm}", nonce="{nonce}", algorithm=SHA-256'

    def allows(self, request: web.Request) -> bool:
        params = parse_digest(request.headers.get("Authorization", ""))
        if params is None:
            return False
        needed = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
        if any(key not in params for key in needed):
            return False
        if (params["username"] != self.username or params["realm"] != self.realm
                or params.get("algorithm", "SHA-256").upper() != "SHA-256"
                or params["qop"] != "auth" or params["nonce"] not in self._nonces
                or params["uri"] != request.raw_path):
            return False
        ha2 = _sha256(f"{request.method}:{params['uri']}")
        expected = _sha256(":".join(
            (self._ha1, params["nonce"], params["nc"], params["cnonce"], "auth", ha2)))
        return hmac.compare_digest(expected, params["response"].lower())

    def refuse(self) -> web.Response:
        return web.json_response(
            {"code": 401, "message": "unauthorized"}, status=401,
            headers={"WWW-Authenticate": self.challenge()})
