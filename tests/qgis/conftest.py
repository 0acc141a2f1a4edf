"""Fixtures of the QGIS plugin tests: real QGIS from Debian (qgis, python3-qgis,
qgis-providers) run headless, the plugin installed by ``geomm qgis install`` into a
throwaway profile, and a small random-forest bundle on the real s2-t33uuu sample."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_or_skip
from tests.qgis.qgisrun import GEOMM, NOT_FOR_QGIS, QGIS_PYTHON, Qgis, qgis_process_command


@pytest.fixture(scope="session")
def qgis(tmp_path_factory: pytest.TempPathFactory) -> Qgis:
    """The plugin installed with ``geomm qgis install`` into the default profile of a
    throwaway XDG data folder (where QGIS and qgis_process look for it), offscreen Qt."""
    qgis_process_command()
    probe = subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True)
    if probe.returncode:
        require_or_skip("PyQGIS is not installed (apt-get install python3-qgis) - the QGIS "
                        "plugin tests run QGIS's own Python")
    from geomm._cache import cache_dir

    root = tmp_path_factory.mktemp("qgis")
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k not in NOT_FOR_QGIS}
    env.update(XDG_DATA_HOME=str(root / "data"), QT_QPA_PLATFORM="offscreen",
               XDG_RUNTIME_DIR=str(runtime), GEOMM_CACHE=str(cache_dir()))
    done = subprocess.run([GEOMM, "qgis", "install"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return Qgis(root / "data" / "QGIS" / "QGIS3" / "profiles" / "default", env)


@pytest.fixture(scope="session")
def rf_fit(s2_sample: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """A small random forest (8 trees, depth 10) fitted on the sample's labels, and the
    sample's store."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from geomm.learn.baseline import pixel_features, sample_training_pixels
    from geomm.recipe import load_recipe
    from geomm.stack.build import stack
    from geomm.stack.store import open_store

    (summary,) = stack(load_recipe("s2-landcover"), out=tmp_path_factory.mktemp("rf-store"),
                       workers=2)
    store = open_store(summary.path)
    labels = np.asarray(store.base()["labels"])
    px = sample_training_pixels(store, labels != store.ignore_value, max_per_class=5000)
    X, _ = pixel_features(store, rows_cols=(px.rows, px.cols))
    model = RandomForestClassifier(n_estimators=8, max_depth=10, random_state=0)
    return model.fit(X, px.labels), store


@pytest.fixture(scope="session")
def rf_bundle(rf_fit: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small forest as a bundle: maps the scene in seconds (``geomm train --classifier
    rf`` grows 200 full trees, ~40 s, and maps in ~80 s)."""
    from geomm.learn.baseline import save_classifier

    model, store = rf_fit
    return save_classifier(tmp_path_factory.mktemp("rf") / "rf", model, store)


@pytest.fixture(scope="session")
def slow_rf_bundle(rf_fit: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory
                   ) -> Path:
    """The small forest with each tree 64 times (the same map), so that mapping takes
    tens of seconds: a run a cancel can always reach before it ends."""
    import copy

    from geomm.learn.baseline import save_classifier

    model, store = rf_fit
    slow = copy.deepcopy(model)
    slow.estimators_ = slow.estimators_ * 64
    slow.n_estimators = len(slow.estimators_)
    return save_classifier(tmp_path_factory.mktemp("rf-slow") / "rf", slow, store)


@pytest.fixture(scope="session")
def qgis_process_map(qgis: Qgis, rf_bundle: Path, tmp_path_factory: pytest.TempPathFactory
                     ) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``qgis_process run geomm:predict`` on the sample: the run and its output folder."""
    out = tmp_path_factory.mktemp("qgis-predict") / "map"
    run = qgis.qgis_process("run", "geomm:predict", f"--BUNDLE={rf_bundle}",
                            "--BUNDLED_RECIPE=s2-landcover", f"--OUTPUT={out}")
    return run, out
