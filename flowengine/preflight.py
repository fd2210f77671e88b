"""Every file a command is given, loaded and checked together before anything starts.

`validate`, `run`, `deploy`, the admin API's redeploy and the demo share this: each error
of every file in one pass (a site's schema errors do not hide its flows' errors), with
the checks that span flows (claims, connection names) on top of each flow's own plan.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowengine.errors import ConfigError, ConfigErrors, GraphError, SchemaError
from flowengine.loader import Secrets, Site, collect_site, is_site_file, load_flow
from flowengine.model import FlowSpec
from flowengine.node import CONNECTION_META
from flowengine.plan import FlowPlan, plan_flow
from flowengine.registry import Registry
from flowengine.schema import build_config, config_schema, make_validator, schema_errors
from flowengine.vars import blame_var
from flowengine.yamlsrc import read_yaml, read_yaml_text

__all__ = ["Loaded", "check_claims", "check_connection_refs", "expand_files", "load_files",
           "parse_vars", "print_errors"]


class Loaded:
    """Plans of every flow in the given files, or every error found."""

    def __init__(self) -> None:
        self.plans: list[FlowPlan] = []
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []  # "file:line:col: warning: ..." (validate still passes)
        self.site: Site | None = None
        self.sites: list[Site] = []  # every site file among the files (deploy takes one)


def load_files(files: Sequence[str], registry: Registry, *, variables: dict[str, Any],
               for_run: bool) -> Loaded:
    """Everything `files` hold, with every error found in one pass: a site's schema errors
    do not hide its flows' errors, nor a flow that failed to load the others' graph errors.

    A flow file that a site among `files` enables is checked as part of that site only.
    Claims (one D-Bus name per service) are checked per site, and across the flow files
    given on their own (they would run side by side).
    """
    out = Loaded()
    sites: list[str] = []
    alone: list[str] = []
    for file in files:
        try:
            data, _ = read_yaml(file)
        except ConfigErrors as exc:
            out.errors.extend(exc.errors)
            continue
        (sites if is_site_file(data) else alone).append(file)
    enabled: set[Path] = set()
    for file in sites:
        site = collect_site(file, out.errors)
        if site is None:
            continue
        out.site = site
        out.sites.append(site)
        enabled.update(Path(spec.file).resolve() for spec in site.flows)
        out.errors.extend(_check_connections(site, registry, out.warnings))
        plans = _plan_all(site.flows, registry, out)
        for plan in plans:
            out.errors.extend(check_connection_refs(plan, site, registry))
        out.errors.extend(check_claims(plans))
    standalone: list[FlowPlan] = []
    for file in alone:
        if Path(file).resolve() in enabled:
            continue
        try:
            spec = load_flow(file, values=variables, secrets=Secrets(
                Path(file).resolve().parent / "secrets.yaml"), use_examples=not for_run)
        except ConfigErrors as exc:
            out.errors.extend(exc.errors)
            continue
        except ConfigError as exc:
            out.errors.append(exc)
            continue
        for plan in _plan_all([spec], registry, out):
            out.errors.extend(check_connection_refs(plan, None, registry))
            standalone.append(plan)
    out.errors.extend(check_claims(standalone))
    return out


def _plan_all(specs: Sequence[FlowSpec], registry: Registry, out: Loaded) -> list[FlowPlan]:
    plans: list[FlowPlan] = []
    for spec in specs:
        try:
            plans.append(plan_flow(spec, registry))
        except ConfigErrors as exc:
            out.errors.extend(exc.errors)
    out.plans.extend(plans)
    return plans


def expand_files(args: Sequence[str]) -> list[str]:
    """FILE arguments as files: a directory stands for every *.yaml in it (site or flow),
    except its secrets.yaml."""
    files: list[str] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files += sorted(str(p) for p in path.glob("*.yaml")
                            if p.is_file() and p.name != "secrets.yaml")
        else:
            files.append(arg)
    return files


def check_claims(plans: Sequence[FlowPlan]) -> list[ConfigError]:
    """No two nodes of all the flows claim the same thing (two services one D-Bus name)."""
    errors: list[ConfigError] = []
    first: dict[tuple[str, str], tuple[FlowPlan, str]] = {}
    for plan in plans:
        for node_id, planned in plan.nodes.items():
            for claim in planned.node.claims():
                spec = planned.spec
                mark = spec.key_marks.get((claim.option,), spec.mark)
                taken = first.setdefault((claim.what, claim.value), (plan, node_id))
                if taken[0] is plan and taken[1] == node_id:
                    continue
                errors.append(blame_var(GraphError(
                    f"{claim.what} {claim.value} is taken already by flow "
                    f"'{taken[0].spec.id}', node '{taken[1]}'", mark,
                    flow=plan.spec.id, node=node_id, node_type=spec.type,
                    hint=f"give each its own {claim.option}"), plan.spec, spec))
    return errors


def check_connection_refs(plan: FlowPlan, site: Site | None,
                           registry: Registry) -> list[ConfigError]:
    """Every connection a node names (`broker: main`) is in the site file or a default;
    for a flow file on its own (`site` None), a default or a standalone name."""
    errors: list[ConfigError] = []
    declared = site.connections if site else {}
    for node_id, planned in plan.nodes.items():
        for f in dataclasses.fields(planned.config):
            kind: str = f.metadata.get(CONNECTION_META, "")
            kind_spec = registry.connection_kinds.get(kind)
            name = getattr(planned.config, f.name)
            if kind_spec is None:
                continue
            have = sorted({*declared.get(kind, {}), *kind_spec.names(standalone=site is None)})
            if name in have:
                continue
            where = "the site file has" if site else "a flow file run alone has"
            fix = f"add it under connections: {kind}: {name}: in the site file" if site else \
                f"run it from a site file with connections: {kind}: {name}:"
            errors.append(blame_var(GraphError(
                f"{f.name} '{name}': {where} no {kind} connection '{name}'",
                planned.spec.key_marks.get((f.name,), planned.spec.mark),
                flow=plan.spec.id, node=node_id, node_type=planned.spec.type,
                hint=fix + (f", or use {' or '.join(have)}" if have else "")),
                plan.spec, planned.spec))
    return errors


def _check_connections(site: Site, registry: Registry,
                       warnings: list[str]) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for kind, named in site.connections.items():
        spec = registry.connection_kinds.get(kind)
        if spec is None:
            known = ", ".join(sorted(registry.connection_kinds)) or "none installed"
            mark = next(iter(m for (k, _), m in site.connection_marks.items() if k == kind),
                        None)
            errors.append(SchemaError(f"unknown connection kind '{kind}'", mark,
                                      hint=f"known kinds: {known}"))
            continue
        validator = make_validator(config_schema(spec.config_class))
        for name, conf in named.items():
            mark = site.connection_marks[(kind, name)]
            problems = schema_errors(validator, conf, lambda p: None, fallback=mark)
            for problem in problems:
                problem.message = f"connection {kind}.{name}: {problem.message}"
            errors.extend(problems)
            if not problems:
                named[name] = build_config(spec.config_class, conf)
                if spec.lint is not None:
                    warnings.extend(f"{mark}: warning: {text}"
                                    for text in spec.lint(name, named[name]))
    for kind, name, mark in site.observe:
        spec = registry.connection_kinds.get(kind)
        if spec is None or spec.observe is None:
            able = sorted(k for k, s in registry.connection_kinds.items() if s.observe)
            errors.append(SchemaError(f"observe: connection kind '{kind}' cannot observe", mark,
                                      hint="kinds that can: " + (", ".join(able) or "none")))
        elif name not in site.connections.get(kind, {}) and name not in spec.defaults:
            errors.append(SchemaError(f"observe: no connection '{kind}.{name}'", mark,
                                      hint=f"add it under connections: {kind}: {name}:"))
    return errors


def print_errors(errors: Sequence[ConfigError], as_json: bool) -> None:
    """Errors in file order: as text on stderr with a count, or as JSON on stdout."""
    ordered = sorted(errors, key=ConfigError.sort_key)
    if as_json:
        json.dump({"valid": False, "errors": [e.to_json() for e in ordered]}, sys.stdout,
                  indent=2)
        print()
    else:
        for error in ordered:
            print(error, file=sys.stderr)
        print(f"{len(ordered)} error(s)", file=sys.stderr)


def parse_vars(pairs: Sequence[str] | None) -> dict[str, Any]:
    """`--var NAME=VALUE` pairs as flow variables, each value read as YAML."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        name, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"--var needs NAME=VALUE, got {pair!r}")
        if not text:
            out[name.strip()] = ""
            continue
        try:  # read as the files are (YAML 1.2 core: `yes` and `on` stay texts)
            out[name.strip()] = read_yaml_text(text, f"--var {name.strip()}")[0]
        except ConfigErrors as exc:
            raise SystemExit(f"--var {name.strip()}: {exc.errors[0].message}") from None
    return out
