"""The plugin's subprocess runner (geomm/qgis/runner.py, standard library only) against a fake
geomm: progress into the feedback, error lines, cancel of the whole process group, and the
clean-up of what a killed run leaves. No QGIS needed."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from geomm.qgis import runner

FAKE = textwrap.dedent("""\
    import fcntl, os, signal, subprocess, sys, time
    mode = sys.argv[1]
    if mode == "bars":
        print("co-registering", flush=True)
        for i in range(0, 5):
            sys.stderr.write(f"\\r {i * 25}%|###  | {i}/4 [00:01<00:01, 2.0tile/s]")
            sys.stderr.flush()
        sys.stderr.write("\\r" + " " * 40 + "\\r")
        print("geomm: warning: something to know", file=sys.stderr, flush=True)
        time.sleep(0.3)  # stdout and stderr are read apart: this line comes after the bars
        print("[2/5] train", flush=True)
        print("done: wrote map", flush=True)
    elif mode == "epochs":  # Lightning: a bar per epoch, validation bars in between
        for epoch in range(2):
            for i in range(1, 3):
                sys.stderr.write(f"\\rEpoch {epoch}: {i * 50}%|##| {i}/2 [00:01<00:01]")
                sys.stderr.flush()
                time.sleep(0.05)
            sys.stderr.write("\\n\\x1b[AValidation: |   | 0/? [00:00<?, ?it/s]\\n")
            sys.stderr.write("Validation DataLoader 0:  50%|#  | 1/2 [00:00<00:00]\\n\\x1b[A")
            sys.stderr.flush()
            time.sleep(0.05)
        print("cnn: held-out test blocks: OA 50 %", flush=True)
    elif mode == "done":  # a quick run: its whole output, then exit 0
        os.makedirs(sys.argv[2])
        open(os.path.join(sys.argv[2], "classes.tif"), "w").close()
        print(f"pid {os.getpid()}", flush=True)
        print("done: wrote map", flush=True)
    elif mode == "ends-on-int":  # a run that completes its output as the SIGINT comes
        def commit(*_):
            os.makedirs(sys.argv[2])
            open(os.path.join(sys.argv[2], "classes.tif"), "w").close()
            sys.exit(0)
        signal.signal(signal.SIGINT, commit)
        sys.stderr.write("\\r  0%|      | 0/9 [00:00<?, ?tile/s]")
        sys.stderr.flush()
        time.sleep(60)
    elif mode == "fail":
        print("geomm: error: in.tif: not a raster; give a GeoTIFF", file=sys.stderr)
        sys.exit(1)
    else:  # "hang" or "stubborn" OUT: a run that starts writing OUT, then waits
        out = sys.argv[2]
        if mode == "stubborn":
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        lock = os.path.join(os.path.dirname(out), "." + os.path.basename(out) + ".geomm-lock")
        fd = os.open(lock, os.O_CREAT | os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.makedirs(os.path.join(out, f".geomm-work-{os.getpid()}-abcd"))
        open(os.path.join(out, f".geomm-work-{os.getpid()}-abcd", "classes.tif"), "w").close()
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(f"child {child.pid}", flush=True)
        sys.stderr.write("\\r  0%|      | 0/9 [00:00<?, ?tile/s]")
        sys.stderr.flush()
        time.sleep(60)
""")


class Feedback:
    """QgsProcessingFeedback's methods that the runner calls."""

    def __init__(self, cancel_at: float | None = None) -> None:
        self.progress: list[float] = []
        self.info: list[str] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self.commands: list[str] = []
        self.cancel_at = cancel_at
        self.canceled = False

    def isCanceled(self) -> bool:  # noqa: N802
        return self.canceled

    def setProgress(self, p: float) -> None:  # noqa: N802
        self.progress.append(p)
        if self.cancel_at is not None and p >= self.cancel_at:
            self.canceled = True

    def pushInfo(self, text: str) -> None:  # noqa: N802
        self.info.append(text)

    def pushWarning(self, text: str) -> None:  # noqa: N802
        self.warnings.append(text)

    def reportError(self, text: str, fatal: bool = False) -> None:  # noqa: N802
        self.errors.append(text)

    def pushCommandInfo(self, text: str) -> None:  # noqa: N802
        self.commands.append(text)


@pytest.fixture
def fake_geomm(tmp_path: Path) -> str:
    exe = tmp_path / "bin" / "geomm"
    exe.parent.mkdir()
    exe.write_text(f"#!{sys.executable}\n{FAKE}")
    exe.chmod(0o755)
    return str(exe)


def test_bars_become_progress_and_lines_become_messages(fake_geomm):
    fb = Feedback()
    res = runner.run_geomm(["bars"], fb, executable=fake_geomm, span=(10, 90))
    assert res.returncode == 0 and not res.cancelled and not res.errors
    assert fb.commands == [f"{fake_geomm} bars"]
    assert fb.progress[:5] == [10, 30, 50, 70, 90]  # the tile bar, mapped into the span
    assert fb.progress[-1] == 10 + 80 * 1 / 5  # "[2/5] train": step 2 of 5 begins
    assert fb.info == ["co-registering", "[2/5] train", "done: wrote map"]  # no bar text
    assert fb.warnings == ["geomm: warning: something to know"]


def test_training_progress_counts_epochs_not_validation(fake_geomm):
    fb = Feedback()
    res = runner.run_geomm(["epochs"], fb, executable=fake_geomm, epochs=2)
    assert res.returncode == 0
    assert fb.progress == [25, 50, 75, 100]
    assert fb.info == ["cnn: held-out test blocks: OA 50 %"]  # no bars, no escapes


def test_training_progress_follows_geomm_s_plan_line():
    """Without --max-epochs the epochs are sized to the labels: geomm's plan line says how
    many, and how many networks, and the progress spans them all."""
    from geomm.learn.config import TrainConfig
    from geomm.learn.train import training_plan

    p = runner._Progress(None, (0.0, 100.0))
    plan = training_plan(2, TrainConfig(max_epochs=4), 32, 8)  # the line geomm prints
    assert plan == "training 2 networks of width 32: at most 4 epochs of 8 steps each"
    assert p.parse(plan) is None
    assert p.parse("Epoch 0: 100%|##| 8/8 [00:01<00:00]") == 100 * 1 / 8
    assert p.parse("Epoch 3: 100%|##| 8/8 [00:01<00:00]") == 100 * 4 / 8
    assert p.parse("  network 2 of 2 (their mean is the model)") is None
    assert p.parse("Epoch 0: 50%|##| 4/8 [00:01<00:00]") == 100 * 4.5 / 8
    assert p.parse("Epoch 3: 100%|##| 8/8 [00:01<00:00]") == 100.0
    one = runner._Progress(12, (0.0, 100.0))  # a plan line overrides the caller's guess
    one.parse(training_plan(1, TrainConfig(max_epochs=16), 48, 48))
    assert one.parse("Epoch 11: 100%|##| 48/48 [00:01<00:00]") == 100 * 12 / 16


def test_a_failed_run_reports_geomm_s_error_line(fake_geomm):
    fb = Feedback()
    res = runner.run_geomm(["fail"], fb, executable=fake_geomm)
    assert res.returncode == 1
    assert res.errors == ["in.tif: not a raster; give a GeoTIFF"]
    assert fb.errors == ["geomm: error: in.tif: not a raster; give a GeoTIFF"]


@pytest.mark.parametrize("mode", ["hang", "stubborn"])
def test_cancel_stops_the_process_group_and_removes_what_the_run_began(
        fake_geomm, tmp_path, monkeypatch, mode):
    """SIGINT to the group; a run that ignores SIGINT and SIGTERM gets SIGKILL after the
    grace periods; its child goes too. Its work folder, lock and new output folder go."""
    monkeypatch.setattr(runner, "GRACE_INT", 0.5)
    monkeypatch.setattr(runner, "GRACE_TERM", 0.5)
    out = tmp_path / "map"
    keep = tmp_path / ".map.notes"  # someone else's file beside it, there before
    keep.write_text("mine")
    fb = Feedback(cancel_at=0)
    t0 = time.monotonic()
    res = runner.run_geomm([mode, str(out)], fb, outputs=[out], executable=fake_geomm)
    took = time.monotonic() - t0
    assert res.cancelled and res.returncode != 0
    child = int(next(ln for ln in fb.info if ln.startswith("child ")).split()[1])
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"
    assert not out.exists() and not (tmp_path / ".map.geomm-lock").exists()
    assert keep.read_text() == "mine"
    assert out in res.removed
    assert took < (2.5 if mode == "stubborn" else 1.5)


def test_cancel_keeps_what_was_there_before(fake_geomm, tmp_path):
    out = tmp_path / "map"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / ".hidden-before").write_text("mine")
    res = runner.run_geomm(["hang", str(out)], Feedback(cancel_at=0), outputs=[out],
                           executable=fake_geomm)
    assert res.cancelled
    assert sorted(p.name for p in out.iterdir()) == [".hidden-before", "notes.txt"]


