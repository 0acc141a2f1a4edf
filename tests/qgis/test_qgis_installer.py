"""``geomm qgis install``: the plugin folder, the recorded executable, the profile's INI; and
the plugin's imports (QGIS's Python has no geomm). No QGIS needed."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import geomm.qgis
from geomm.qgis import installer

GEOMM = str(Path(sys.executable).with_name("geomm"))
PLUGIN_SOURCES = Path(geomm.qgis.__file__).parent


def _geomm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GEOMM, *args], capture_output=True, text=True, env=env)


def test_install_copies_the_plugin_records_geomm_and_enables_it(tmp_path):
    no_qgis = subprocess.run([sys.executable, "-c", "import qgis.core"], capture_output=True)
    assert no_qgis.returncode != 0  # geomm's venv has no QGIS
    run = _geomm("qgis", "install", "--profile-dir", str(tmp_path / "profile"))
    assert run.returncode == 0, run.stderr
    plugin = tmp_path / "profile" / "python" / "plugins" / "geomm_processing"
    names = {p.name for p in plugin.iterdir()}
    assert {"__init__.py", "metadata.txt", "icon.svg", "plugin.py", "provider.py",
            "algorithms.py", "algorithm.py", "runner.py", "styling.py", "geomm.json"} == names
    meta = (plugin / "metadata.txt").read_text()
    assert "hasProcessingProvider=yes" in meta and "qgisMinimumVersion=3.22" in meta
    assert "def classFactory(iface" in (plugin / "__init__.py").read_text()
    settings = json.loads((plugin / "geomm.json").read_text())
    assert settings["executable"] == GEOMM
    assert "s2-landcover" in settings["recipes"]
    ini = (tmp_path / "profile" / "QGIS" / "QGIS3.ini").read_text()
    assert ini == "[PythonPlugins]\ngeomm_processing=true\n"
    assert str(plugin) in run.stdout and GEOMM in run.stdout


def test_reinstall_replaces_only_its_own_folder_and_line(tmp_path):
    profile = tmp_path / "profile"
    plugins = profile / "python" / "plugins"
    (plugins / "geomm_processing").mkdir(parents=True)
    (plugins / "geomm_processing" / "stale.py").write_text("old")
    (plugins / "geomm_processing" / "geomm.json").write_text("{}")  # an earlier install
    (plugins / "other_plugin").mkdir()
    (plugins / "other_plugin" / "__init__.py").write_text("keep")
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    before = ('[General]\nrecent=@Variant(\\0\\0\\0\\x7f)\npath="C:\\\\a b, c"\n\n'
              "[PythonPlugins]\nother_plugin=true\ngeomm_processing=false\n"
              "watchDog\\other_plugin=false\n\n[qgis]\nstyle=Fusion\n")
    ini.write_text(before)
    installer.install(profile, Path(GEOMM))
    assert not (plugins / "geomm_processing" / "stale.py").exists()
    assert (plugins / "other_plugin" / "__init__.py").read_text() == "keep"
    assert ini.read_text() == before.replace("geomm_processing=false", "geomm_processing=true")
    assert not [p for p in plugins.iterdir() if p.name.startswith(".")]  # no staging left
    assert installer.uninstall(profile) == plugins / "geomm_processing"
    assert not (plugins / "geomm_processing").exists()
    assert ini.read_text() == before
    assert installer.uninstall(profile) is None


def test_a_plugin_folder_geomm_did_not_install_is_never_replaced_or_deleted(tmp_path):
    profile = tmp_path / "profile"
    mine = profile / "python" / "plugins" / "geomm_processing"
    mine.mkdir(parents=True)
    (mine / "mine.py").write_text("mine")
    for act in (lambda: installer.install(profile, Path(GEOMM)),
                lambda: installer.uninstall(profile)):
        with pytest.raises(installer.InstallError, match="not a plugin folder geomm installed"):
            act()
        assert (mine / "mine.py").read_text() == "mine"
    assert not (profile / "QGIS").exists()  # nor was the plugin switched on or off
    real = tmp_path / "elsewhere"
    mine.rename(real)
    mine.symlink_to(real)  # a developer's link to a checkout
    with pytest.raises(installer.InstallError, match="is a link"):
        installer.uninstall(profile)
    assert (real / "mine.py").exists() and mine.is_symlink()


def test_an_ini_in_another_encoding_with_crlf_keeps_its_bytes(tmp_path):
    ini = tmp_path / "QGIS3.ini"
    before = "[General]\r\nlast=C:\\caf\xe9\r\n".encode("latin-1")
    ini.write_bytes(before)
    installer.set_ini_key(ini, "PythonPlugins", "geomm_processing", "true")
    assert ini.read_bytes() == before + b"\r\n[PythonPlugins]\r\ngeomm_processing=true\r\n"


def test_the_ini_gets_the_section_when_it_has_none(tmp_path):
    ini = tmp_path / "QGIS3.ini"
    ini.write_text("[qgis]\nstyle=Fusion\n")
    installer.set_ini_key(ini, "PythonPlugins", "geomm_processing", "true")
    assert ini.read_text() == "[qgis]\nstyle=Fusion\n\n[PythonPlugins]\ngeomm_processing=true\n"


def test_the_default_profile_is_qgis_s(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert installer.default_profile_dir() == tmp_path / "QGIS/QGIS3/profiles/default"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert installer.default_profile_dir() == \
        Path.home() / ".local/share/QGIS/QGIS3/profiles/default"


def test_install_refuses_a_geomm_that_is_not_there(tmp_path):
    run = _geomm("qgis", "install", "--profile-dir", str(tmp_path / "p"),
                 "--executable", str(tmp_path / "nope"))
    assert run.returncode == 1
    assert run.stderr.startswith("geomm: error: ") and "not an executable file" in run.stderr
    assert not (tmp_path / "p").exists()


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(str(node.module).split(".")[0])
    return names


@pytest.mark.parametrize("module", sorted(p.name for p in PLUGIN_SOURCES.glob("*.py")))
def test_the_plugin_imports_only_qgis_and_the_standard_library(module):
    """QGIS's Python cannot import geomm, numpy or anything else of geomm's environment."""
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    if module != "installer.py":  # the installer runs in geomm's environment, without QGIS
        allowed.add("qgis")
    assert _top_level_imports(PLUGIN_SOURCES / module) <= allowed
