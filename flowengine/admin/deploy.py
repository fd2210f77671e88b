"""Deploy: validate everything first, then restart only the flows whose plan changed.

A flow is unchanged when the fingerprint of its resolved plan (node ids, types, configs
after var substitution, secrets by a hash of their value, wires, the flow's vars) is the
one running; object identity plays no part, so a site file read again is unchanged.
Per flow the deploy says `unchanged`, `restarted`, `added`, `removed`, `rolled back: why`
(the new version did not start, the old one runs again) or `failed: why` (nothing to
roll back to; tried again with backoff, as `run` does).

Nothing changes when any file has an error or the change cannot be hot-deployed (the
site's connections: every flow shares them). Flows stopped with `stop` stay stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from flowengine.errors import ConfigError, FlowStartError
from flowengine.model import FlowSpec, Secret

if TYPE_CHECKING:
    from flowengine.loader import Site
    from flowengine.plan import FlowPlan
    from flowengine.runtime import Runtime

__all__ = ["Deployer", "Loaded", "fingerprint"]

log = logging.getLogger(__name__)


class Loaded(Protocol):
    """What the command line's loader gives: every plan, or every error (cli.Loaded)."""

    plans: list[FlowPlan]
    errors: list[ConfigError]
    warnings: list[str]
    sites: list[Site]


Load = Callable[[Sequence[str], Mapping[str, Any]], Loaded]


