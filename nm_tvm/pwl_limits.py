"""Error limits of PWL tables, derived from the function alone -- its curvature on the fitted
range and the segment count -- never from a fitted table. Tests hold every table to these
limits, and per-operator tolerances are built from them (``nm_tvm.approx``), so a worse
fitter or a wrong table evaluation cannot widen its own tolerance.

Why these numbers (docs/PWL_LIMITS.md has the derivation): on a segment of width ``h`` where
``|f''| = M``, the chord's error is ``M h^2 / 8`` at most; shifted to zero mean error (the
fitter's "vertical" correction, uniform weights) the max error is ``M h^2 / 12`` and the mean
absolute error ``0.0321 M h^2``. Breakpoints equidistributed in ``sqrt|f''|`` make ``M h^2``
equal on every segment, ``(I / n)^2`` with ``I = integral of sqrt|f''| over [lo, hi]``. With
calibration weights the shift centres the samples, not the segment: up to the chord's
``M h^2 / 8``. ``FINITE_N`` allows for ``f''`` varying inside a segment at small ``n``; the
fp32 term is the rounding of ``fp32(fp32(s * x) + c)`` with ``s`` and ``c`` stored in fp32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ZERO_MEAN_MAX = 1.0 / 12.0  # max |err| of a zero-mean line, in units of M h^2
CHORD_MAX = 1.0 / 8.0  # max |err| of the chord or of any shift inside its error range
ZERO_MEAN_MEAN = 0.0321  # mean |err| of a zero-mean line, in units of M h^2
# Allowance for f'' varying inside a segment, which the formulas above take as constant.
# Measured over exp, log, sqrt, 1/x, rsqrt(v + eps) (from v = 0 too), sigmoid, tanh, erf,
# GELU, SiLU, softplus, Mish, ELU and 1/(1 + |x|) on their default ranges, fitted/limit is
# at most 0.62 (max) and 0.43 (mean) of these allowances at 8-256 segments; below 8 segments
# one segment of rsqrt(v + 1e-5) on [0, 64] spans decades of curvature (1.84 of FINITE_N).
FINITE_N = 1.5  # max error, 8 segments or more
FINITE_N_MEAN = 2.0  # mean error
FEW_SEGMENTS, FEW_SEGMENTS_FACTOR = 8, 2.0  # fewer segments: both allowances doubled
FP32_EPS = 2.0 ** -23  # twice the unit roundoff: each of s, c, s*x and the sum rounds once
GRID_POINTS = 2049  # per cluster of the curvature grid; the pole check refines it 4x
NEAREST = 1e-13  # closest grid point to a cluster centre, relative to the range width
CONVERGED = 0.02  # refining the grid 4x changes a resolved curvature integral by less
KINK_RATIO = 0.5  # a slope jump that keeps over half its size on a 4x finer grid is a kink
KINK_FLOOR = 1e-7  # slope jumps below this (relative to the largest slope) are rounding
SEGMENTS_PER_KINK = 2  # segments a kink takes from the smooth parts (about one, plus margin)


class PoleError(ValueError):
    """The function's curvature is not integrable on the range: a pole or a domain edge."""


@dataclass(frozen=True)
class Limit:
    max_err: float  # promised max |table - f| on [lo, hi]
    mean_abs_err: float | None  # promised mean |table - f| (uniform weights only)
    curvature: float  # integral of sqrt|f''| over [lo, hi]


def _grid(lo: float, hi: float, centres, points: int) -> np.ndarray:
    """Uniform points plus geometric clusters toward each end and each centre."""
    width = hi - lo
    steps = width * np.geomspace(NEAREST, 1.0, points)
    parts = [np.linspace(lo, hi, points)]
    for c in (lo, hi, *centres):
        parts += [c + steps, c - steps]
    x = np.unique(np.concatenate(parts))
    return x[(x >= lo) & (x <= hi)]


def _curvature_terms(f, x: np.ndarray) -> np.ndarray:
    """``sqrt(|slope change| * spacing)`` at each interior grid point: ``sqrt|f''| dx`` there.
    Slope changes, not second differences, so the rounding noise of f on a very fine cluster
    adds ``sqrt(eps |f|)`` per point instead of ``eps |f| / dx^2``."""
    with np.errstate(all="ignore"):
        y = np.asarray(f(x), np.float64)
        slope = np.diff(y) / np.diff(x)
        return np.sqrt(np.abs(np.diff(slope)) * 0.5 * (x[2:] - x[:-2]))


def curvature_integral(f, lo: float, hi: float, name: str = "f") -> float:
    """``I = integral of sqrt|f''|`` on ``[lo, hi]``, checked by refining the grid 4x around
    the ends and the steepest point: a curvature that keeps growing means a pole (1/x across
    0) or a domain edge, and raises PoleError naming where."""
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"{name}: invalid range [{lo}, {hi}]")
    uniform = np.linspace(lo, hi, GRID_POINTS)
    with np.errstate(all="ignore"):
        y = np.asarray(f(uniform), np.float64)
    if not np.all(np.isfinite(y)):
        bad = uniform[~np.isfinite(y)]
        raise PoleError(f"{name} is not finite on [{lo:.6g}, {hi:.6g}] (at x = {bad[0]:.6g}): "
                        f"the range crosses a pole or a domain edge")
    steepest = float(uniform[1 + int(np.argmax(_curvature_terms(f, uniform)))])
    integrals = []
    for points in (GRID_POINTS, 4 * GRID_POINTS):
        terms = _curvature_terms(f, _grid(lo, hi, (steepest,), points))
        if not np.all(np.isfinite(terms)):
            raise PoleError(f"{name} is not finite near x = {steepest:.6g} on "
                            f"[{lo:.6g}, {hi:.6g}]: a pole or a domain edge")
        integrals.append(float(np.sum(terms)))
    coarse_i, fine_i = integrals
    # float64 rounding of f adds up to sqrt(2 eps |f|) per grid point (a linear f has I = 0)
    noise = terms.size * math.sqrt(2 * np.finfo(np.float64).eps * float(np.max(np.abs(y))))
    if abs(fine_i - coarse_i) > CONVERGED * fine_i + noise:
        raise PoleError(f"{name} has unbounded curvature near x = {steepest:.6g} on "
                        f"[{lo:.6g}, {hi:.6g}] (integral of sqrt|f''| {coarse_i:.3g} -> "
                        f"{fine_i:.3g} on a 4x finer grid): a pole or a domain edge; no PWL "
                        f"table can bound it -- split the range or keep inputs away from it")
    return fine_i