class LateCancel(Feedback):
    """Cancels once geomm has said "done" and exited (a QGIS that reads its output late)."""

    def pushInfo(self, text: str) -> None:  # noqa: N802
        super().pushInfo(text)
        if text.startswith("done"):
            pid = int(next(ln for ln in self.info if ln.startswith("pid ")).split()[1])
            end = time.monotonic() + 10
            while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                assert time.monotonic() < end, "geomm did not exit after saying done"
                time.sleep(0.02)
            self.canceled = True


@pytest.mark.parametrize("mode", ["done", "ends-on-int"])
def test_a_cancel_after_geomm_finished_keeps_its_complete_output(fake_geomm, tmp_path, mode):
    """Cancelled after geomm exited 0 (its last lines not read yet), or while it exits 0 on
    the SIGINT: nothing is stopped or removed, the run is reported as finished."""
    out = tmp_path / "map"
    fb = LateCancel() if mode == "done" else Feedback(cancel_at=0)
    res = runner.run_geomm([mode, str(out)], fb, outputs=[out], executable=fake_geomm)
    assert fb.canceled
    assert res.finished_first and not res.cancelled and res.returncode == 0
    assert res.removed == [] and [p.name for p in out.iterdir()] == ["classes.tif"]


def test_the_geomm_executable_comes_from_the_env_var_then_the_install_then_path(
        fake_geomm, tmp_path, monkeypatch):
    settings = tmp_path / "geomm.json"
    monkeypatch.setattr(runner, "SETTINGS_FILE", settings)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("GEOMM_EXECUTABLE", raising=False)
    with pytest.raises(runner.GeommNotFound, match="Run `geomm qgis install`"):
        runner.find_geomm()
    settings.write_text('{"executable": "/gone/venv/bin/geomm"}')
    with pytest.raises(runner.GeommNotFound, match="/gone/venv/bin/geomm, recorded by"):
        runner.find_geomm()
    monkeypatch.setenv("PATH", str(Path(fake_geomm).parent))
    assert runner.find_geomm() == fake_geomm
    settings.write_text(f'{{"executable": "{fake_geomm}"}}')
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert runner.find_geomm() == fake_geomm
    monkeypatch.setenv("GEOMM_EXECUTABLE", str(tmp_path / "nope"))
    with pytest.raises(runner.GeommNotFound, match="GEOMM_EXECUTABLE=.*nope is not an exec"):
        runner.find_geomm()


def test_geomm_runs_without_qgis_s_python_and_data_paths(monkeypatch):
    monkeypatch.setenv("PYTHONHOME", "/usr")
    monkeypatch.setenv("PROJ_LIB", "/usr/share/proj")
    env = runner.child_env()
    assert "PYTHONHOME" not in env and "PROJ_LIB" not in env
    assert env["PYTHONUNBUFFERED"] == "1" and env["PATH"] == os.environ["PATH"]
