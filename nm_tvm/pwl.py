"""Piecewise-linear (PWL) tables: fitting, exact PL functions, evaluation with the
accelerator's numerics.

A table is what the accelerator's PWL unit holds (docs/ISA.md, PWL / LOAD_PWL): segment ``s``
covers ``[breakpoint_s, breakpoint_{s+1})`` (segment 0 from -inf) and maps ``x`` to
``fp32(fp32(slope_s * x) + intercept_s)``. Fitted tables have, inside the fitted range
``[lo, hi]``, segments placed non-uniformly ("horizontal": denser where ``|f''|`` is large and
where calibration samples fall, then iteratively equalising the segments' errors; a breakpoint
on every kink of f) and
intercepts shifted so the error over the sample distribution has zero mean in every segment
("vertical"). Outside ``[lo, hi]`` three segments on each side continue the end segment, then
follow the function's trend and asymptote (see ``_outer_lines``), so out-of-range inputs get
defined values, never garbage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nm_tvm.pwl_limits import kink_points

GRID = 4097  # evaluation points per fitted range for the initial placement and error checks
SEGMENT_POINTS = 33  # evaluation points per segment while fitting
MIN_ULPS = 64  # narrowest segment, in fp32 ulps of its edges
HIST_BINS = 256  # calibration sample histogram
END_CLUSTER = 1e-7  # closest grid point to a range end, relative to the width
OUTER_SEGMENTS = 6  # table entries beyond the fitted range (see _outer_lines)
KINK_MARGIN = 0.01  # kinks this close to a range end (a share of its width) are not pinned:
#                     an under-resolved steep end can look like one (nm_tvm.pwl_limits.kinks)


@dataclass
class PWLTable:
    breakpoints: np.ndarray  # (n,), breakpoints[0] is -inf
    slopes: np.ndarray
    intercepts: np.ndarray
    name: str = ""
    lo: float = -np.inf
    hi: float = np.inf
    max_err: float = 0.0
    mean_abs_err: float = 0.0
    exact: bool = False
    notes: dict = field(default_factory=dict)

    @property
    def segments(self) -> int:
        return len(self.slopes)

    def to_array(self) -> np.ndarray:
        """(n, 3) fp32 rows (breakpoint, slope, intercept): the LOAD_PWL layout."""
        return np.stack([self.breakpoints, self.slopes, self.intercepts], 1).astype(np.float32)

    @classmethod
    def from_array(cls, arr: np.ndarray, name: str = "") -> "PWLTable":
        arr = np.asarray(arr, np.float32)
        return cls(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), name)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Evaluate as the accelerator does: fp32 multiply, then fp32 add."""
        x = np.asarray(x, np.float32)
        idx = np.searchsorted(self.breakpoints[1:].astype(np.float32), x, side="right")
        s = self.slopes.astype(np.float32)[idx]
        c = self.intercepts.astype(np.float32)[idx]
        with np.errstate(invalid="ignore", over="ignore"):
            product = np.where(s == 0, np.float32(0), s * x).astype(np.float32)
            return np.where(np.isnan(x), x, product + c)


