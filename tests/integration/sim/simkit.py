"""Helpers for the device simulator tests: a model at noon, sample payloads, HTTP calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from sim import EnergyModel, mixed_phases_noon

SAMPLES = Path(__file__).resolve().parent / "samples"


def noon_model() -> EnergyModel:
    """A sunny noon, battery full, an oven on L1: L1 imports while L2 and L3 export."""
    return mixed_phases_noon(seed=11)


def sample(name: str) -> Any:
    """A recorded payload from samples/ (copied from the shared device reference)."""
    return json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))


async def get_json(url: str, *, basic: tuple[str, str] | None = None,
                   password: str | None = None) -> tuple[int, Any]:
    """GET with Basic auth (`basic` = user, password) or aiohttp's digest middleware
    (`password`, user admin); returns the status and the JSON body (None if not JSON)."""
    middlewares = () if password is None else (aiohttp.DigestAuthMiddleware("admin", password),)
    headers = {} if basic is None else {"Authorization": aiohttp.encode_basic_auth(*basic)}
    async with aiohttp.ClientSession(middlewares=middlewares) as session, \
            session.get(url, headers=headers) as resp:
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body
