"""The batch tests' fixtures: the synthetic job and its one-process reference run."""

from __future__ import annotations

import pytest
from batchcase import make_job, run_single


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A synthetic scene, its recipe and a tiny CNN bundle."""
    return make_job(tmp_path_factory)


@pytest.fixture(scope="module")
def single(job):
    """The grid job run in one process: what every other run must equal."""
    return run_single(job)
