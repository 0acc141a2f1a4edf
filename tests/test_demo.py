"""``geomm demo`` writes only into a folder of its own: the user's files there are refused
before any work, never replaced."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from geomm import demo, sampledata
from geomm._outputs import OutputExistsError
from geomm.cli import main


def _never(*args, **kwargs):
    raise AssertionError("the demo went on to fetch the sample")


@pytest.mark.parametrize("mine", ["map/map.gpkg", "reference-test-blocks.tif",
                                  "report/report.html", "model/notes.txt"])
def test_a_folder_with_the_users_files_of_the_demos_names_is_refused_first(tmp_path,
                                                                           monkeypatch, mine):
    monkeypatch.setattr(sampledata, "fetch", _never)
    out = tmp_path / "out"
    (out / mine).parent.mkdir(parents=True, exist_ok=True)
    (out / mine).write_text("mine")
    result = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip().startswith("geomm: error:") and "did not write" in result.output
    assert (out / mine).read_text() == "mine" and not (out / demo.MARKER).exists()


def test_the_demos_own_folder_is_claimed_and_a_failed_first_run_leaves_nothing(tmp_path,
                                                                               monkeypatch):
    out = tmp_path / "out"
    (out / "notes.txt").parent.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")  # not a name the demo writes: kept, no clash
    assert demo.claim_folder(out) is False and (out / demo.MARKER).is_file()
    (out / "map").mkdir()
    assert demo.claim_folder(out) is False  # a rerun replaces what the demo wrote
    with pytest.raises(OutputExistsError, match="is a file"):
        demo.claim_folder(out / "notes.txt")

    def broken(*args, **kwargs):
        raise sampledata.SampleDataError("no index")

    monkeypatch.setattr(sampledata, "fetch", broken)
    fresh = tmp_path / "fresh"
    with pytest.raises(sampledata.SampleDataError):
        demo.run_demo(out=fresh)
    assert not fresh.exists()  # a first run that made nothing leaves no folder
