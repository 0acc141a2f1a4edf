"""Error-adjusted area and accuracy estimates with confidence intervals (good practice).

The estimators are those of Olofsson et al. (2013, Remote Sensing of Environment 129, 122-131)
and Olofsson et al. (2014, Remote Sensing of Environment 148, 42-57, "Good practices for
estimating area and assessing accuracy of land change"), section 5 / eqs. 1-12:

* strata are the map classes, with mapped area proportions ``W_i`` (pixel counts of the map);
* estimated area proportions ``p_ij = W_i n_ij / n_i.`` from the sample counts ``n_ij``
  (rows ``i`` map class, columns ``j`` reference class);
* the area of reference class ``j`` is ``A p_.j`` with
  ``SE(p_.j) = sqrt(sum_i W_i^2 (n_ij/n_i.)(1 - n_ij/n_i.) / (n_i. - 1))``;
* OA, UA and PA from ``p_ij`` (eqs. 1-3), their variances eqs. 5-7 (the PA variance of
  Olofsson et al. 2013, eq. 7, after Card 1982); 95 % intervals are ``±1.96 SE``.

A simple random (or systematic) sample can use the same stratified estimator (then it is
*post*-stratified); ``design="simple"`` instead gives the ordinary sample-proportion
estimators, which ignore the map's class areas. Matrices here are oriented as in the paper:
rows are map classes, columns reference classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from geomm.errors import GeommError

__all__ = ["AreaEstimates", "Estimate", "EstimationError", "estimate_areas"]

Z95 = 1.96
"""Two-sided 95 % normal quantile, rounded as in Olofsson et al. (so published intervals are
reproduced to the hectare)."""

Design = Literal["stratified", "simple"]


class EstimationError(GeommError, ValueError):
    """The sample cannot support the requested estimates (e.g. a map class without samples)."""


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error (NaN where the sample cannot give one)."""

    value: float
    """The estimate."""
    se: float
    """Its standard error."""

    @property
    def ci95(self) -> float:
        """Half-width of the 95 % confidence interval (``1.96 * se``)."""
        return Z95 * self.se

    def scaled(self, factor: float) -> Estimate:
        """The same estimate in other units."""
        return Estimate(self.value * factor, self.se * factor)

    def to_dict(self) -> dict[str, float | None]:
        """``{"value", "se", "ci95", "low", "high"}``; NaN becomes ``None``."""
        return {"value": _num(self.value), "se": _num(self.se), "ci95": _num(self.ci95),
                "low": _num(self.value - self.ci95), "high": _num(self.value + self.ci95)}


