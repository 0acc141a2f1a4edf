"""A label file's class values as class names: spaces around a name and its case do not
make another class (``geomm evaluate`` matches names ignoring case too)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np


def code_name(value: Any) -> str:
    """A class value as text: ``3.0`` is ``"3"``, numpy scalars as Python's."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def class_names(raw: Sequence[Any], classes: Sequence[str] | None
                ) -> tuple[np.ndarray, list[str] | None, list[str]]:
    """Each feature's class name (``None``: no class), the classes, and notes for people.

    A value is stripped of surrounding spaces and matched to a class ignoring case: to a
    name of ``classes`` when given, else to the most frequent spelling among the values
    (``Water``, ``water`` and ``water `` are one class). Values that match no class are kept
    as they are, so that the caller counts them as unknown. ``classes`` is returned as given,
    or as the sorted spellings found (``None`` when given).
    """
    import pandas as pd

    text = [None if pd.isna(v) else code_name(v) for v in raw]
    names = [None if t is None else (t.strip() or None) for t in text]
    if classes is not None:
        folded = [c.strip().casefold() for c in classes]
        loose = len(set(folded)) == len(folded)  # else names differ only in case: exactly
        pick = dict(zip(folded, classes, strict=True)) if loose else {c: c for c in classes}
        key = str.casefold if loose else str
        found: list[str] | None = None
    else:
        counts = Counter(n for n in names if n is not None)
        pick = {}
        for n, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            pick.setdefault(n.casefold(), n)  # the most frequent spelling names the class
        key = str.casefold
        found = sorted(pick.values())
    out = np.array([None if n is None else pick.get(key(n), n) for n in names], dtype=object)
    merged: dict[str, set[str]] = {}
    for t, o in zip(text, out, strict=True):
        if t is not None and o is not None and o in pick.values():
            merged.setdefault(o, set()).add(t)
    notes = [f"class values {', '.join(repr(v) for v in sorted(vs))} read as {name!r} "
             "(names that differ only in case or surrounding spaces are one class)"
             for name, vs in sorted(merged.items()) if vs != {name}]
    return out, found, notes
