"""Class tables: default colours follow land-cover legends for names a user would expect."""

from __future__ import annotations

from geomm.classes import ClassTable


def _hue_family(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    if b > r + 60 and b >= g:
        return "blue"
    if g > r + 40 and g > b + 40:
        return "green"
    if r > g + 60 and r > b + 60:
        return "red"
    return "other"


def test_common_names_get_legend_colours():
    t = ClassTable(("farmland", "Forest", "grass", "meadow", "residential", "scrub", "water",
                    "wetland", "Built-up area", "herbaceous vegetation", "lake"))
    fam = {n: _hue_family(t.colours[i]) for i, n in enumerate(t.names)}
    assert fam["water"] == fam["lake"] == "blue"
    assert fam["Forest"] == "green" and fam["residential"] == "red"
    assert fam["Built-up area"] == "red"
    assert fam["herbaceous vegetation"] not in ("red", "blue")  # the Landsat scene's complaint
    assert len(set(t.colours)) == len(t.names)  # water and lake: two shades of blue


def test_unknown_names_take_palette_colours_away_from_the_legend_ones():
    t = ClassTable(("water", "class_a", "class_b"))
    water, a, b = t.colours
    assert a != water and b != water and a != b
    assert sum(abs(x - y) for x, y in zip(a, water, strict=True)) > 90


def test_given_colours_win():
    assert ClassTable(("water",), ("#ff0000",)).hex_colour(0) == "#ff0000"
