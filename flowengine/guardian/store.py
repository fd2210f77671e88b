"""The guardian's pending safe actions on disk, for the start after a power loss.

A GX that loses power keeps its ESS setpoint (it lives in localsettings), so whatever
was registered when the power went is applied at the next start, before the runtime.
The file is written only when a registration changes (rare: a node's first drive, a
redeploy), atomically, and removed when nothing is pending.

Passwords are not stored in clear: each is sealed with a key kept in a separate file
readable only by its owner (a SHA-256 counter-mode keystream and an HMAC-SHA-256 tag,
standard library only). That keeps them out of backups, support bundles and pasted
files; it cannot protect them from someone who can read both files as root.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from flowengine.atomic import write_atomically
from flowengine.guardian.actions import SECRET_FIELDS, ActionError, check_action

TYPE_CHECKING = False  # typing costs the guardian 2 MB resident; mypy still sees these
if TYPE_CHECKING:
    from typing import Any

__all__ = ["PendingStore"]

log = logging.getLogger("flowengine.guardian")

FILE_NAME = "guardian-pending.json"
KEY_NAME = "guardian.key"
_SEALED = "sealed:v1:"


class PendingStore:
    """Pending actions by key ("flow/node"); `directory` None keeps nothing on disk."""

    def __init__(self, directory: Path | None) -> None:
        self.path = None if directory is None else directory / FILE_NAME
        self._key_path = None if directory is None else directory / KEY_NAME
        self._key: bytes | None = None

    def load(self) -> dict[str, dict[str, Any]]:
        """What an earlier run left pending; a damaged file is set aside and logged."""
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            stored = data["actions"]
            if not isinstance(stored, dict):
                raise TypeError("'actions' is not an object")
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            aside = self.path.with_name(self.path.name + ".bad")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.error("%s could not be read (%s); set aside as %s", self.path, exc,
                      aside.name)
            return {}
        out: dict[str, dict[str, Any]] = {}
        for key, action in stored.items():
            try:
                out[str(key)] = check_action(self._open(action))
            except ActionError as exc:
                log.error("pending action %s is unusable: %s", key, exc)
        return out

    def save(self, actions: dict[str, dict[str, Any]]) -> None:
        """Replace what is on disk (atomically); no file when nothing is pending."""
        if self.path is None:
            return
        if not actions:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        sealed = {key: self._seal(action) for key, action in actions.items()}
        write_atomically(self.path, json.dumps({"version": 1, "actions": sealed}, indent=1))

    # -- sealing -----------------------------------------------------------------------------
    def _seal(self, action: dict[str, Any]) -> dict[str, Any]:
        out = dict(action)
        for name in SECRET_FIELDS:
            if isinstance(out.get(name), str):
                out[name] = _SEALED + _seal(self._secret_key(), out[name].encode())
        return out

    def _open(self, action: Any) -> Any:
        if not isinstance(action, dict):
            return action
        out = dict(action)
        for name in SECRET_FIELDS:
            text = out.get(name)
            if isinstance(text, str) and text.startswith(_SEALED):
                try:
                    out[name] = _open(self._secret_key(), text[len(_SEALED):]).decode()
                except ValueError as exc:
                    raise ActionError(f"its {name} cannot be unsealed ({exc})") from exc
        return out

    def _secret_key(self) -> bytes:
        if self._key is not None:
            return self._key
        assert self._key_path is not None
        try:
            key = self._key_path.read_bytes()
        except FileNotFoundError:
            key = os.urandom(32)
            self._key_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(key)
                file.flush()
                os.fsync(file.fileno())
        if len(key) != 32:
            raise ValueError(f"{self._key_path} is damaged")
        self._key = key
        return key


# hashlib loads OpenSSL (about 4 MB resident): imported only when a password is sealed

def _keystream(key: bytes, nonce: bytes, size: int) -> bytes:
    import hashlib

    blocks = (hashlib.sha256(key + nonce + i.to_bytes(4, "big")).digest()
              for i in range((size + 31) // 32))
    return b"".join(blocks)[:size]


def _seal(key: bytes, plain: bytes) -> str:
    import base64
    import hashlib
    import hmac

    nonce = os.urandom(16)
    cipher = bytes(a ^ b for a, b in zip(plain, _keystream(key, nonce, len(plain)),
                                         strict=True))
    tag = hmac.new(key, nonce + cipher, hashlib.sha256).digest()[:16]
    return base64.b64encode(nonce + tag + cipher).decode()


def _open(key: bytes, text: str) -> bytes:
    import base64
    import hashlib
    import hmac

    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ValueError("not base64") from exc
    nonce, tag, cipher = raw[:16], raw[16:32], raw[32:]
    if len(tag) != 16 or not hmac.compare_digest(
            tag, hmac.new(key, nonce + cipher, hashlib.sha256).digest()[:16]):
        raise ValueError("wrong key or damaged")
    return bytes(a ^ b for a, b in zip(cipher, _keystream(key, nonce, len(cipher)),
                                       strict=True))