def _canonical(value: Any) -> Any:
    if isinstance(value, Secret):  # compared by a hash, never kept as text
        return {"secret": hashlib.sha256(value.reveal().encode()).hexdigest()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _digest(value: Any) -> str:
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(spec: FlowSpec) -> str:
    """What a flow runs, as one hash: equal plans, equal fingerprints."""
    return _digest({
        "id": spec.id, "vars": spec.vars,
        "nodes": sorted(({"id": n.id, "type": n.type, "config": n.config,
                          "wires": sorted([w.port, w.target, w.target_port] for w in n.wires)}
                         for n in spec.nodes), key=lambda n: n["id"]),
    })


def _connections(site: Site | None) -> str:
    return _digest(None if site is None else site.connections)


def _settings(site: Site | None) -> dict[str, Any]:
    """The site settings that apply only when the runtime starts."""
    if site is None:
        return {}
    return {"state_dir": site.state_dir, "log": [site.log_level, site.log_file],
            "guardian": site.guardian_timeout_s, "observe": [o[:2] for o in site.observe],
            "admin": [site.admin_listen, site.admin_host, site.admin_port]}


class Deployer:
    """The flows a runtime should run (the last deploy), and changing them."""

    def __init__(self, runtime: Runtime, plans: Sequence[FlowPlan], *, site: Site | None,
                 load: Load, variables: Mapping[str, Any]) -> None:
        self.runtime = runtime
        self.plans: dict[str, FlowPlan] = {p.spec.id: p for p in plans}
        self.prints = {fid: fingerprint(p.spec) for fid, p in self.plans.items()}
        self.stopped: set[str] = set()
        self.site = site
        self.lock = asyncio.Lock()  # one deploy, stop or start at a time
        self._load = load
        self._variables = dict(variables)

    # -- observation -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Runtime.snapshot() with the stopped flows, in the order of the site file."""
        flows = self.runtime.snapshot()
        for fid in self.stopped:
            flows[fid] = {"description": self.plans[fid].spec.description, "nodes": {},
                          "status": "stopped",
                          "text": "by `esess-flowctl stop`; `esess-flowctl start` runs it again"}
        order = {fid: i for i, fid in enumerate(self.plans)}
        return dict(sorted(flows.items(), key=lambda item: order.get(item[0], len(order))))

    # -- deploy --------------------------------------------------------------------------------
    async def deploy(self, files: Sequence[str],
                     variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validate `files` (the whole new set of flows, as `run` takes them), then apply.

        {"ok": False, "errors": [...]} or {"ok": False, "refused": why} changed nothing;
        otherwise {"ok": bool, "flows": [{"flow", "result", "ok"}], "notes": [...]}.
        """
        loaded = self._load(files, variables or self._variables)
        if loaded.errors:
            return {"ok": False, "errors": [e.to_json() for e in
                                            sorted(loaded.errors, key=ConfigError.sort_key)]}
        why = self._refusal(loaded)
        if why:
            return {"ok": False, "refused": why}
        site = loaded.sites[0] if loaded.sites else None
        notes = [f"{name} changed: it applies when the runtime starts again"
                 for name, value in _settings(site).items()
                 if value != _settings(self.site).get(name)] if self.site else []
        new = {p.spec.id: p for p in loaded.plans}
        results: list[dict[str, Any]] = []
        for fid in [f for f in self.plans if f not in new]:
            await self._cancel_retry(fid)
            await self.runtime.stop_flow(fid, reason="removed by deploy")
            self.stopped.discard(fid)
            del self.plans[fid], self.prints[fid]
            results.append(_result(fid, "removed"))
        changed = [fid for fid in new if fid in self.plans]
        added = [fid for fid in new if fid not in self.plans]
        for fid in changed:
            results.append(await self._change(new[fid]))
        for fid in added:
            results.append(await self._add(new[fid]))
        if site is not None:
            self.site = site
        return {"ok": all(r["ok"] for r in results), "flows": results,
                "notes": notes, "warnings": loaded.warnings}

    def _refusal(self, loaded: Loaded) -> str | None:
        if len(loaded.sites) > 1:
            return "give one site file (" + ", ".join(s.file for s in loaded.sites) + ")"
        site = loaded.sites[0] if loaded.sites else None
        if self.site is not None and site is None:
            return (f"the runtime runs the site file {self.site.file}: deploy a site file "
                    "(it reads the flow files it enables again)")
        if self.site is None and site is not None:
            return ("the runtime runs flow files without a site file, so without its "
                    f"connections: restart it with `esess-flowctl run {site.file}`")
        if site is not None:
            enabled = {s.id for s in site.flows}
            extra = [p.spec for p in loaded.plans if p.spec.id not in enabled]
            if extra:
                return (f"flow file {extra[0].file} is not enabled in the site file "
                        f"{site.file}: add it under flows: (or leave it out)")
        if _connections(site) != _connections(self.site):
            return ("the site's connections changed: they cannot change while the runtime "
                    "runs; restart it (on a GX: svc -t /service/es-ESS-flows) to apply them")
        return None

    async def _change(self, plan: FlowPlan) -> dict[str, Any]:
        fid = plan.spec.id
        if fingerprint(plan.spec) == self.prints[fid]:
            if fid in self.stopped:
                return _result(fid, "unchanged (stopped)")
            if fid in self.runtime.pending:
                return _result(fid, "unchanged (not started yet; tried again with backoff)")
            return _result(fid, "unchanged")
        if fid in self.stopped:
            self._keep(plan)
            return _result(fid, "updated (stopped; `esess-flowctl start` runs it)")
        if fid not in self.runtime.flows:  # never started (pending): nothing to roll back to
            await self._cancel_retry(fid)
            result = await self._add(plan)
            return {**result, "result": "restarted"} if result["ok"] else result
        try:
            await self.runtime.replace_flow(plan)
        except FlowStartError as exc:
            if fid in self.runtime.flows:
                return _result(fid, f"rolled back: {_why(fid, exc)}", ok=False)
            # the old version did not start again either: keep trying it, as run does
            first = exc.__context__
            new_why = _why(fid, first) if isinstance(first, FlowStartError) else "?"
            self.runtime.retry_flow(self.plans[fid].fresh(), exc)
            return _result(fid, f"rolled back: {new_why}; the old version did not start "
                                f"either: {_why(fid, exc)}; tried again with backoff", ok=False)
        self._keep(plan)
        return _result(fid, "restarted")

    async def _add(self, plan: FlowPlan) -> dict[str, Any]:
        fid = plan.spec.id
        self._keep(plan)
        try:
            await self.runtime.start_flow(plan)
        except FlowStartError as exc:
            self.runtime.retry_flow(plan.fresh(), exc)
            return _result(fid, f"failed: {_why(fid, exc)}; tried again with backoff", ok=False)
        return _result(fid, "added")

    def _keep(self, plan: FlowPlan) -> None:
        self.plans[plan.spec.id] = plan
        self.prints[plan.spec.id] = fingerprint(plan.spec)

    async def _cancel_retry(self, fid: str) -> None:
        pending = self.runtime.pending.get(fid)
        if pending is None:
            return
        if pending.task is not None:
            pending.task.cancel()
            await asyncio.gather(pending.task, return_exceptions=True)
        self.runtime.pending.pop(fid, None)

    # -- stop and start --------------------------------------------------------------------------
    async def stop(self, fid: str) -> str:
        """Stop a flow until `start` (or the runtime's next start); what happened."""
        self._known(fid)
        if fid in self.stopped:
            return "stopped already"
        await self._cancel_retry(fid)
        await self.runtime.stop_flow(fid, reason="esess-flowctl stop")
        self.stopped.add(fid)
        return "stopped"

    async def start(self, fid: str) -> str:
        """Start a flow from its last deployed plan; FlowStartError if it does not start."""
        self._known(fid)
        if fid in self.runtime.flows:
            return "running already"
        await self._cancel_retry(fid)
        await self.runtime.start_flow(self.plans[fid].fresh())
        self.stopped.discard(fid)
        return "started"

    def _known(self, fid: str) -> None:
        if fid not in self.plans:
            known = ", ".join(sorted(self.plans)) or "none"
            raise LookupError(f"no flow '{fid}' (flows: {known})")


def _result(fid: str, text: str, *, ok: bool = True) -> dict[str, Any]:
    return {"flow": fid, "result": text, "ok": ok}


def _why(fid: str, error: BaseException | None) -> str:
    text = str(error)
    prefix = f"flow '{fid}': "
    return text[len(prefix):] if text.startswith(prefix) else text
