"""`esess-flowctl status | deploy | watch | stop | start`: the admin API's commands.

Exit codes (docs/admin.md):

    0  done: everything went through
    1  nothing changed: a file has errors, the change cannot be hot-deployed, an unknown
       flow or node
    2  wrong arguments (argparse)
    3  deployed, but a flow did not take its new version (rolled back, or a new flow did
       not start), or `start` could not start the flow
    4  no runtime answers (or it refused the token)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from flowengine.admin.access import AdminAddress, AdminUnreachable
from flowengine.admin.client import AdminClient, AdminReply
from flowengine.preflight import expand_files, parse_vars

__all__ = ["EXIT_INVALID", "EXIT_NOT_TAKEN", "EXIT_OK", "EXIT_UNREACHABLE", "cmd_deploy",
           "cmd_start", "cmd_status", "cmd_stop", "cmd_watch", "locate"]

EXIT_OK, EXIT_INVALID, EXIT_NOT_TAKEN, EXIT_UNREACHABLE = 0, 1, 3, 4
DEPLOY_TIMEOUT_S = 300.0  # each flow's start is bounded by the runtime; many flows add up
CELL = 36  # widest status or value shown in the table


def locate(args: argparse.Namespace, files: Sequence[str] = (), *,
           default_site: str | None = None) -> AdminAddress:
    """The admin API of the runtime meant: --site, --state-dir, a site among `files`, the
    GX's site file, or the default state directory."""
    from flowengine.errors import ConfigErrors
    from flowengine.loader import is_site_file
    from flowengine.yamlsrc import read_yaml

    candidates = [args.site] if args.site else []
    if not args.site and not args.state_dir:
        candidates += [*files, *([default_site] if default_site else [])]
    for file in candidates:
        try:
            data, _ = read_yaml(file)
        except (ConfigErrors, OSError):
            if file == args.site:
                raise AdminUnreachable(f"cannot read the site file {file}") from None
            continue
        if is_site_file(data):
            return AdminAddress.from_site_data(data, args.state_dir)
    return AdminAddress.from_site_data(None, args.state_dir)


def _client(args: argparse.Namespace, files: Sequence[str] = ()) -> AdminClient:
    return AdminClient(locate(args, files, default_site=args.default_site))


def _fail(text: str, code: int) -> int:
    print(f"esess-flowctl: {text}", file=sys.stderr)
    return code


# -- status -------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    try:
        reply = _client(args).request("GET", "/status")
    except AdminUnreachable as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    if reply.error:
        return _fail(reply.error, EXIT_UNREACHABLE)
    if args.json:
        json.dump(reply.body, sys.stdout, indent=2)
        print()
        return EXIT_OK
    print(render_status(reply.body))
    return EXIT_OK


def _cut(text: str, width: int = CELL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def render_status(body: dict[str, Any]) -> str:
    """The status answer as a table, one row per node, and the guardian's line."""
    rows = [("FLOW", "NODE", "STATUS", "LAST VALUE", "RESTARTS", "DROPPED")]
    for fid, flow in body.get("flows", {}).items():
        if not flow.get("nodes"):
            rows.append((fid, "-", _cut(f"{flow.get('status', '?')}: {flow.get('text', '')}",
                                        80), "", "", ""))
            continue
        for nid, node in flow["nodes"].items():
            status = node["status"] + (f": {node['text']}" if node.get("text") else "")
            last = node.get("last")
            shown = "" if last is None else \
                f"{last['topic']} = {json.dumps(last['value'], ensure_ascii=False)}"
            rows.append((fid, nid, _cut(status), _cut(shown), str(node.get("restarts", 0)),
                         str(node.get("dropped", 0))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    if len(rows) == 1:
        lines.append("(no flows)")
    guardian = body.get("guardian") or {}
    lines.append(f"guardian: {guardian.get('text', guardian.get('state', '?'))}")
    return "\n".join(lines)


# -- deploy -------------------------------------------------------------------------------

def cmd_deploy(args: argparse.Namespace) -> int:
    files = [os.path.abspath(f) for f in expand_files(args.files)]
    if not files:
        return _fail(f"no *.yaml in {', '.join(args.files)}", 2)
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        return _fail(f"no such file: {missing[0]}", EXIT_INVALID)
    try:
        client = _client(args, files)
        reply = client.request("POST", "/deploy",
                               {"files": files, "vars": parse_vars(args.var)},
                               timeout=DEPLOY_TIMEOUT_S)
    except AdminUnreachable as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    if reply.error:
        return _fail(reply.error, EXIT_INVALID if reply.status < 500 else EXIT_UNREACHABLE)
    return _report_deploy(reply)


def _report_deploy(reply: AdminReply) -> int:
    body = reply.body
    if body.get("errors"):
        for error in body["errors"]:
            print(error["text"], file=sys.stderr)
        print(f"{len(body['errors'])} error(s); nothing was changed", file=sys.stderr)
        return EXIT_INVALID
    if body.get("refused"):
        print(f"deploy refused: {body['refused']}; nothing was changed", file=sys.stderr)
        return EXIT_INVALID
    for line in [*body.get("warnings", ()), *(f"note: {n}" for n in body.get("notes", ()))]:
        print(line, file=sys.stderr)
    for item in body.get("flows", ()):
        print(f"{item['flow']}: {item['result']}")
    return EXIT_OK if body.get("ok") else EXIT_NOT_TAKEN


# -- stop, start ---------------------------------------------------------------------------

def cmd_stop(args: argparse.Namespace) -> int:
    return _flow_op(args, "stop")


def cmd_start(args: argparse.Namespace) -> int:
    return _flow_op(args, "start")


def _flow_op(args: argparse.Namespace, op: str) -> int:
    try:
        reply = _client(args).request("POST", f"/flows/{quote(args.flow, safe='@')}/{op}",
                                      timeout=DEPLOY_TIMEOUT_S)
    except AdminUnreachable as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    if reply.error:
        return _fail(reply.error, EXIT_NOT_TAKEN if reply.status == 500 else EXIT_INVALID)
    print(f"{args.flow}: {reply.body['result']}")
    return EXIT_OK


# -- watch ---------------------------------------------------------------------------------

def cmd_watch(args: argparse.Namespace) -> int:
    flow, _, node = args.target.partition("/")
    query = {"flow": flow, **({"node": node} if node else {})}
    try:
        client = _client(args)
        for item in client.stream("/watch?" + urlencode(query)):
            if "error" in item:
                return _fail(str(item["error"]), EXIT_INVALID)
            if args.json:
                print(json.dumps(item, ensure_ascii=False), flush=True)
            elif "watching" in item:
                what = f"flow '{flow}'" + (f", node '{node}'" if node else "")
                print(f"watching {what}; Ctrl-C ends", file=sys.stderr, flush=True)
            elif "dropped" in item:
                print(f"... {item['dropped']} message(s) dropped: this terminal reads more "
                      f"slowly than they come ({item['dropped_total']} in all)", flush=True)
            else:
                print(render_message(item), flush=True)
    except AdminUnreachable as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # `watch ... | head`: the reader has enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return _fail("the runtime ended the stream (it stopped)", EXIT_UNREACHABLE)


def render_message(item: dict[str, Any]) -> str:
    wall = float(item.get("wall") or time.time())
    stamp = time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1000):03d}"
    port = "" if item.get("port") in (None, "out") else f":{item['port']}"
    value = json.dumps(item.get("value"), ensure_ascii=False)
    return f"{stamp} {item['flow']}/{item['node']}{port} {item['topic']} = {value}"