@dataclass(frozen=True)
class AreaEstimates:
    """Error-adjusted areas and accuracies of one map from one reference sample."""

    names: tuple[str, ...]
    """Class names: map classes (strata) first, then reference-only classes."""
    design: Design
    """Estimator used: ``"stratified"`` (Olofsson et al.) or ``"simple"``."""
    proportions: np.ndarray
    """Estimated area proportions ``p_ij`` (rows map, columns reference), summing to 1."""
    mapped_px: np.ndarray
    """Map pixels per class (zero for reference-only classes)."""
    area_px: tuple[Estimate, ...]
    """Estimated area of each reference class, in pixels."""
    pixel_area_m2: float | None
    """Area of one pixel in square metres (None: the map has no metric CRS)."""
    overall: Estimate
    """Overall accuracy."""
    users: tuple[Estimate, ...]
    """User's accuracy per map class (NaN for a class never mapped)."""
    producers: tuple[Estimate, ...]
    """Producer's accuracy per reference class (NaN for a class never in the reference)."""

    @property
    def area_m2(self) -> tuple[Estimate, ...] | None:
        """Estimated areas in square metres (None without a metric pixel size)."""
        a = self.pixel_area_m2
        return None if a is None else tuple(e.scaled(a) for e in self.area_px)

    @property
    def area_ha(self) -> tuple[Estimate, ...] | None:
        """Estimated areas in hectares (None without a metric pixel size)."""
        a = self.pixel_area_m2
        return None if a is None else tuple(e.scaled(a / 1e4) for e in self.area_px)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able estimates: per class mapped and estimated areas, UA, PA; OA."""
        m2, ha = self.area_m2, self.area_ha
        a = self.pixel_area_m2
        per_class: dict[str, Any] = {}
        for i, n in enumerate(self.names):
            mapped = int(self.mapped_px[i])
            per_class[n] = {
                "mapped_px": mapped,
                "mapped_m2": None if a is None else mapped * a,
                "mapped_ha": None if a is None else mapped * a / 1e4,
                "area_px": self.area_px[i].to_dict(),
                "area_m2": None if m2 is None else m2[i].to_dict(),
                "area_ha": None if ha is None else ha[i].to_dict(),
                "users_accuracy": self.users[i].to_dict(),
                "producers_accuracy": self.producers[i].to_dict(),
            }
        return {"design": self.design, "pixel_area_m2": a, "z": Z95,
                "overall_accuracy": self.overall.to_dict(),
                "proportions": {"rows": "map", "columns": "reference",
                                "values": [[float(v) for v in r] for r in self.proportions]},
                "per_class": per_class}


def estimate_areas(counts: np.ndarray, mapped_px: Sequence[int] | np.ndarray,
                   names: Sequence[str], *, design: Design = "stratified",
                   pixel_area_m2: float | None = None) -> AreaEstimates:
    """Estimate class areas, OA, UA and PA with standard errors from a sample error matrix.

    Args:
        counts: Sample counts ``n_ij``, square, rows map class ``i``, columns reference class
            ``j``, in the order of ``names``.
        mapped_px: Map pixels of each class (the strata sizes); zero for classes the map
            does not have.
        names: Class names.
        design: ``"stratified"``: Olofsson et al.'s stratified estimator (right for stratified
            random and, post-stratified, for simple random samples); ``"simple"``: sample
            proportions, valid for a simple random sample only.
        pixel_area_m2: Area of one pixel, for areas in m² and ha.

    Returns:
        The estimates; a standard error is NaN where a map class has a single sample.

    Raises:
        EstimationError: the matrix is not square, or a map class with mapped pixels has no
            sample (its share of each reference class cannot be estimated).
    """
    n = np.asarray(counts, dtype=np.float64)
    big_n = np.asarray(mapped_px, dtype=np.float64)
    k = len(names)
    if n.shape != (k, k) or big_n.shape != (k,):
        raise EstimationError(f"error matrix {n.shape} and mapped areas {big_n.shape} do not "
                              f"fit {k} classes; give a square matrix and one area per class")
    if big_n.sum() <= 0:
        raise EstimationError("the map has no valid pixels; nothing to estimate areas of")
    n_i = n.sum(axis=1)
    if design == "stratified":
        empty = [names[i] for i in range(k) if big_n[i] > 0 and n_i[i] == 0]
        if empty:
            raise EstimationError(
                f"map classes {', '.join(map(repr, empty))} have mapped pixels but no reference "
                "sample, so their share of each class cannot be estimated; sample every map "
                "class (see `geomm sample-design`)")
        est = _stratified(n, big_n)
    else:
        est = _simple(n, big_n.sum())
    p, area, oa, ua, pa = est
    return AreaEstimates(tuple(names), design, p, big_n.astype(np.int64), area, pixel_area_m2,
                         oa, ua, pa)


_Result = tuple[np.ndarray, tuple[Estimate, ...], Estimate, tuple[Estimate, ...],
                tuple[Estimate, ...]]


def _stratified(n: np.ndarray, big_n: np.ndarray) -> _Result:
    """Olofsson et al. (2013, 2014): strata are the map classes, weights their mapped areas."""
    k = len(big_n)
    total = big_n.sum()
    w = big_n / total
    n_i = n.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(n_i[:, None] > 0, n / n_i[:, None], 0.0)  # n_ij / n_i.
        dof = np.where(n_i > 1, n_i - 1, np.nan)                    # n_i. - 1
        p = w[:, None] * share
        p_row, p_col = p.sum(axis=1), p.sum(axis=0)
        # area proportion of each reference class: eq. 10 of Olofsson et al. (2013)
        terms = (w[:, None] ** 2) * share * (1 - share) / dof[:, None]
        terms[w == 0] = 0.0  # an unmapped class is no stratum and adds no variance
        se_col = np.sqrt(terms.sum(axis=0))
        ua = np.where(p_row > 0, np.diag(p) / p_row, np.nan)
        pa = np.where(p_col > 0, np.diag(p) / p_col, np.nan)
        var_ua = ua * (1 - ua) / dof                                  # eq. 6
        oa = float(np.trace(p))
        var_oa = np.nansum(np.where(w > 0, w**2 * var_ua, 0.0))     # eq. 5
        if np.any((w > 0) & ~np.isfinite(var_ua)):
            var_oa = math.nan
        n_hat_col = (big_n[:, None] * share).sum(axis=0)              # estimated N_.j
        var_pa = np.full(k, np.nan)
        for j in range(k):                                            # eq. 7
            if not n_hat_col[j] > 0:
                continue
            own = big_n[j] ** 2 * (1 - pa[j]) ** 2 * var_ua[j] if big_n[j] > 0 else 0.0
            others = sum(big_n[i] ** 2 * share[i, j] * (1 - share[i, j]) / dof[i]
                         for i in range(k) if i != j and big_n[i] > 0)
            var_pa[j] = (own + pa[j] ** 2 * others) / n_hat_col[j] ** 2
    area = tuple(Estimate(float(total * p_col[j]), float(total * se_col[j])) for j in range(k))
    return (p, area, Estimate(oa, math.sqrt(var_oa)),
            tuple(Estimate(float(u), float(math.sqrt(v))) for u, v in zip(ua, var_ua, strict=True)),
            tuple(Estimate(float(a), float(math.sqrt(v))) for a, v in zip(pa, var_pa, strict=True)))


def _simple(n: np.ndarray, total: float) -> _Result:
    """Sample proportions of a simple random sample (binomial standard errors)."""
    size = n.sum()
    if size < 2:
        raise EstimationError(f"{int(size)} reference sample(s); estimates need at least 2")
    p = n / size
    n_i, n_j = n.sum(axis=1), n.sum(axis=0)
    p_col = p.sum(axis=0)
    se_col = np.sqrt(p_col * (1 - p_col) / (size - 1))
    oa = float(np.trace(p))
    with np.errstate(divide="ignore", invalid="ignore"):
        ua = np.where(n_i > 0, np.diag(n) / n_i, np.nan)
        pa = np.where(n_j > 0, np.diag(n) / n_j, np.nan)
        se_ua = np.sqrt(ua * (1 - ua) / np.where(n_i > 1, n_i - 1, np.nan))
        se_pa = np.sqrt(pa * (1 - pa) / np.where(n_j > 1, n_j - 1, np.nan))
    area = tuple(Estimate(float(total * p_col[j]), float(total * se_col[j]))
                 for j in range(len(p_col)))
    return (p, area, Estimate(oa, math.sqrt(oa * (1 - oa) / (size - 1))),
            tuple(Estimate(float(u), float(s)) for u, s in zip(ua, se_ua, strict=True)),
            tuple(Estimate(float(a), float(s)) for a, s in zip(pa, se_pa, strict=True)))


def _num(v: float) -> float | None:
    return None if v != v else float(v)