# ------------------------------------------------------------------ exact piecewise-linear
@dataclass
class PL:
    """An exactly piecewise-linear scalar function (for relu, clip, leaky relu, ... chains)."""

    knots: list  # sorted breakpoints; len(lines) == len(knots) + 1
    lines: list  # (slope, intercept) per interval

    @classmethod
    def identity(cls) -> "PL":
        return cls([], [(1.0, 0.0)])

    @classmethod
    def constant(cls, c: float) -> "PL":
        return cls([], [(0.0, float(c))])

    def _refine(self, knots) -> "PL":
        """Same function on a finer knot set."""
        knots = sorted(set(self.knots) | set(knots))
        lines = [self._line_at(_mid(knots, i)) for i in range(len(knots) + 1)]
        return PL(knots, lines)

    def _line_at(self, x: float):
        i = int(np.searchsorted(np.asarray(self.knots), x, side="right")) if self.knots else 0
        return self.lines[i]

    def combine(self, other: "PL", fn) -> "PL":
        """Pointwise ``fn(line_a, line_b)`` where both are linear (add, scalar products)."""
        a, b = self._refine(other.knots), other._refine(self.knots)
        return PL(a.knots, [fn(la, lb) for la, lb in zip(a.lines, b.lines)]).simplify()

    def maximum(self, other: "PL") -> "PL":
        """max of two PL functions: split intervals where the lines cross."""
        a, b = self._refine(other.knots), other._refine(self.knots)
        knots = list(a.knots)
        for i, ((s1, c1), (s2, c2)) in enumerate(zip(a.lines, b.lines)):
            if s1 != s2:
                x = (c2 - c1) / (s1 - s2)
                left = a.knots[i - 1] if i > 0 else -np.inf
                right = a.knots[i] if i < len(a.knots) else np.inf
                if left < x < right:
                    knots.append(x)
        a, b = a._refine(knots), b._refine(knots)
        lines = []
        for i, (la, lb) in enumerate(zip(a.lines, b.lines)):
            m = _mid(a.knots, i)
            lines.append(la if la[0] * m + la[1] >= lb[0] * m + lb[1] else lb)
        return PL(a.knots, lines).simplify()

    def scale(self, k: float) -> "PL":
        return PL(list(self.knots), [(k * s, k * c) for s, c in self.lines])

    def shift(self, k: float) -> "PL":
        return PL(list(self.knots), [(s, c + k) for s, c in self.lines])

    def compose(self, inner: "PL") -> "PL":
        """self(inner(x)): split inner's intervals where inner crosses self's knots."""
        knots = set(inner.knots)
        for i, (s, c) in enumerate(inner.lines):
            left = inner.knots[i - 1] if i > 0 else -np.inf
            right = inner.knots[i] if i < len(inner.knots) else np.inf
            if s != 0:
                for k in self.knots:
                    x = (k - c) / s
                    if left < x < right:
                        knots.add(x)
        inner = inner._refine(knots)
        lines = []
        for i, (s, c) in enumerate(inner.lines):
            so, co = self._line_at(s * _mid(inner.knots, i) + c)
            lines.append((so * s, so * c + co))
        return PL(inner.knots, lines).simplify()

    def compare(self, op: str, k: float) -> "PL | None":
        """1.0 where ``self(x) <op> k`` else 0.0 (op: less, greater, less_equal, greater_equal,
        equal, not_equal), exactly: for the identity a step at fp32 ``k`` (``<=`` and ``>``
        step at the next fp32 above ``k``; the PWL unit compares fp32 inputs), for a
        piecewise-constant function (a mask) each constant compared. None otherwise."""
        if all(line == (1.0, 0.0) for line in self.lines):
            at = float(np.float32(k))
            up = float(np.nextafter(np.float32(k), np.float32(np.inf)))
            knots, values = {"less": ([at], [1, 0]), "greater_equal": ([at], [0, 1]),
                             "less_equal": ([up], [1, 0]), "greater": ([up], [0, 1]),
                             "equal": ([at, up], [0, 1, 0]),
                             "not_equal": ([at, up], [1, 0, 1])}[op]
            return PL(knots, [(0.0, float(v)) for v in values])
        if all(s == 0.0 for s, _ in self.lines):
            fn = getattr(np, op)
            return PL(list(self.knots), [(0.0, float(fn(c, k))) for _, c in self.lines]).simplify()
        return None

    def select(self, if_true: float, if_false: float) -> "PL | None":
        """``if_true`` where a piecewise-constant function (a mask) is nonzero, else
        ``if_false`` (either may be infinite: the table's slope is 0). None otherwise."""
        if any(s != 0.0 for s, _ in self.lines):
            return None
        return PL(list(self.knots), [(0.0, float(if_true if c != 0 else if_false))
                                     for _, c in self.lines]).simplify()

    def is_piecewise_constant(self) -> bool:
        return all(s == 0.0 for s, _ in self.lines)

    def masked(self, other: "PL") -> "PL | None":
        """``self * other`` where self is piecewise constant (a 0/1 mask, or any step
        function): each interval's line of ``other`` scaled by self's constant. None
        otherwise (a product of two lines is not linear)."""
        if not self.is_piecewise_constant():
            return None
        return self.combine(other, lambda m, line: (m[1] * line[0], m[1] * line[1]))

    def simplify(self) -> "PL":
        knots, lines = [], [self.lines[0]]
        for k, line in zip(self.knots, self.lines[1:]):
            if np.allclose(line, lines[-1], rtol=0, atol=0):
                continue
            knots.append(k)
            lines.append(line)
        return PL(knots, lines)

    def table(self, name: str = "") -> PWLTable:
        bps = np.array([-np.inf] + list(self.knots), np.float32)
        return PWLTable(bps, np.array([s for s, _ in self.lines], np.float32),
                        np.array([c for _, c in self.lines], np.float32), name, exact=True)


