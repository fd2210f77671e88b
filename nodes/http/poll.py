"""http.poll: poll a device's JSON status over HTTP and emit the values a flow names.

    - id: meter
      type: http.poll
      url: http://192.168.1.50/status
      auth: basic                        # none, basic (Shelly Gen1) or digest (Gen2+)
      password: !secret shelly_password
      values:                            # output topic -> JSON pointer into the reply
        power: /total_power
        l1_power: /emeters/0/power

Polls start every `interval_ms`; one still running skips the next turn, so a slow
device never gets requests piled up. A pointer that does not resolve gives None for its topic (and a
warning status). After `offline_after` failed polls in a row every topic becomes None
and the status says "offline"; the first good answer brings the values back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flowengine.errors import ConfigError
from flowengine.model import JsonValue, NodeSpec, Secret
from flowengine.node import node_type, option
from nodes.http.poller import Poller
from nodes.http.session import HttpAuth, JsonClient

__all__ = ["HttpPoll", "HttpPollConfig", "resolve_pointer"]


@dataclass(frozen=True, kw_only=True)
class HttpPollConfig:
    url: str = option("the URL to GET", pattern=r"^https?://",
                      example="http://192.168.1.50/status")
    values: dict[str, str] = option("output topic -> JSON pointer (RFC 6901) into the reply",
                                    example={"power": "/total_power"},
                                    schema={"minProperties": 1,
                                            "additionalProperties": {"type": "string",
                                                                     "pattern": "^(/.*)?$"}})
    interval_ms: float = option("time between the starts of two polls (a poll still running "
                                "skips the next turn)",
                                default=1000, minimum=100)
    timeout_ms: float = option("give up on one poll after this long", default=800, minimum=50)
    offline_after: int = option("failed polls in a row before the values become invalid",
                                default=3, minimum=1)
    auth: Literal["none", "basic", "digest"] = option(
        "authentication: basic for Shelly Gen1, digest (SHA-256) for Gen2 and later",
        default="none")
    username: str = option("user name (Shelly Gen2+ always uses admin)", default="admin")
    password: Secret | None = option("password; use !secret", default=None)


def resolve_pointer(document: Any, pointer: str) -> JsonValue:
    """The value at a JSON pointer, or None when the path does not exist."""
    if pointer == "":
        return document
    node = document
    for raw in pointer[1:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if key not in node:
                return None
            node = node[key]
        elif isinstance(node, list) and _is_index(key) and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


@node_type("http.poll", config=HttpPollConfig)
class HttpPoll(Poller[HttpPollConfig]):
    """Poll a JSON endpoint over HTTP; emit selected values, None while offline."""

    def __init__(self, config: HttpPollConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        if config.auth != "none" and config.password is None:
            raise ConfigError(f"auth '{config.auth}' needs a password",
                              mark=self.mark_of("auth"), hint="add `password: !secret <name>`")
        self.interval_ms = config.interval_ms
        self.timeout_ms = config.timeout_ms
        self.offline_after = config.offline_after
        self._missing: set[str] = set()

    @classmethod
    def output_topics(cls, config: HttpPollConfig) -> frozenset[str]:
        return frozenset({*config.values, "connected"})

    def auth(self) -> HttpAuth:
        return HttpAuth(self.config.auth, self.config.username, self.config.password)

    def offline_topics(self) -> Iterable[str]:
        return self.config.values

    def describe(self) -> str:
        if self._missing:
            return f"online; not in the reply: {', '.join(sorted(self._missing))}"
        return f"online, {len(self.config.values)} values"

    async def fetch(self, client: JsonClient) -> Mapping[str, JsonValue]:
        reply = await client.get_json(self.config.url, timeout_s=self.timeout_ms / 1000)
        values = {topic: resolve_pointer(reply, pointer)
                  for topic, pointer in self.config.values.items()}
        missing = {topic for topic, pointer in self.config.values.items()
                   if not _present(reply, pointer)}
        if missing != self._missing:
            if missing:
                self.ctx.log.warning("not in the reply: %s", ", ".join(
                    f"{t} ({self.config.values[t]})" for t in sorted(missing)))
            self._missing = missing
        return values


def _is_index(key: str) -> bool:
    """An array index int() can read: a few ASCII digits (not '²', not 5000 digits)."""
    return key.isascii() and key.isdigit() and len(key) <= 18


def _present(document: Any, pointer: str) -> bool:
    """True when the pointer resolves (to null, possibly)."""
    if pointer == "":
        return True
    parent, _, last = pointer.rpartition("/")
    container = resolve_pointer(document, parent)
    key = last.replace("~1", "/").replace("~0", "~")
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and _is_index(key) and int(key) < len(container)
