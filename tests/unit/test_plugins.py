"""flowengine.plugins finds entry points as importlib.metadata does, without its imports."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from flowengine.plugins import entry_points


def install(site: Path, folder: str, text: str | None) -> None:
    info = site / folder
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {folder.split('-')[0]}\n")
    if text is not None:
        (info / "entry_points.txt").write_text(text)


@pytest.mark.parametrize("group", ["console_scripts", "pytest11", "esess.nodes"])
def test_the_same_entry_points_as_importlib_metadata_on_this_machine(group: str) -> None:
    ours = sorted((ep.name, ep.value) for ep in entry_points(group))
    theirs = sorted((ep.name, ep.value) for ep in importlib.metadata.entry_points(group=group))
    assert ours == theirs
    if group == "console_scripts":
        assert ("esess-flowctl", "flowengine.cli:main") in ours


def test_groups_comments_and_the_first_install_on_the_path(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    install(first, "esess_plugin-1.0.dist-info",
            "# a comment\n[console_scripts]\nx = nope:main\n\n"
            "[esess.nodes]\nheat = heatpumps.nodes\n pool =  pools.nodes : POOL [extra] \n")
    install(second, "Esess.Plugin-0.9.dist-info", "[esess.nodes]\nold = old.nodes\n")
    install(second, "other-2.egg-info", "[esess.nodes]\nother = other:make\n")
    install(second, "empty-1.dist-info", None)
    path = [str(first), str(tmp_path / "missing"), str(second)]
    found = [(ep.name, ep.value, ep.dist) for ep in entry_points("esess.nodes", path)]
    assert found == [("heat", "heatpumps.nodes", "esess-plugin"),
                     ("pool", "pools.nodes : POOL [extra]", "esess-plugin"),
                     ("other", "other:make", "other")]
    theirs = importlib.metadata.distributions(path=path)
    assert sorted((ep.name, ep.value) for dist in theirs for ep in dist.entry_points
                  if ep.group == "esess.nodes") == sorted([("heat", "heatpumps.nodes"),
                                                           ("pool", "pools.nodes : POOL [extra]"),
                                                           ("old", "old.nodes"),
                                                           ("other", "other:make")])


def test_load_gives_the_module_or_its_attribute(tmp_path: Path) -> None:
    install(tmp_path, "p-1.dist-info",
            "[g]\nmod = json\nattr = json.decoder : JSONDecoder.decode\nbad = not a value\n")
    loaded = {ep.name: ep for ep in entry_points("g", [str(tmp_path)])}
    import json
    import json.decoder
    assert loaded["mod"].load() is json
    assert loaded["attr"].load() is json.decoder.JSONDecoder.decode
    with pytest.raises(ValueError, match="not 'module' or 'module:attribute'"):
        loaded["bad"].load()


def test_the_registry_reads_plugins_without_importlib_metadata() -> None:
    code = ("import sys; from flowengine.registry import Registry; Registry.default(); "
            "print(*(name in sys.modules for name in "
            "('importlib.metadata', 'email', 'xml.sax', 'urllib.request')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"] * 4  # each costs the runtime memory


def test_the_version_services_publish_is_the_package_version() -> None:
    import tomllib

    import flowengine
    from nodes.dbus.service import PROCESS_VERSION
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml")
                              .read_text())
    assert PROCESS_VERSION == flowengine.__version__ == pyproject["project"]["version"]


def test_the_launcher_loads_none_of_the_libraries_the_runtime_replaced() -> None:
    """jsonschema, aiohttp's client, websockets and importlib.metadata cost the runtime
    about 15 MB together; `esess-flowctl` (what the GX service runs) imports none."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-X", "importtime", str(root / "esess-flowctl"),
                             "validate", str(root / "flows" / "shelly3em-grid.yaml")],
                            capture_output=True, text=True, timeout=60, cwd=root)
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "flowengine.cli" in imported
    assert not imported & {"jsonschema", "aiohttp", "websockets", "importlib.metadata",
                           "email", "referencing", "rpds"}