def _mid(knots, i) -> float:
    """A point inside interval i of a knot list."""
    if not knots:
        return 0.0
    if i == 0:
        return knots[0] - 1.0
    if i == len(knots):
        return knots[-1] + 1.0
    return 0.5 * (knots[i - 1] + knots[i])


# ------------------------------------------------------------------------------ fitting
def _density(f, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Breakpoint density: |f''|^(1/2) (equalises interpolation error), times the sample
    density^(1/3) when calibration samples are given, with a floor so no region is empty."""
    y = f(x)
    d2 = np.abs(np.gradient(np.gradient(y, x), x))
    d2 = np.nan_to_num(d2, nan=0.0, posinf=0.0)
    rho = np.sqrt(d2 + 1e-12 * max(1.0, float(np.max(d2))))
    if weights is not None:
        w = weights / max(float(weights.max()), 1e-30)
        rho = rho * (w + 0.05) ** (1.0 / 3.0)
    return rho + 0.02 * float(rho.mean())


def _place(x: np.ndarray, rho: np.ndarray, n: int) -> np.ndarray:
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(x))])
    cdf /= cdf[-1]
    return np.interp(np.linspace(0, 1, n + 1), cdf, x)


def _pin(edges: np.ndarray, kinks: list) -> np.ndarray:
    """Each kink of f (a slope jump, nm_tvm.pwl_limits.kink_points) replaces the nearest
    interior edge not already pinned: a segment across a kink errs by about jump * width / 4,
    two segments meeting on it by no more than elsewhere."""
    edges = edges.copy()
    free = list(range(1, len(edges) - 1))
    for k in kinks:
        if not free:
            break
        i = min(free, key=lambda j: abs(edges[j] - k))
        edges[i] = k
        free.remove(i)
    return np.sort(edges)


def _separate(edges: np.ndarray) -> np.ndarray:
    """Strictly increasing edges, every segment at least MIN_ULPS fp32 ulps wide (the PWL unit
    compares fp32 inputs): blend toward uniform until no segment is narrower."""
    uniform = np.linspace(edges[0], edges[-1], len(edges))
    for blend in (0.0, 0.1, 0.3, 1.0):
        out = (1 - blend) * edges + blend * uniform
        if np.all(np.diff(out) > _min_width(out)):
            return out
    return uniform


def _min_width(edges: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(edges[1:]), np.abs(edges[:-1])).astype(np.float32)
    return MIN_ULPS * np.spacing(scale).astype(np.float64)


def _segment_points(edges: np.ndarray) -> np.ndarray:
    """(segments, SEGMENT_POINTS) evaluation points, the same share of every segment however
    narrow, so the error of each segment is seen."""
    return edges[:-1, None] + np.diff(edges)[:, None] * np.linspace(0.0, 1.0, SEGMENT_POINTS)


def _trapezoid(points: int) -> np.ndarray:
    w = np.ones(points)
    w[[0, -1]] = 0.5
    return w


def _fit_segments(f, edges: np.ndarray, weight):
    """Chord of f per segment, intercept shifted to zero weighted-mean error on the segment
    ("vertical" correction). Returns edges, slopes, intercepts and each segment's max |err|."""
    edges = _separate(edges)
    xs = _segment_points(edges)
    ys = f(xs.ravel()).reshape(xs.shape)
    slopes = (ys[:, -1] - ys[:, 0]) / np.diff(edges)
    intercepts = ys[:, 0] - slopes * edges[:-1]
    err = ys - (slopes[:, None] * xs + intercepts[:, None])
    w = weight(xs) * _trapezoid(SEGMENT_POINTS)
    total = w.sum(axis=1)
    shift = np.where(total > 0, (w * err).sum(axis=1) / np.where(total > 0, total, 1.0), 0.0)
    intercepts = intercepts + shift
    return edges, slopes, intercepts, np.max(np.abs(err - shift[:, None]), axis=1)


def _equidistribute(edges: np.ndarray, per_seg: np.ndarray, kinks=()) -> np.ndarray:
    """New edges that equalise the segments' errors: with err_s ~ c |f''| h_s^2 the density
    sqrt(err_s) / h_s ~ sqrt|f''|, and equal shares of its integral give equal errors.
    ``kinks`` (edges already) stay edges: the pieces between them get segments in proportion
    to their share of the integral (at least one each), equidistributed inside each."""
    h = np.diff(edges)
    rho = np.sqrt(per_seg) / h
    rho = np.maximum(rho, 1e-12 * rho.max()) if rho.max() > 0 else np.ones_like(rho)
    cdf = np.concatenate([[0.0], np.cumsum(rho * h)])
    if not len(kinks):
        return np.interp(np.linspace(0.0, cdf[-1], len(edges)), cdf, edges)
    cuts = np.concatenate([[edges[0]], np.sort(kinks), [edges[-1]]])
    at = np.interp(cuts, edges, cdf)
    counts = _apportion(np.diff(at), len(edges) - 1)
    pieces = [np.interp(np.linspace(a0, a1, c + 1), cdf, edges)[1:-1]
              for a0, a1, c in zip(at[:-1], at[1:], counts)]
    inner = [p for piece, cut in zip(pieces, cuts[1:]) for p in (*piece, cut)]
    return np.concatenate([[edges[0]], inner])


def _apportion(shares: np.ndarray, n: int) -> list[int]:
    """n segments over pieces in proportion to ``shares``, at least one each (largest
    remainders)."""
    total = float(shares.sum())
    ideal = n * shares / total if total > 0 else np.full(len(shares), n / len(shares))
    counts = np.maximum(1, np.floor(ideal)).astype(int)
    while counts.sum() > n:
        counts[int(np.argmax(np.where(counts > 1, counts - ideal, -np.inf)))] -= 1
    for i in np.argsort(counts - ideal)[:n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _weight_function(samples, lo: float, hi: float):
    """Density of the calibration samples on [lo, hi] (histogram, with a floor so every
    segment keeps some weight), or uniform."""
    if samples is None or not np.size(samples):
        return lambda x: np.ones_like(x)
    s = np.clip(np.asarray(samples, np.float64).ravel(), lo, hi)
    hist, _ = np.histogram(s, bins=HIST_BINS, range=(lo, hi))
    hist = hist.astype(np.float64) + 1e-9 * max(1.0, float(hist.max()))
    scale = HIST_BINS / (hi - lo)
    return lambda x: hist[np.clip(((x - lo) * scale).astype(np.int64), 0, HIST_BINS - 1)]


def fit(f, lo: float, hi: float, segments: int, samples: np.ndarray | None = None,
        uniform: bool = False, name: str = "", iterations: int = 30) -> PWLTable:
    """Fit ``f`` on ``[lo, hi]`` with ``segments`` segments there; the table has
    ``segments + OUTER_SEGMENTS`` entries (three asymptote segments on each side).

    ``samples`` (calibration inputs) weight placement and the vertical correction and define
    the mean error; without them the weighting is uniform over the range.
    """
    inner = segments
    if inner < 1:
        raise ValueError(f"{name or 'pwl'}: need at least 1 segment (got {segments})")
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"{name or 'pwl'}: invalid range [{lo}, {hi}]")
    x = _grid(f, lo, hi)
    y = f(x)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{name or 'pwl'}: function is not finite on [{lo}, {hi}]")
    weight = _weight_function(samples, lo, hi)
    if uniform:
        edges, slopes, intercepts, _ = _fit_segments(f, np.linspace(lo, hi, inner + 1), weight)
    else:
        weights = weight(x) if samples is not None and np.size(samples) else None
        kinks = [k for k in kink_points(f, lo, hi)
                 if lo + KINK_MARGIN * (hi - lo) < k < hi - KINK_MARGIN * (hi - lo)][:inner - 1]
        edges = _separate(_pin(_place(x, _density(f, x, weights), inner), kinks))
        best = None
        for _ in range(iterations):  # equalise per-segment max error
            edges, slopes, intercepts, per_seg = _fit_segments(f, edges, weight)
            if best is None or per_seg.max() < best[0]:
                best = (per_seg.max(), edges, slopes, intercepts)
            edges = _pin(0.5 * (edges + _equidistribute(edges, per_seg, kinks)), kinks)
        _, edges, slopes, intercepts = best
    left, right = _outer_lines(f, lo, hi, slopes, intercepts)
    left = left[::-1]  # farthest first, in table order
    # Left side: segment k covers [start_{k+1}, start_k) going outward; table rows need the
    # lower breakpoint of each segment.
    left_rows = [(-np.inf, left[0][1], left[0][2]), (left[0][0], left[1][1], left[1][2]),
                 (left[1][0], left[2][1], left[2][2])]
    rows = (left_rows + [(e, s_, c) for e, s_, c in zip(edges[:-1], slopes, intercepts)]
            + [(start, s_, c) for start, s_, c in right])
    table = PWLTable(np.array([r[0] for r in rows], np.float32),
                     np.array([r[1] for r in rows], np.float32),
                     np.array([r[2] for r in rows], np.float32), name, lo, hi)
    # Measure what the accelerator computes (fp32 table, fp32 inputs), not the float64 fit:
    # the max on the grid and on a dense sampling of every segment (where the extremum of a
    # smooth f lies); the mean weighted by the sample density.
    dense = np.concatenate([x, _segment_points(edges).ravel()]).astype(np.float32)
    inside = (dense.astype(np.float64) >= lo) & (dense.astype(np.float64) <= hi)  # not fp32 ends
    dense = np.unique(dense[inside])
    with np.errstate(all="ignore"):
        err = np.abs(table(dense).astype(np.float64) - f(dense.astype(np.float64)))
    table.max_err = float(np.max(err))
    density = weight(dense.astype(np.float64)) * np.gradient(dense.astype(np.float64))
    table.mean_abs_err = float(np.average(err, weights=density))
    return table


def _grid(f, lo: float, hi: float) -> np.ndarray:
    """Evaluation points: uniform, geometric clusters toward both ends (a steep end such as
    rsqrt(v + eps) at v = 0 is narrower than any uniform spacing), plus as many points again
    placed by the curvature density, so steep regions are resolved."""
    steps = (hi - lo) * np.geomspace(END_CLUSTER, 1.0, GRID // 4)
    # clipped: lo + (hi - lo) can round past hi, where f may be undefined
    x = np.unique(np.clip(np.concatenate([np.linspace(lo, hi, GRID), lo + steps, hi - steps]),
                          lo, hi))
    with np.errstate(all="ignore"):
        extra = _place(x, _density(f, x, None), GRID - 1)
    return np.unique(np.concatenate([x, extra]))


def _outer_lines(f, lo, hi, slopes, intercepts):
    """Three segments per side beyond the range, for inputs calibration did not see:
    up to half a range width past the end the tangent at the end (first-order accurate for
    small excursions, continuous); from there to a far point ``4 * width`` away the secant (tracks the trend);
    beyond it the asymptote (the secant between two far points, or a constant where the slope
    dies out: sigmoid -> 1, exp -> 0, rsqrt -> its far value; GELU -> x). Where the far secants
    are not tame (exp to the right) the end segment simply continues.
    Returns per side [(start, slope, intercept) x 3], nearest first."""
    width = hi - lo
    sides = []
    for end, sign, end_line in ((lo, -1, (slopes[0], intercepts[0])),
                                (hi, 1, (slopes[-1], intercepts[-1]))):
        near, far1, far2 = end + sign * 0.5 * width, end + sign * 4 * width, end + sign * 8 * width
        h = 1e-4 * width
        with np.errstate(all="ignore"):
            y_end, y_in, y_near, y1, y2 = f(np.array([end, end - sign * h, near, far1, far2],
                                                       np.float64))
        tangent = ((y_end - y_in) / (sign * h), None)
        tangent = (tangent[0], y_end - tangent[0] * end)
        tame = lambda s: np.isfinite(s) and abs(s) <= 2 * abs(end_line[0]) + 1
        s_mid = (y1 - y_near) / (far1 - near)
        s_far = (y2 - y1) / (far2 - far1)
        if tame(s_mid) and tame(s_far):
            beyond = ((0.0, y2) if abs(s_far) < 0.5 * abs(s_mid)
                      else (s_far, y1 - s_far * far1))
            near_line = tangent if np.all(np.isfinite(tangent)) else end_line
            sides.append([(end, *near_line), (near, s_mid, y_near - s_mid * near),
                          (far1, *beyond)])
        else:
            sides.append([(end, *end_line)] * 3)
    return sides
