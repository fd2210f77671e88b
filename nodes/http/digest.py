"""HTTP Digest authentication, client side (RFC 7616, and RFC 2069 without qop).

Shelly Gen2+ devices answer a request without credentials with
`401` and `WWW-Authenticate: Digest qop="auth", realm="<device id>", nonce="<n>",
algorithm=SHA-256`. `Digest.challenged` takes that challenge; from then on
`Digest.authorization` signs every request with it (preemptively: no 401 round trip
per poll), `nc` counting up per nonce, a fresh random `cnonce` each time. A later 401
with a new nonce (or `stale=true`) replaces it. Algorithms: MD5, MD5-sess, SHA-256,
SHA-256-sess; qop `auth` only (`auth-int` signs the body, which a GET has not).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Digest", "DigestError", "parse_challenges"]

_HASHES: dict[str, Callable[..., Any]] = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_SPACE = " \t"
_TOKEN_END = ' \t,="'


class DigestError(Exception):
    """A digest challenge this client cannot answer (its text names what, never secrets)."""


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """The challenges of one `WWW-Authenticate` value: [(scheme in lower case, {name in
    lower case: value})]. Quoted strings may hold commas and backslash escapes; one
    value may hold several challenges (`Basic realm="a", Digest realm="b", ...`).
    Whatever does not parse is skipped, never an exception."""
    out: list[tuple[str, dict[str, str]]] = []
    params: dict[str, str] | None = None
    i, n = 0, len(header)
    while i < n:
        while i < n and header[i] in " \t,":
            i += 1
        j = i
        while j < n and header[j] not in _TOKEN_END:
            j += 1
        token = header[i:j]
        k = j
        while k < n and header[k] in _SPACE:
            k += 1
        if token and params is not None and k < n and header[k] == "=":
            k += 1
            while k < n and header[k] in _SPACE:
                k += 1
            if k < n and header[k] == '"':
                value, k = _quoted(header, k + 1)
            else:
                end = k
                while end < n and header[end] not in " \t,":
                    end += 1
                value, k = header[k:end], end
            params[token.lower()] = value
            i = k
        elif token:
            params = {}
            out.append((token.lower(), params))
            i = j
        else:
            i = j + 1  # a stray '=' or '"'
    return out


def _quoted(text: str, i: int) -> tuple[str, int]:
    """The quoted string that starts at `i` (after its opening quote), and the index
    after its closing quote; an unterminated one runs to the end."""
    end = text.find('"', i)
    if end >= 0 and text.find("\\", i, end) < 0:  # the usual case: no escapes
        return text[i:end], end + 1
    out: list[str] = []
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    return "".join(out), n


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Challenge:
    """One nonce of one protection space, and how to answer it."""

    __slots__ = ("algorithm", "ha1", "hash", "nc", "nonce", "opaque", "qop", "realm",
                 "sess")

    def __init__(self, params: dict[str, str], username: str, password: str) -> None:
        self.realm = params.get("realm", "")
        self.nonce = params.get("nonce", "")
        if not self.nonce:
            raise DigestError("digest challenge without a nonce")
        self.opaque = params.get("opaque")
        self.algorithm = params.get("algorithm")  # echoed as the device spelled it
        name = (self.algorithm or "MD5").upper()
        self.sess = name.endswith("-SESS")
        hash_ = _HASHES.get(name.removesuffix("-SESS"))
        if hash_ is None:
            raise DigestError(f"digest algorithm {name[:40]!r} not supported")
        self.hash = hash_
        qops = params.get("qop")
        if qops is None:
            self.qop: str | None = None  # RFC 2069
        elif "auth" in (q.strip().lower() for q in qops.split(",")):
            self.qop = "auth"
        else:
            raise DigestError(f"digest qop {qops[:40]!r} not supported (only auth)")
        if self.sess and self.qop is None:
            raise DigestError(f"digest algorithm {name[:40]!r} needs a qop")
        self.ha1 = self._h(f"{username}:{self.realm}:{password}")
        self.nc = 0

    def _h(self, text: str) -> str:
        return str(self.hash(text.encode("utf-8")).hexdigest())


class Digest:
    """One device's digest credentials and the last challenge of each origin."""

    __slots__ = ("_challenges", "_password", "username")

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password
        self._challenges: dict[object, _Challenge] = {}

    def __repr__(self) -> str:
        return f"Digest(username={self.username!r}, password='***')"

    def has_challenge(self, origin: object) -> bool:
        return origin in self._challenges

    def challenged(self, origin: object, headers: Iterable[str]) -> bool:
        """Take the Digest challenge among a 401's `WWW-Authenticate` values; True when
        a retry with it makes sense (a new nonce, or the old one marked stale), False
        when there is none or it repeats the nonce just refused (wrong credentials).
        DigestError for a challenge this client cannot answer."""
        params = next((p for header in headers for scheme, p in parse_challenges(header)
                       if scheme == "digest"), None)
        if params is None:
            return False
        old = self._challenges.get(origin)
        stale = params.get("stale", "").lower() == "true"
        if old is not None and old.nonce == params.get("nonce") and not stale:
            return False
        self._challenges[origin] = _Challenge(params, self.username, self._password)
        return True

    def authorization(self, origin: object, method: str, uri: str) -> str | None:
        """The `Authorization` value for one request, None before the first challenge."""
        ch = self._challenges.get(origin)
        if ch is None:
            return None
        ha2 = ch._h(f"{method}:{uri}")
        head = (f"Digest username={_quote(self.username)}, realm={_quote(ch.realm)}, "
                f"nonce={_quote(ch.nonce)}, uri={_quote(uri)}")
        if ch.qop is None:
            response = ch._h(f"{ch.ha1}:{ch.nonce}:{ha2}")
            tail = ""
        else:
            ch.nc += 1
            nc = f"{ch.nc:08x}"
            cnonce = secrets.token_hex(8)
            ha1 = ch._h(f"{ch.ha1}:{ch.nonce}:{cnonce}") if ch.sess else ch.ha1
            response = ch._h(f"{ha1}:{ch.nonce}:{nc}:{cnonce}:auth:{ha2}")
            tail = f', qop=auth, nc={nc}, cnonce="{cnonce}"'
        if ch.algorithm is not None:
            head += f", algorithm={ch.algorithm}"
        if ch.opaque is not None:
            tail += f", opaque={_quote(ch.opaque)}"
        return f'{head}, response="{response}"{tail}'
