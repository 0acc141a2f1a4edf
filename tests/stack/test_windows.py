"""Tile arithmetic: halos cropped off, the cores cover every base pixel exactly once."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geomm.stack.windows import tile_windows


@settings(deadline=None, max_examples=150)
@given(height=st.integers(1, 200), width=st.integers(1, 200), size=st.integers(2, 128),
       halo=st.integers(0, 40))
def test_cropped_halos_cover_every_pixel_exactly_once(height, width, size, halo):
    scene = np.arange(height * width).reshape(height, width)
    padded = np.pad(scene, halo, constant_values=-1)
    cover = np.zeros((height, width), dtype=int)
    for w in tile_windows(height, width, size, halo):
        rs, cs = w.read_slices
        read = padded[rs.start + halo:rs.stop + halo, cs.start + halo:cs.stop + halo]
        assert read.shape == (w.core_shape[0] + 2 * halo, w.core_shape[1] + 2 * halo)
        core = read[w.crop]
        np.testing.assert_array_equal(core, scene[w.row0:w.row1, w.col0:w.col1])
        cover[w.row0:w.row1, w.col0:w.col1] += 1
    assert (cover == 1).all()


@settings(deadline=None)
@given(k=st.integers(1, 20), factor=st.sampled_from([1, 2, 3, 6]), halo_k=st.integers(0, 4),
       tiles=st.integers(1, 5))
def test_tile_maps_to_whole_pixels_of_coarser_layers(k, factor, halo_k, tiles):
    size, halo = k * factor, halo_k * factor
    height = width = size * tiles - (factor if tiles > 1 else 0)
    for w in tile_windows(height, width, size, halo):
        c = w.at(factor)
        assert (c.row1 - c.row0) * factor == w.row1 - w.row0
        assert c.halo * factor == halo


def test_tile_ids_and_bounds():
    from affine import Affine

    wins = list(tile_windows(100, 250, 100))
    assert [w.id for w in wins] == ["r000c000", "r000c001", "r000c002"]
    assert wins[2].core_shape == (100, 50)
    assert wins[1].bounds(Affine(10, 0, 1000, 0, -10, 5000)) == (2000, 4000, 3000, 5000)
