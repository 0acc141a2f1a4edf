"""The label-scarce protocol: train on only k labelled polygons per class.

A user with 30 digitised polygons is the common case, not 600. To measure how a model holds
up, the training blocks' labels are thinned to ``k`` polygons per class, drawn at random with
a seed; the unlabelled pixels of the training blocks stay (normalisation statistics, patch
context), the test blocks are unchanged, so every label budget is scored on the same pixels.

A *polygon* is a connected region (8-neighbours) of one class in the label raster, inside the
training blocks: the burned outline of a vector polygon (neighbouring polygons of one class
merge), or a patch of a label raster. Regions cut by a block edge count once per side.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from geomm.errors import RecipeError

__all__ = ["polygon_budget_mask"]


def polygon_budget_mask(labels: np.ndarray, allowed: np.ndarray, k: int, *, seed: int = 0,
                        ignore_value: int = 255) -> np.ndarray:
    """Mask of the pixels of ``k`` randomly drawn labelled regions per class inside ``allowed``.

    Args:
        labels: (H, W) uint8 class ids, ``ignore_value`` where unlabelled.
        allowed: (H, W) bool, where labels may be used (the training blocks).
        k: regions per class; a class with fewer keeps all of its regions.
        seed: seed of the draw (the same seed draws the same regions).
        ignore_value: the unlabelled value.

    Returns:
        (H, W) bool: True on the pixels of the drawn regions.

    Raises:
        RecipeError: ``k`` is not a positive whole number.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise RecipeError(f"polygons_per_class {k!r} must be a whole number >= 1")
    rng = np.random.default_rng(seed)
    out = np.zeros(labels.shape, dtype=bool)
    usable = allowed & (labels != ignore_value)
    eight = np.ones((3, 3), dtype=bool)
    for c in np.unique(labels[usable]):
        regions, n = ndimage.label(usable & (labels == c), structure=eight)
        if n == 0:
            continue
        chosen = rng.choice(np.arange(1, n + 1), size=min(int(k), n), replace=False)
        out |= np.isin(regions, chosen)
    return out
