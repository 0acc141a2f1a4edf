"""``geomm qgis install``: copy the Processing plugin into a QGIS profile and switch it on.

Runs in geomm's environment, which need not have QGIS: the standard library only. The plugin
folder ``<profile>/python/plugins/geomm_processing`` is replaced as a whole (built beside it,
then renamed in); nothing else in the profile is touched except two keys of the profile's
``QGIS/QGIS3.ini``: ``[PythonPlugins] geomm_processing=true``, which makes QGIS (and
``qgis_process``) load the plugin. The path of the ``geomm`` executable goes into the plugin
folder (``geomm.json``), where the plugin reads it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

__all__ = ["PLUGIN_NAME", "InstallError", "Installed", "default_profile_dir",
           "default_executable", "install", "uninstall"]

PLUGIN_NAME = "geomm_processing"
"""The plugin's folder name in the profile (and its id in QGIS3.ini)."""

SETTINGS_FILE = "geomm.json"
"""Written into the installed plugin folder: the geomm executable the plugin runs."""

_SOURCE = Path(__file__).parent
_NOT_COPIED = {"installer.py"}
_PLUGIN_FILES = ("*.py", "metadata.txt", "icon.svg")


class InstallError(Exception):
    """The plugin could not be installed (a message naming the path and the fix)."""


@dataclass(frozen=True)
class Installed:
    """What :func:`install` did."""

    plugin_dir: Path
    executable: Path
    ini: Path


