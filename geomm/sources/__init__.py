"""Inputs that are not plain band files: STAC searches composited into per-band rasters.

:func:`resolve` turns a recipe's ``stac:`` modalities into band files (searched, planned,
composited per chunk, cached); :func:`plan` and :func:`describe_plan` say what it would read.
"""

from geomm.sources.resolve import describe_plan, plan, resolve

__all__ = ["describe_plan", "plan", "resolve"]
