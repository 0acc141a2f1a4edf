"""Every file and folder geomm writes follows the user's umask (temporary files are private
while they are written, never after): a bundle, a tile store, a prediction with its
sidecars and a vector map, all made under ``umask 027``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from synthetic import write_recipe, write_scene

UMASK = 0o027
TESTS = Path(__file__).parent


def _run(*args: str, cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          preexec_fn=lambda: os.umask(UMASK), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_outputs_follow_the_umask(tmp_path):
    scene = tmp_path / "scene"
    write_scene(scene)
    recipe = write_recipe(scene)
    out = tmp_path / "out"
    out.mkdir()
    geomm = str(Path(sys.executable).with_name("geomm"))
    _run(sys.executable, "-c", "from pathlib import Path; from synthetic import cnn_bundle; "
         "cnn_bundle(Path('bundle'))", cwd=out)
    _run(geomm, "stack", str(recipe), "--out", str(out / "store"), "--workers", "1", cwd=out)
    _run(geomm, "predict", str(out / "bundle"), str(recipe), "-o", str(out / "map"),
         "--tile-size", "96", "--halo", "16", "--threads", "1", "--quiet", cwd=out)
    _run(geomm, "vectorize", str(out / "map" / "classes.tif"), "-o", str(out / "map.gpkg"),
         cwd=out)
    modes = {}
    for p in [out / n for n in ("bundle", "store", "map", "map.gpkg")]:
        for q in [p, *p.rglob("*")] if p.is_dir() else [p]:
            want = (0o777 if q.is_dir() else 0o666) & ~UMASK
            modes[str(q.relative_to(out))] = (stat.S_IMODE(q.stat().st_mode), want)
    wrong = {k: f"{m:o} (want {w:o})" for k, (m, w) in modes.items() if m != w}
    assert len(modes) > 12 and not wrong, wrong
