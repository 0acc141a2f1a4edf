"""Stage 5, evaluate: reading class maps and references, the error matrix and accuracy,
stratified area estimates, sample design, and the report with its plots."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geomm._lazy import lazy_exports

_EXPORTS = {"sample_design": "sampledesign", "SampleDesign": "sampledesign"}
__all__ = ["SampleDesign", "sample_design"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from geomm.assess.sampledesign import SampleDesign, sample_design
