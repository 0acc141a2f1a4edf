"""One writer per output, all-or-nothing output sets, and nothing of the user's deleted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from geomm._lock import OutputBusyError, lock_path, output_lock
from geomm._outputs import JOURNAL, recover, staged_outputs
from geomm.stack.store import staged_store

HOLD = ("import sys, time\nfrom pathlib import Path\nfrom geomm._lock import output_lock\n"
        "with output_lock(Path(sys.argv[1]), 'geomm predict'):\n"
        "    print('held', flush=True)\n    time.sleep(60)\n")


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the lock of ``tmp_path / 'out'``; yield (process, out)."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc, out
    proc.kill()
    proc.wait()


def test_a_second_writer_is_refused_naming_the_first(holder):
    proc, out = holder
    with pytest.raises(OutputBusyError, match=rf"pid {proc.pid} .*geomm predict"), \
            output_lock(out, "geomm stack"):
        pass


def test_a_killed_holder_leaves_no_stale_lock(holder):
    proc, out = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with output_lock(out, "geomm stack"):
        assert lock_path(out).exists()
    assert not lock_path(out).exists()  # released and removed


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    with output_lock(tmp_path / "o", "a"), output_lock(tmp_path / "o", "b"):
        pass


def test_stack_into_an_output_being_written_is_one_line(holder, tmp_path):
    from geomm.cli import main
    from tests.synthetic import write_recipe, write_scene

    proc, out = holder
    write_scene(tmp_path)
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["stack", str(write_recipe(tmp_path)), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert f"another geomm run is writing this output (pid {proc.pid}" in result.output
    assert time.perf_counter() - t0 < 20 and not out.exists()


def _interrupted_commit(out: Path) -> Path:
    """A complete first run into ``out``, then a second one killed after its first rename
    (journal written, b.tif not yet moved); returns the second run's work folder."""
    with staged_outputs(out, ["a.tif", "b.tif"], overwrite=False) as work:
        (work / "a.tif").write_text("old a")
        (work / "b.tif").write_text("old b")
    work = out / ".geomm-work-999999-deadbeef"
    work.mkdir()
    (work / "b.tif").write_text("new b")
    (out / "a.tif").write_text("new a")
    (out / JOURNAL).write_text(json.dumps({"work": work.name, "names": ["a.tif", "b.tif"],
                                           "drop": []}))
    return work


def test_a_commit_cut_between_renames_is_finished_by_the_next_look(tmp_path):
    out = tmp_path / "out"
    work = _interrupted_commit(out)
    recover(out)
    assert (out / "a.tif").read_text() == "new a" and (out / "b.tif").read_text() == "new b"
    assert not (out / JOURNAL).exists() and not work.exists()


def test_an_overwrite_leaves_no_file_of_the_earlier_run(tmp_path):
    out = tmp_path / "out"
    with staged_outputs(out, ["a.tif", "b.tif"], overwrite=False) as work:
        (work / "a.tif").write_text("old a")
        (work / "b.tif").write_text("old b")
    (out / "mine.txt").write_text("user")
    with staged_outputs(out, ["a.tif", "b.tif"], overwrite=True) as work:
        (work / "a.tif").write_text("new a")  # this run makes no b.tif
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "mine.txt"]


def test_replacing_a_store_keeps_the_users_files_and_clears_stale_work(tmp_path):
    out = tmp_path / "store"
    with staged_store(out) as tmp:
        (tmp / "geomm-store.json").write_text("1")
    (out / "notes.txt").write_text("mine")
    stale = tmp_path / ".store.tmp-killedrun"
    stale.mkdir()
    (stale / "big.bin").write_bytes(b"0" * 1000)
    with staged_store(out) as tmp:
        (tmp / "geomm-store.json").write_text("2")
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "geomm-store.json").read_text() == "2"
    assert not stale.exists()


def test_a_swap_cut_between_its_renames_brings_the_old_store_back(tmp_path):
    out = tmp_path / "store"
    with staged_store(out) as tmp:
        (tmp / "geomm-store.json").write_text("1")
    out.rename(tmp_path / ".store.old-999999")  # killed after setting the old one aside
    with staged_store(tmp_path / "other"):
        pass
    assert not out.exists()
    with pytest.raises(RuntimeError), staged_store(out):
        assert (out / "geomm-store.json").read_text() == "1"  # restored before the work
        raise RuntimeError("the new run fails")
    assert (out / "geomm-store.json").read_text() == "1"


def test_a_reader_finishes_an_interrupted_commit_before_reading(tmp_path):
    from geomm._outputs import settle

    out = tmp_path / "out"
    work = _interrupted_commit(out)
    settle(out / "a.tif")
    assert (out / "a.tif").read_text() == "new a" and (out / "b.tif").read_text() == "new b"
    assert not (out / JOURNAL).exists() and not work.exists()
