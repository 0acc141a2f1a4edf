"""The command line's error boundary: every failure is one ``geomm: error:`` line, exit 1."""

from __future__ import annotations

import errno

from click.testing import CliRunner

from geomm.cli import main
from geomm.cli.boundary import explain


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("geomm: error: ")]
    assert result.exit_code == 1, result.output
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


def test_no_space_names_the_file_and_says_what_to_do():
    exc = OSError(errno.ENOSPC, "No space left on device", "/out/classes.tif")
    line = explain(exc)
    assert "no space left" in line and "/out/classes.tif" in line and "elsewhere" in line


def test_a_read_only_output_names_the_folder_not_a_hidden_lock_file():
    line = explain(OSError(errno.EROFS, "Read-only file system", "/mnt/ro/.tiles.geomm-lock"))
    assert "cannot write to '/mnt/ro'" in line and "geomm-lock" not in line
    line = explain(PermissionError(errno.EACCES, "Permission denied", "/srv/out/.x.partial"))
    assert "cannot write to '/srv/out'" in line and "folder you can write to" in line


def test_a_gdal_write_failure_is_not_blamed_on_the_input():
    import rasterio.errors

    exc = rasterio.errors.RasterioIOError(
        "Attempt to create new tiff file 'ro/.x.tif.9719.plain.tif' failed: Read-only file "
        "system")
    line = explain(exc)
    assert line.startswith("writing failed") and "corrupt" not in line


def test_an_output_under_a_file_says_the_path_holds_a_file():
    line = explain(NotADirectoryError(errno.ENOTDIR, "Not a directory", "notes.txt/out"))
    assert "notes.txt/out" in line and "is a file" in line


def test_the_cause_of_a_wrapped_read_error_is_found():
    import rasterio.errors

    try:
        try:
            raise rasterio.errors.RasterioIOError(
                "/data/b02.tif, band 1: IReadBlock failed at X offset 0, Y offset 3")
        except rasterio.errors.RasterioIOError as inner:
            raise rasterio.errors.RasterioIOError("Read failed. See previous exception") \
                from inner
    except rasterio.errors.RasterioIOError as exc:
        line = explain(exc)
    assert "/data/b02.tif" in line and "truncated or corrupt" in line


def test_an_unreachable_scheduler_names_the_address():
    exc = OSError("Timed out trying to connect to tcp://10.9.9.9:8786 after 5 s")
    line = explain(exc)
    assert "tcp://10.9.9.9:8786" in line and "--scheduler" in line


def test_an_unknown_failure_is_still_one_line_pointing_at_debug():
    line = explain(ValueError("something\nodd"))
    assert "\n" not in line and "ValueError" in line and "--debug" in line


def test_a_truncated_geotiff_is_one_line_in_stack(tmp_path):
    from tests.synthetic import write_recipe, write_scene

    bands = write_scene(tmp_path)
    data = bands["a"].read_bytes()
    bands["a"].write_bytes(data[: len(data) // 2])
    out = tmp_path / "store"
    result = CliRunner().invoke(main, ["stack", str(write_recipe(tmp_path)), "-o", str(out)])
    line = _one_error_line(result)
    assert "A.tif" in line, line
    assert not out.exists()


def test_stack_into_a_path_under_a_file_is_one_line(tmp_path):
    from tests.synthetic import write_recipe, write_scene

    write_scene(tmp_path)
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    result = CliRunner().invoke(main, ["stack", str(write_recipe(tmp_path)),
                                       "-o", str(afile / "out")])
    assert "notes.txt" in _one_error_line(result)
    assert afile.read_text() == "mine"