def kinks(f, lo: float, hi: float) -> int:
    """Points where f's slope jumps (ELU with alpha != 1 at 0, 1/(1 + |x|) at 0). A kink is
    outside the curvature formula: the fitter spends about one segment on it (a breakpoint
    placed on it, nm_tvm.pwl.fit). Found as slope changes that do not shrink when the grid is
    refined 4x (a smooth f's shrink 4x); an under-resolved steep end may also count, which
    only makes the limit more cautious."""
    return len(kink_points(f, lo, hi))


def kink_points(f, lo: float, hi: float) -> list[float]:
    """Where the kinks counted by :func:`kinks` are: the crossing of the fine-grid lines on
    either side of the largest slope jump of each (exact for a kink between two straight
    pieces, within ``h^2 f'' / jump`` otherwise, h the fine spacing)."""
    fine = np.linspace(lo, hi, 4 * GRID_POINTS - 3)  # the coarse grid's points are every 4th
    with np.errstate(all="ignore"):
        y = np.asarray(f(fine), np.float64)
    slope_fine = np.diff(y) / np.diff(fine)
    slope_coarse = np.diff(y[::4]) / np.diff(fine[::4])
    jump_fine = np.abs(np.diff(slope_fine))
    jump_coarse = np.abs(np.diff(slope_coarse))
    floor = KINK_FLOOR * (1.0 + float(np.max(np.abs(slope_fine))))
    points, last = [], -10
    for j in np.flatnonzero(jump_coarse > floor):  # coarse interior point j+1 = fine 4(j+1)
        start = max(0, 4 * j)
        window = jump_fine[start:4 * j + 7]
        around = jump_coarse[max(0, j - 1):j + 2].max()  # not fooled by an inflection at j
        if not (window.size and window.max() > KINK_RATIO * around):
            continue
        k = start + int(np.argmax(window))  # the slope jumps at fine point k + 1
        if j > last + 2:  # a kink between two coarse points shows at both
            points.append(_locate_kink(f, fine, y, slope_fine, k))
        last = j
    return points


def _locate_kink(f, x, y, slope, k: int) -> float:
    """The crossing of the grid lines either side of point k + 1, refined on grids 64x finer
    around it until the spacing is below 1e-12 of the range."""
    width = x[-1] - x[0]
    at = _line_crossing(x, y, slope, k)
    h = x[1] - x[0]
    while h > 1e-12 * width:
        h /= 64
        local = at + h * np.arange(-8, 9)
        with np.errstate(all="ignore"):
            ly = np.asarray(f(local), np.float64)
        lslope = np.diff(ly) / np.diff(local)
        at = _line_crossing(local, ly, lslope, int(np.argmax(np.abs(np.diff(lslope)))))
    return at


def _line_crossing(x, y, slope, k: int) -> float:
    """x where the grid line ending at point k (slope[k - 1]) meets the one starting at point
    k + 2 (slope[k + 2]); point k + 1 if they are parallel or the lines are off the grid."""
    left, right = max(k - 1, 0), min(k + 2, len(slope) - 1)
    s_left, s_right = slope[left], slope[right]
    if s_left == s_right or not np.isfinite(s_left - s_right):
        return float(x[k + 1])
    at = (y[right] - y[left] + s_left * x[left] - s_right * x[right]) / (s_left - s_right)
    return float(np.clip(at, x[left], x[right + 1]))


def _fp32_term(f, lo: float, hi: float) -> float:
    """Rounding of the table evaluation: eps * (2 |s x| + |c| + |y|), with the tangent's
    slope and intercept standing in for the segment's."""
    x = np.linspace(lo, hi, GRID_POINTS)
    with np.errstate(all="ignore"):
        y = np.asarray(f(x), np.float64)
        s = np.gradient(y, x)
    c = y - s * x
    return FP32_EPS * float(np.max(2 * np.abs(s * x) + np.abs(c) + np.abs(y)))


def limit(f, lo: float, hi: float, segments: int, calibrated: bool = False,
          name: str = "f") -> Limit:
    """The limit a table of ``f`` with ``segments`` segments on ``[lo, hi]`` must meet.

    ``calibrated``: the fit was weighted by calibration samples (the mean-error limit then
    does not apply: the mean is taken over the samples)."""
    if segments < 1:
        raise ValueError(f"{name}: need at least 1 segment (got {segments})")
    curvature = curvature_integral(f, lo, hi, name)
    smooth = max(1, segments - SEGMENTS_PER_KINK * kinks(f, lo, hi))
    h2 = (curvature / smooth) ** 2
    few = FEW_SEGMENTS_FACTOR if segments < FEW_SEGMENTS else 1.0
    fp32 = _fp32_term(f, lo, hi)
    max_err = few * FINITE_N * (CHORD_MAX if calibrated else ZERO_MEAN_MAX) * h2 + fp32
    mean = None if calibrated else few * FINITE_N_MEAN * ZERO_MEAN_MEAN * h2 + fp32
    return Limit(max_err, mean, curvature)
