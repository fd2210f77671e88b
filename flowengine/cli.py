"""esess-flowctl: validate, run, status, deploy, watch, stop, start, schemas, list-nodes,
demo, sim.

The one place that starts the event loop and installs signal handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowengine import __version__
from flowengine.admin.access import AdminAddress
from flowengine.connections import Connections
from flowengine.errors import FlowEngineError, FlowStartError
from flowengine.formats import flow_schema, node_file_schema, site_schema
from flowengine.guard import ENV_FD, GuardianLink
from flowengine.launch import exec_guardian, guardian_settings, guardian_timeout, on_gx
from flowengine.loader import Site
from flowengine.log import configure_logging, parse_level
from flowengine.plan import FlowPlan
from flowengine.preflight import Loaded, expand_files, load_files, parse_vars, print_errors
from flowengine.registry import Registry
from flowengine.runtime import Runtime
from flowengine.schema import config_schema
from flowengine.state import StateStore
from flowengine.threads import install as install_executor
from flowengine.watchdog import LoopWatchdog, WakeupCounter

if TYPE_CHECKING:
    from flowengine.admin.server import AdminServer

__all__ = ["main"]

log = logging.getLogger("flowengine.cli")

REPO = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = REPO / "schemas"
NODES_DOC = REPO / "docs" / "nodes.md"
GX_SITE = "/data/es-ESS-flows/site.yaml"  # where the installer puts the site file


# -- commands ---------------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    if not args.files and not on_gx():
        print("esess-flowctl validate: give a site or flow file, or a directory "
              f"(on a GX the default is {GX_SITE})", file=sys.stderr)
        return 2
    files = expand_files(args.files or [GX_SITE])
    if not files:
        print(f"esess-flowctl validate: no *.yaml in {', '.join(args.files)}", file=sys.stderr)
        return 2
    registry = Registry.default()
    loaded = load_files(files, registry, variables=parse_vars(args.var), for_run=False)
    if not args.json:
        for warning in loaded.warnings:
            print(warning, file=sys.stderr)
    if loaded.errors:
        print_errors(loaded.errors, args.json)
        return 1
    if args.json:
        json.dump({"valid": True, "flows": [
            {"id": p.spec.id, "file": p.spec.file, "nodes": len(p.nodes)} for p in loaded.plans
        ], "warnings": loaded.warnings}, sys.stdout, indent=2)
        print()
    else:
        for plan in loaded.plans:
            print(f"ok: flow '{plan.spec.id}' ({len(plan.nodes)} nodes) in {plan.spec.file}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    guarded = on_gx() if args.guardian is None else args.guardian
    if guarded and ENV_FD not in os.environ:
        # Become the guardian at once, before the files are checked: what an unclean end
        # left pending is applied even when the site file has an error now, and a file
        # with errors is tried again with the guardian's backoff, not in a tight loop.
        settings = guardian_settings(args.file)
        exec_guardian(args.argv, state_dir=args.state_dir or settings.get("state_dir"),
                      timeout_s=args.guardian_timeout or settings.get("timeout_s", 10.0),
                      log_level=args.log_level or settings.get("level", "INFO"))
    registry = Registry.default()
    loaded = load_files([args.file], registry, variables=parse_vars(args.var), for_run=True)
    if loaded.errors:
        print_errors(loaded.errors, False)
        print("nothing was started", file=sys.stderr)
        return 1
    site = loaded.site
    level = args.log_level or (site.log_level if site else "INFO")
    state_dir = args.state_dir or (site.state_dir if site else None)
    configure_logging(level, file=args.log_file or (site.log_file if site else None))
    connections = Connections(registry.connection_kinds, site.connections if site else {},
                              standalone=site is None)
    runtime = Runtime(registry, state=StateStore(state_dir), connections=connections,
                      guardian=GuardianLink.from_environment())
    observe = [(kind, name) for kind, name, _ in site.observe] if site else []
    variables = parse_vars(args.var)

    def load(files: Sequence[str], values: Mapping[str, Any]) -> Loaded:
        return load_files(files, registry, variables=dict(values), for_run=True)

    setup = AdminSetup(_admin_address(site, state_dir), site, load, variables)
    return asyncio.run(_run(runtime, loaded.plans, args.duration, observe, setup))


@dataclasses.dataclass(frozen=True)
class AdminSetup:
    """What `run` needs to open the admin API (None address: no state dir, no API)."""

    address: AdminAddress | None
    site: Site | None
    load: Callable[[Sequence[str], Mapping[str, Any]], Loaded]
    variables: dict[str, Any]


def _admin_address(site: Site | None, state_dir: str | None) -> AdminAddress | None:
    if state_dir is None:
        return None
    if site is not None and site.admin_listen == "tcp":
        return AdminAddress(Path(state_dir), "tcp", site.admin_host, site.admin_port)
    return AdminAddress(Path(state_dir))


async def _open_admin(runtime: Runtime, plans: Sequence[FlowPlan],
                      setup: AdminSetup | None) -> AdminServer | None:
    """The admin API server, listening; None (and why, logged) when it cannot."""
    if setup is None:
        return None
    if setup.address is None:
        log.info("admin API off: no state directory (give --state-dir for status, deploy "
                 "and watch)")
        return None
    from flowengine.admin.deploy import Deployer  # aiohttp only when something runs
    from flowengine.admin.server import AdminError, AdminServer

    deployer = Deployer(runtime, plans, site=setup.site, load=setup.load,
                        variables=setup.variables)
    server = AdminServer(deployer, setup.address)
    try:
        await server.start()
    except AdminError as exc:
        log.warning("admin API off: %s", exc)
        return None
    return server


async def _run(runtime: Runtime, plans: Sequence[FlowPlan], duration: float | None,
               observe: Sequence[tuple[str, str]] = (), admin_setup: AdminSetup | None = None
               ) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    install_executor(loop)  # a host name's lookup leaves no idle thread behind
    watchdog = LoopWatchdog()
    watchdog.start()
    wakeups = WakeupCounter.from_environment()
    if wakeups is not None:
        wakeups.start()
    link = runtime.guardian
    if link is not None:
        link.on_lost = stop.set
        await link.open()
    started = 0
    server = None
    try:
        for kind, name in observe:  # before the flows start, so their start is reported
            attach = runtime.registry.connection_kinds[kind].observe
            try:
                connection = await runtime.connections.get(kind, name)
            except FlowEngineError as exc:
                log.error("observe: connection %s.%s did not open: %s", kind, name, exc)
                continue
            if attach is not None:
                attach(connection, runtime)
        failed: list[tuple[FlowPlan, FlowStartError]] = []
        for plan in plans:
            try:
                await runtime.start_flow(plan)
                started += 1
            except FlowStartError as error:
                failed.append((plan, error))
        if failed and not started:
            # nothing runs: say why and end, non-zero (under the guardian, as on a GX, the
            # runtime is started again with its backoff); retrying in here would only
            # hide the reason behind "running 0 flows"
            for _, why in failed:
                log.error("%s", why)
            log.error("no flow could start; exiting")
            return 1
        for plan, why in failed:  # the others run; these are tried again with backoff
            runtime.retry_flow(plan, why)
        if not plans:
            log.warning("no flows are enabled; add some under flows: in the site file")
        log.info("running %d of %d flow(s); Ctrl-C or SIGTERM stops", started, len(plans))
        server = await _open_admin(runtime, plans, admin_setup)
        try:
            async with asyncio.timeout(duration):
                await stop.wait()
        except TimeoutError:
            log.info("duration reached")
    finally:
        if server is not None:
            await server.close()
        running = len(runtime.flows)
        if server is not None:  # stopped, removed, added by the admin API
            wanted = len(server.deployer.plans) - len(server.deployer.stopped)
        else:
            wanted = len(plans)
        log.info("stopping: applying safe states")
        await runtime.stop("shutdown")
        if link is not None:
            await link.close()
        if wakeups is not None:
            wakeups.stop()
        await watchdog.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        log.info("stopped")
    return 0 if running == wanted else 1


def cmd_schemas(args: argparse.Namespace) -> int:
    registry = Registry.default(plugins=False)
    out = Path(args.out)
    files: dict[Path, dict[str, Any]] = {
        out / "flow.schema.json": flow_schema(registry),
        out / "site.schema.json": site_schema(registry),
    }
    for name, cls in sorted(registry.node_types.items()):
        files[out / "nodes" / f"{name}.json"] = node_file_schema(cls)
    texts = {path: json.dumps(schema, indent=2, sort_keys=False) + "\n"
             for path, schema in files.items()}
    if args.docs:
        from flowengine.docs import render_nodes_md  # for `schemas --docs` only

        texts[Path(args.docs)] = render_nodes_md(registry)
    if args.check:
        stale = [p for p, t in texts.items()
                 if not p.exists() or p.read_text(encoding="utf-8") != t]
        extra = [p for p in (out / "nodes").glob("*.json") if p not in texts]
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        for path in extra:
            print(f"not generated (remove it): {path}", file=sys.stderr)
        if stale or extra:
            print("run `esess-flowctl schemas` and commit the result", file=sys.stderr)
            return 1
        print(f"schemas up to date ({len(texts)} files)")
        return 0
    (out / "nodes").mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    for path in (out / "nodes").glob("*.json"):
        if path not in texts:
            path.unlink()
            print(f"removed {path}")
    return 0


def cmd_list_nodes(args: argparse.Namespace) -> int:
    registry = Registry.default()
    types = sorted(registry.node_types.items())
    if args.json:
        json.dump({name: {"summary": cls.summary,
                          "drives_outside_world": cls.drives_outside_world(),
                          "schema": config_schema(cls.config_class)} for name, cls in types},
                  sys.stdout, indent=2)
        print()
        return 0
    width = max((len(n) for n, _ in types), default=0)
    for name, cls in types:
        print(f"{name:<{width}}  {cls.summary}")
    return 0


def _level(text: str) -> str:
    parse_level(text)  # raises ValueError with the valid names
    return text.upper()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esess-flowctl",
        description="es-ESS flows: check, run and inspect dataflows for Victron Venus OS.")
    parser.add_argument("--version", action="version", version=f"esess-flowctl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check flow and site files; exit 1 with every error",
                       description="Check flow and site files without starting anything. "
                                   "Prints every error with file:line:column and exits 1.")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="flow or site YAML files, or directories of them "
                        f"(default on a GX: {GX_SITE})")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--var", action="append", metavar="NAME=VALUE",
                   help="value of a flow var (flow files only)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a site or flow file in the foreground",
                       description="Validate, then run until Ctrl-C or SIGTERM; every node "
                                   "that drives hardware is put into its safe state on exit. "
                                   "If no flow can start, say why and exit 1; a flow that "
                                   "cannot start while others run is tried again (1 s, "
                                   "doubling to 60 s). A flow file run alone has the "
                                   "connections that need no site entry, and mqtt main is "
                                   "the broker on localhost:1883. While it runs, status, "
                                   "deploy, watch, stop and start reach it through "
                                   "<state_dir>/admin.sock (docs/admin.md).")
    p.add_argument("file", metavar="SITE_OR_FLOW")
    p.add_argument("--var", action="append", metavar="NAME=VALUE",
                   help="value of a flow var (flow files only)")
    p.add_argument("--state-dir", help="directory for persistent node state and the admin "
                                       "socket (default: from the site file; none for a "
                                       "flow file)")
    p.add_argument("--log-level", type=_level,
                   help="TRACE, DEBUG, APP_DEBUG, INFO, WARNING, ERROR or CRITICAL")
    p.add_argument("--log-file", help="also log to this file (rotated daily, 14 kept)")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop after this many seconds")
    p.add_argument("--guardian", action=argparse.BooleanOptionalAction, default=None,
                   help="run under the guardian, which applies the safe states if this "
                        "process dies or hangs (default: on a GX; --no-guardian to develop)")
    p.add_argument("--guardian-timeout", type=guardian_timeout, metavar="SECONDS",
                   help="no heartbeat for this long means the runtime hangs "
                        "(default: the site file's guardian: timeout_s, else 10)")
    p.set_defaults(func=cmd_run)
    _admin_parsers(sub)

    p = sub.add_parser("schemas", help="write the JSON Schemas generated from the node types",
                       description="Generate schemas/flow.schema.json, site.schema.json and "
                                   "schemas/nodes/<type>.json from the node declarations.")
    p.add_argument("--out", default=str(SCHEMAS_DIR), help="target directory")
    p.add_argument("--docs", default=str(NODES_DOC),
                   help="also write the node reference here ('' for none)")
    p.add_argument("--check", action="store_true",
                   help="only compare; exit 1 if the files are stale")
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser("list-nodes", help="every node type with a one-line description",
                       description="List every installed node type.")
    p.add_argument("--json", action="store_true", help="with config schemas, as JSON")
    p.set_defaults(func=cmd_list_nodes)

    for name, text in (
            ("demo", "run every shipped flow against a simulated site on this machine"),
            ("sim", "start only the simulated site, for `run` in another shell")):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("--speed", type=float, default=60.0 if name == "demo" else 1.0,
                       metavar="N", help="simulated time runs N times faster "
                                         "(default: %(default)g)")
        p.add_argument("--seed", type=int, default=1, help="seed of the simulation")
        p.add_argument("--start-hour", type=float, default=9.0, metavar="H",
                       help="simulated time of day at the start (default: 9)")
        p.add_argument("--broker", metavar="HOST:PORT",
                       help="use this MQTT broker instead of the embedded one")
        p.add_argument("--duration", type=float, metavar="SECONDS",
                       help="stop after this many seconds")
        if name == "demo":
            p.add_argument("--log-level", type=_level, default="WARNING",
                           help="log level of the runtime (default: WARNING)")
        else:
            p.add_argument("--freeze", action="store_true",
                           help="hold every value still: the model does not step and no "
                                "device sends anything unasked (no scripted consumers); "
                                "for measuring an idle runtime (bench/idle.py)")
        p.set_defaults(func=cmd_demo if name == "demo" else cmd_sim)
    return parser


def _admin(name: str) -> Callable[[argparse.Namespace], int]:
    """The admin command `name`; its client (http.client) is imported when it runs, so
    that `run` does not carry it."""
    def command(args: argparse.Namespace) -> int:
        from flowengine.admin import commands

        result: int = getattr(commands, name)(args)
        return result
    return command


def _admin_parsers(sub: Any) -> None:
    """status, deploy, watch, stop, start: they talk to a running runtime (docs/admin.md)."""
    def reach(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", help="the runtime's state directory, where it keeps "
                                           "admin.sock and admin.token (default: from the "
                                           "site file)")
        p.add_argument("--site", metavar="SITE", help="find the runtime from this site file "
                                                      "(its state_dir and admin:)")
        p.set_defaults(default_site=GX_SITE if on_gx() else None)

    exits = ("exit 0: done; 1: errors, nothing changed; 3: a flow did not take its new "
             "version; 4: no runtime answers")
    p = sub.add_parser("status", help="every flow and node of the running runtime",
                       description="Show every flow and node with its status, last value, "
                                   "restarts and dropped messages, and the guardian.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    reach(p)
    p.set_defaults(func=_admin("cmd_status"))

    p = sub.add_parser("deploy", help="validate files, then restart only the changed flows",
                       description="Validate the site (or flow) files completely; on any "
                                   "error nothing changes. Then restart only the flows whose "
                                   "plan changed, start new ones, stop removed ones; a flow "
                                   "whose new version does not start runs its old version "
                                   "again. One line per flow. " + exits + ".")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="the site file (or the flow files the runtime runs)")
    p.add_argument("--var", action="append", metavar="NAME=VALUE",
                   help="value of a flow var (flow files only; default: those of `run`)")
    reach(p)
    p.set_defaults(func=_admin("cmd_deploy"))

    p = sub.add_parser("watch", help="show the messages of a flow or node, live",
                       description="Print each message a node (or every node of a flow) "
                                   "emits, as it comes; Ctrl-C ends. Bounded: a slow "
                                   "terminal loses the oldest messages (and is told).")
    p.add_argument("target", metavar="FLOW[/NODE]")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    reach(p)
    p.set_defaults(func=_admin("cmd_watch"))

    for name, text in (("stop", "stop a flow (it stays stopped until start or a restart)"),
                       ("start", "start a stopped flow again from its last deployed plan")):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("flow", metavar="FLOW")
        reach(p)
        p.set_defaults(func=_admin("cmd_stop" if name == "stop" else "cmd_start"))

    import migrate.cli  # its arguments only (2 ms); the converter loads when it runs

    p = sub.add_parser("import-ini",
                       help="convert an es-ESS config.ini into site.yaml and secrets.yaml")
    migrate.cli.configure(p)
    p.set_defaults(func=migrate.cli.main)


def cmd_demo(args: argparse.Namespace) -> int:
    from sim.demo import run_demo  # the simulation is imported only when asked for

    return run_demo(args)


def cmd_sim(args: argparse.Namespace) -> int:
    from sim.demo import run_sim

    return run_sim(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
