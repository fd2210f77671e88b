"""Flow and site files -> FlowSpecs, with file:line:column on every error.

- A flow file declares typed `vars`; `${name}` in any string is replaced by the
  var's value (flowengine.vars). Unknown and unused vars are errors.
- `!secret name` is looked up in the environment (ESESS_SECRET_<NAME>) and then in
  the secrets file; its value never appears in an error or a log line.
- A site file enables shipped flows (`use:`) and custom flow files (`file:`), each
  with vars, and optionally several instances of one flow (`instance:`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowengine.errors import ConfigError, ConfigErrors, GraphError, SecretError, shorten
from flowengine.formats import FLOW_SCHEMA, SITE_SCHEMA
from flowengine.model import (
    DEFAULT_PORT,
    INPUT_PORT,
    FlowSpec,
    NodeSpec,
    Secret,
    SourceMark,
    Wire,
)
from flowengine.schema import did_you_mean, make_validator, schema_errors
from flowengine.vars import Substitution, substitute, var_specs, var_values
from flowengine.yamlsrc import Marks, SecretRef, read_yaml

__all__ = ["Secrets", "Site", "collect_site", "default_flows_dir", "is_site_file", "load_flow",
           "load_site"]

_FLOW_VALIDATOR = make_validator(FLOW_SCHEMA)
_SITE_VALIDATOR = make_validator(SITE_SCHEMA)


def default_flows_dir() -> Path:
    """The flows/ folder shipped beside the engine."""
    return Path(__file__).resolve().parent.parent / "flows"


class Secrets:
    """Resolves `!secret name`: environment ESESS_SECRET_<NAME> first, then the file."""

    def __init__(self, file: str | Path | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.file = str(file) if file else None
        self._environ = os.environ if environ is None else environ
        self._values: dict[str, str] | None = None
        self._file_error: ConfigError | None = None

    def _load(self) -> dict[str, str]:
        if self._values is not None:
            return self._values
        self._values = {}
        if self.file and Path(self.file).exists():
            try:
                data, marks = read_yaml(self.file)
            except ConfigErrors as exc:
                self._file_error = exc.errors[0]
            else:
                if not isinstance(data, dict):
                    self._file_error = SecretError("the secrets file must be a mapping "
                                                   "name: value", marks.root)
                else:
                    self._values = {str(k): str(v) for k, v in data.items() if v is not None}
        return self._values

    def resolve(self, ref: SecretRef) -> Secret:
        env = "ESESS_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", ref.name).upper()
        if env in self._environ:
            return Secret(ref.name, self._environ[env])
        values = self._load()
        if self._file_error is not None:
            raise self._file_error
        if ref.name in values:
            return Secret(ref.name, values[ref.name])
        where = f"the secrets file {self.file}" if self.file else "a secrets file"
        name = shorten(ref.name)
        raise SecretError(f"secret '{name}' is not set", ref.mark,
                          hint=f"add `{name}: ...` to {where} or set the "
                               f"environment variable {shorten(env)}")


# -- flows ------------------------------------------------------------------------------

def load_flow(path: str | Path, *, values: Mapping[str, Any] | None = None,
              value_marks: Marks | None = None, value_path: tuple[str | int, ...] = (),
              flow_id: str | None = None, secrets: Secrets | None = None,
              use_examples: bool = False) -> FlowSpec:
    """Load one flow file with var `values`; raises ConfigErrors listing every problem.

    `use_examples`: a var without a value or default takes its `example` (to validate
    a flow file on its own).
    """
    data, marks = read_yaml(path)
    errors = schema_errors(_FLOW_VALIDATOR, data, marks.get, fallback=marks.root)
    if errors:
        raise ConfigErrors(e.within(flow=_flow_id_of(data)) for e in errors)
    secrets = secrets or Secrets()
    source_id: str = data["id"]
    fid = flow_id or source_id
    errors = []
    declared = var_specs(data.get("vars") or {}, marks)
    origins: dict[str, SourceMark] = {}
    resolved = var_values(declared, values or {}, value_marks=value_marks,
                          value_path=value_path, flow_marks=marks, resolve=secrets.resolve,
                          use_examples=use_examples, errors=errors, origins=origins)
    used: set[str] = set()
    nodes_raw = _resolve_secrets(data["nodes"], ("nodes",), marks, secrets, errors)
    sub = Substitution(resolved, frozenset(declared), marks, used, errors)
    nodes_raw = substitute(nodes_raw, ("nodes",), sub)
    for name, var in declared.items():
        if name not in used:
            errors.append(GraphError(f"var '{name}' is declared but never used", var.mark,
                                     hint=f"use it as ${{{name}}} or remove it"))
    left_out = {raw["id"] for raw in nodes_raw if "when" in raw and not raw["when"]}
    nodes = tuple(_node_spec(raw, i, marks, left_out, sub.uses)
                  for i, raw in enumerate(nodes_raw) if raw["id"] not in left_out)
    if errors:
        raise ConfigErrors(e.within(flow=fid) for e in errors)
    return FlowSpec(id=fid, description=data.get("description", ""), nodes=nodes,
                    file=str(path), mark=marks.root, vars=resolved, source_id=source_id,
                    var_marks=origins)


def _flow_id_of(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return str(data["id"])
    return None


def _node_spec(raw: Mapping[str, Any], index: int, marks: Marks, left_out: set[str],
               var_uses: Mapping[tuple[str | int, ...], str]) -> NodeSpec:
    """One node; wires to nodes whose `when` is unset (`left_out`) are dropped."""
    prefix = ("nodes", index)
    config = {k: v for k, v in raw.items() if k not in ("id", "type", "to", "comment", "when")}
    wires = _wires(raw["id"], raw.get("to"), (*prefix, "to"), marks)
    return NodeSpec(id=raw["id"], type=raw["type"], config=config,
                    mark=marks.nearest(prefix), key_marks=marks.under(prefix),
                    var_uses={path[2:]: text for path, text in var_uses.items()
                              if path[:2] == prefix and len(path) > 2 and path[2] in config},
                    wires=tuple(w for w in wires if w.target not in left_out))


def _wires(source: str, to: Any, path: tuple[str | int, ...], marks: Marks) -> Iterable[Wire]:
    """`to: [a, b:port]`, `to: a` or `to: {port: [a, b]}` -> wires."""
    if to is None:
        return
    if isinstance(to, dict):
        for port, targets in to.items():
            yield from _port_wires(source, port, targets, (*path, port), marks)
    else:
        yield from _port_wires(source, DEFAULT_PORT, to, path, marks)


def _port_wires(source: str, port: str, targets: Any, path: tuple[str | int, ...],
                marks: Marks) -> Iterable[Wire]:
    items = [targets] if isinstance(targets, str) else list(targets or [])
    for i, target in enumerate(items):
        mark = marks.nearest((*path, i) if not isinstance(targets, str) else path)
        node, _, in_port = str(target).partition(":")
        yield Wire(source, port, node.strip(), in_port.strip() or INPUT_PORT, mark)


def _resolve_secrets(value: Any, path: tuple[str | int, ...], marks: Marks, secrets: Secrets,
                     errors: list[ConfigError]) -> Any:
    if isinstance(value, SecretRef):
        try:
            return secrets.resolve(value)
        except ConfigError as exc:
            errors.append(exc)
            return None
    if isinstance(value, dict):
        return {k: _resolve_secrets(v, (*path, k), marks, secrets, errors)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_secrets(v, (*path, i), marks, secrets, errors)
                for i, v in enumerate(value)]
    return value


# -- site -------------------------------------------------------------------------------

@dataclass
class Site:
    """A loaded site file: flows to run, connection configs, settings."""

    file: str
    flows: list[FlowSpec] = field(default_factory=list)
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    connection_marks: dict[tuple[str, str], SourceMark] = field(default_factory=dict)
    state_dir: str = "/data/es-ESS-flows/state"
    log_level: str = "INFO"
    log_file: str | None = None
    guardian_timeout_s: float = 10.0  # no heartbeat for this long: the runtime hangs
    secrets: Secrets | None = None
    # connections that report the runtime's events and node statuses: (kind, name, mark)
    observe: list[tuple[str, str, SourceMark]] = field(default_factory=list)
    # the admin API: a unix socket in state_dir, or a loopback TCP port (see formats.py)
    admin_listen: str = "unix"
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None


def is_site_file(data: Any) -> bool:
    return isinstance(data, dict) and "flows" in data and "nodes" not in data


def load_site(path: str | Path, *, flows_dir: str | Path | None = None,
              environ: Mapping[str, str] | None = None) -> Site:
    """Load a site file and every flow it enables; raises ConfigErrors with all problems."""
    errors: list[ConfigError] = []
    site = collect_site(path, errors, flows_dir=flows_dir, environ=environ)
    if errors or site is None:
        raise ConfigErrors(errors)
    return site


def collect_site(path: str | Path, errors: list[ConfigError], *,
                 flows_dir: str | Path | None = None,
                 environ: Mapping[str, str] | None = None) -> Site | None:
    """Load what can be loaded of a site file, adding every problem to `errors`.

    A part the site schema refuses (one flow entry, one connection, one setting) is left
    out and the rest is loaded, so `validate` also reports the errors of the flows in
    the same pass; None when the file cannot be read as a site at all. Only a site
    that added no error may run.
    """
    try:
        data, marks = read_yaml(path)
    except ConfigErrors as exc:
        errors.extend(exc.errors)
        return None
    problems = schema_errors(_SITE_VALIDATOR, data, marks.get, fallback=marks.root)
    errors.extend(problems)
    if problems:
        data = _valid_parts(data)
        if data is None:
            return None
    base = Path(path).resolve().parent
    secrets = Secrets(base / data.get("secrets", "secrets.yaml"), environ)
    site = Site(file=str(path), state_dir=data.get("state_dir", "/data/es-ESS-flows/state"),
                secrets=secrets)
    site.log_level = data.get("log", {}).get("level", "INFO")
    site.guardian_timeout_s = float(data.get("guardian", {}).get("timeout_s", 10.0))
    site.log_file = data.get("log", {}).get("file")
    admin = data.get("admin") or {}
    site.admin_listen = admin.get("listen", "unix")
    site.admin_host = admin.get("host", "127.0.0.1")
    site.admin_port = admin.get("port")
    for i, entry in enumerate(data.get("observe") or ()):
        kind, _, name = entry.partition(".")
        site.observe.append((kind, name, marks.nearest(("observe", i))))
    shipped = Path(flows_dir or data.get("flows_dir") or default_flows_dir())
    if not shipped.is_absolute():
        shipped = base / shipped
    for kind, named in (data.get("connections") or {}).items():
        site.connections[kind] = {}
        for name, conf in named.items():
            site.connections[kind][name] = _resolve_secrets(
                conf, ("connections", kind, name), marks, secrets, errors)
            site.connection_marks[(kind, name)] = marks.nearest(("connections", kind, name))
    seen: dict[str, SourceMark] = {}
    for i, entry in enumerate(data["flows"]):
        if not entry.get("enabled", True):
            continue
        entry_mark = marks.nearest(("flows", i))
        if "use" in entry:
            file = shipped / f"{entry['use']}.yaml"
            if not _is_file(file):
                known = sorted(p.stem for p in shipped.glob("*.yaml"))
                errors.append(ConfigError(
                    f"no shipped flow '{shorten(str(entry['use']))}'",
                    marks.nearest(("flows", i, "use")),
                    hint=did_you_mean(entry["use"], known) or
                    ("shipped flows: " + ", ".join(known) if known else
                     f"no flows in {shipped}")))
                continue
        else:
            file = base / entry["file"]
        try:
            spec = load_flow(file, values=entry.get("vars") or {}, value_marks=marks,
                             value_path=("flows", i, "vars"), secrets=secrets,
                             flow_id=_instance_id(entry, file))
        except ConfigErrors as exc:
            errors.extend(e if e.mark and e.mark.line else
                          ConfigError(f"flow file {file}: {e.message}", entry_mark)
                          for e in exc.errors)
            continue
        if spec.id in seen:
            errors.append(GraphError(
                f"flow '{shorten(spec.id)}' is enabled twice", entry_mark,
                hint=f"first at line {seen[spec.id].line}; give each an `instance:` name"))
            continue
        seen[spec.id] = entry_mark
        site.flows.append(spec)
    return site


def _valid_parts(data: Any) -> dict[str, Any] | None:
    """`data` without the parts the site schema refuses: a flow entry is disabled (the
    others keep their index, so their marks), a connection is emptied (it is still
    there for the nodes that name it), a setting is left out (its default holds)."""
    if not isinstance(data, dict) or not isinstance(data.get("flows"), list):
        return None
    keep = dict(data)
    flows = list(keep["flows"])
    for error in _SITE_VALIDATOR.iter_errors(data):
        where = tuple(error.absolute_path)
        if not where:
            continue  # an unknown top-level key: nothing reads it
        if where[0] == "flows" and len(where) > 1 and isinstance(where[1], int):
            flows[where[1]] = {"enabled": False}
        elif where[0] == "connections" and len(where) > 2 \
                and isinstance(keep.get("connections"), dict):
            kinds = keep["connections"] = dict(keep["connections"])
            if isinstance(kinds.get(where[1]), dict):
                kinds[where[1]] = {**kinds[where[1]], where[2]: {}}
        elif where[0] == "connections" and len(where) == 2 \
                and isinstance(keep.get("connections"), dict):
            keep["connections"] = {k: v for k, v in keep["connections"].items()
                                   if k != where[1]}
        else:
            keep.pop(where[0], None)
    keep["flows"] = flows if "flows" in keep else []
    return keep


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name longer than the file system takes (ENAMETOOLONG)
        return False


def _instance_id(entry: Mapping[str, Any], file: Path) -> str | None:
    if "id" in entry:
        return str(entry["id"])
    if "instance" in entry:
        base = entry.get("use") or _peek_id(file) or file.stem
        return f"{base}@{entry['instance']}"
    return None


def _peek_id(file: Path) -> str | None:
    try:
        data, _ = read_yaml(file)
    except ConfigErrors:
        return None
    return _flow_id_of(data)