def default_profile_dir() -> Path:
    """The default QGIS 3 user profile of this user, on this platform."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "QGIS" / "QGIS3" / "profiles" / "default"


def default_executable() -> Path | None:
    """The ``geomm`` command of the running environment (beside its Python), else on PATH."""
    name = "geomm.exe" if sys.platform == "win32" else "geomm"
    here = Path(sys.executable).parent / name  # a venv's bin/ (or Scripts\\): not resolved
    if here.is_file() and os.access(here, os.X_OK):
        return here.absolute()
    found = shutil.which("geomm")
    return Path(found).absolute() if found else None


def install(profile_dir: Path | None = None, executable: Path | None = None, *,
            recipes: list[str] | tuple[str, ...] = ()) -> Installed:
    """Install (or replace) the plugin in ``profile_dir`` and enable it there.

    Args:
        profile_dir: a QGIS profile folder (default :func:`default_profile_dir`).
        executable: the ``geomm`` the plugin runs (default :func:`default_executable`).
        recipes: names of the recipes bundled with geomm, offered by the algorithms.

    Raises:
        InstallError: no usable geomm executable, or the profile cannot be written.
    """
    profile = Path(profile_dir).expanduser() if profile_dir else default_profile_dir()
    exe = Path(executable).expanduser().absolute() if executable else default_executable()
    if exe is None or not exe.is_file() or not os.access(exe, os.X_OK):
        raise InstallError(f"{exe or 'geomm'}: not an executable file; pass --executable "
                           "with the path of the geomm command QGIS should run")
    if profile.exists() and not profile.is_dir():
        raise InstallError(f"{profile}: is a file, not a QGIS profile folder")
    plugins = profile / "python" / "plugins"
    target = plugins / PLUGIN_NAME
    _refuse_foreign(target)
    ini = profile / "QGIS" / "QGIS3.ini"
    staged_ini: Path | None = None
    try:
        plugins.mkdir(parents=True, exist_ok=True)
        # the settings are staged first: a profile they cannot be written to is found before
        # the plugin folder is touched
        staged_ini = _staged_ini(ini, "PythonPlugins", PLUGIN_NAME, "true")
        staging = plugins / f".{PLUGIN_NAME}.new-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            for pattern in _PLUGIN_FILES:
                for src in sorted(_SOURCE.glob(pattern)):
                    if src.name not in _NOT_COPIED:
                        shutil.copy2(src, staging / src.name)
            settings = {"executable": str(exe), "geomm_version": _version(),
                        "recipes": sorted(recipes),
                        "installed": datetime.now(UTC).isoformat(timespec="seconds")}
            (staging / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n")
            _swap_in(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        os.replace(staged_ini, ini)
    except OSError as e:
        raise InstallError(f"{profile}: cannot write the QGIS profile ({e.strerror or e})"
                           ) from None
    finally:
        if staged_ini is not None:
            staged_ini.unlink(missing_ok=True)
    return Installed(target, exe, ini)


def _refuse_foreign(target: Path) -> None:
    """Refuse a ``target`` that geomm did not install (a link, a file, or a folder without
    :data:`SETTINGS_FILE`): install and uninstall never replace or delete it."""
    if target.is_symlink():
        raise InstallError(f"{target}: is a link, not a plugin folder geomm installed; remove "
                           "the link yourself")
    if target.exists() and not (target / SETTINGS_FILE).is_file():
        raise InstallError(f"{target}: exists and is not a plugin folder geomm installed (no "
                           f"{SETTINGS_FILE}); move it away first")


def uninstall(profile_dir: Path | None = None) -> Path | None:
    """Remove the plugin folder from ``profile_dir`` and switch it off; the removed folder, or
    None when it was not installed there."""
    profile = Path(profile_dir).expanduser() if profile_dir else default_profile_dir()
    target = profile / "python" / "plugins" / PLUGIN_NAME
    ini = profile / "QGIS" / "QGIS3.ini"
    _refuse_foreign(target)
    try:
        if ini.is_file():
            set_ini_key(ini, "PythonPlugins", PLUGIN_NAME, "false")
        if not target.is_dir():
            return None
        gone = target.with_name(f".{target.name}.gone-{uuid.uuid4().hex[:8]}")
        target.rename(gone)  # one step: the plugin is there whole, or not at all
    except OSError as e:
        raise InstallError(f"{profile}: cannot write the QGIS profile ({e.strerror or e})"
                           ) from None
    shutil.rmtree(gone, ignore_errors=True)
    return target


def _swap_in(staging: Path, target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InstallError(f"{target}: exists and is not the plugin's folder; remove it first")
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    try:
        staging.rename(target)
    except OSError:
        if old.exists():
            old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _version() -> str:
    try:
        return metadata.version("geomm")
    except metadata.PackageNotFoundError:  # pragma: no cover  (a source tree)
        return "unknown"


_SECTION = re.compile(r"^\s*\[(?P<name>[^\]]*)\]\s*$")


def set_ini_key(ini: Path, section: str, key: str, value: str) -> None:
    """Set ``key=value`` in ``[section]`` of a QSettings INI file, editing that one line (or
    adding it) and keeping every other line as it was; the file is replaced by a rename."""
    os.replace(_staged_ini(ini, section, key, value), ini)


def _staged_ini(ini: Path, section: str, key: str, value: str) -> Path:
    """:func:`set_ini_key`'s new file, written beside ``ini`` under a hidden name. Bytes that
    are not UTF-8 (an INI of another encoding) and CRLF line ends are kept as they were."""
    text = ""
    if ini.exists():
        with open(ini, encoding="utf-8", errors="surrogateescape", newline="") as f:
            text = f.read()
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines)
                  if (m := _SECTION.match(ln)) and m["name"] == section), None)
    entry = f"{key}={value}"
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [f"[{section}]", entry]
    else:
        end = next((i for i in range(start + 1, len(lines)) if _SECTION.match(lines[i])),
                   len(lines))
        at = next((i for i in range(start + 1, end)
                   if lines[i].split("=", 1)[0].strip() == key), None)
        if at is None:
            lines.insert(start + 1, entry)
        else:
            lines[at] = entry
    ini.parent.mkdir(parents=True, exist_ok=True)
    tmp = ini.with_name(f".{ini.name}.geomm-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            f.write(newline.join(lines) + newline)
        if ini.exists():
            shutil.copymode(ini, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
