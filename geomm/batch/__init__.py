"""Stage 6, scale out: jobs cut into blocks, blocks predicted on Dask workers into atomic
folders, the resumable runner and its manifest, and mosaics of the blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geomm._lazy import lazy_exports

_EXPORTS = {"run_batch": "runner", "BatchOptions": "runner", "BatchSummary": "runner",
            "grid_job": "jobs", "scenes_job": "jobs", "recipe_job": "jobs", "area_job": "jobs"}
__all__ = ["BatchOptions", "BatchSummary", "area_job", "grid_job", "recipe_job", "run_batch",
           "scenes_job"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from geomm.batch.jobs import area_job, grid_job, recipe_job, scenes_job
    from geomm.batch.runner import BatchOptions, BatchSummary, run_batch
