"""The PWL tables of one Linearize run: the knobs (LinearizeConfig), the registry that fits,
checks and records each table, and the ``nm.pwl_map`` call that applies one.

Kept apart from the pass (passes/linearize.py says *where* tables go; this module says *how* a
table is made): the fit, its independent limit (nm_tvm/pwl_limits.py), the pole check, the
target's table budget, and the compile record's table entries.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from nm_tvm.extern_funcs import EXACT_FUNC, PWL_FUNC
from nm_tvm.pwl import OUTER_SEGMENTS, PL, PWLTable, fit
from nm_tvm.pwl_limits import PoleError, limit


@tvm_ffi.register_error
class LinearizeError(ValueError):
    """A function cannot be tabulated on the inputs' range (e.g. 1/x across 0)."""


DEFAULT_RANGE = (-8.0, 8.0)
POSITIVE_RANGE = (2.0 ** -10, 64.0)  # for functions undefined at or below 0 (log, rsqrt, 1/x)
NORM_VARIANCE_RANGE = (2.0 ** -6, 64.0)  # layer/RMS norm variance, unless calibrated
PLOT_POINTS = 129  # samples of each fitted function kept for reports and plots


@dataclass
class LinearizeConfig:
    """Knobs: segments on the fitted range (global and per function key), ranges, functions
    left alone. Each fitted table adds OUTER_SEGMENTS asymptote entries.

    A function key is the '+'-joined nonlinear ops of a fused subgraph ('erf' for GELU's erf
    form, 'exp+log' for Softplus, 'exp' for softmax's exponent, 'reciprocal', 'rsqrt', ...).
    """

    segments: int = 64
    # rsqrt and 1/x are steep near 0 (small variances, short sums): more segments by default
    segments_per_op: dict = field(default_factory=lambda: {"rsqrt": 128, "reciprocal": 128})
    # (lo, hi) by table instance ('gelu#3', from calibration) or by key ('gelu'); overrides
    # the defaults. Optional calibration samples by instance weight the fit.
    ranges: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    disabled: set = field(default_factory=set)  # keys left unlinearized (host or error)
    # PWL memory entries one table may use on the target (nm_tvm.target.codegen.table_entries);
    # a fitted table spends OUTER_SEGMENTS of them beyond its range
    max_table_entries: int | None = None

    def segments_for(self, key: str) -> int:
        n = int(self.segments_per_op.get(key, self.segments))
        if self.max_table_entries:
            n = min(n, self.max_table_entries - OUTER_SEGMENTS)
        return n


def pwl_call(x: relax.Expr, table: PWLTable) -> relax.Expr:
    return relax.call_dps_packed(PWL_FUNC, relax.Tuple([x, relax.const(table.to_array())]),
                                 relax.TensorType(x.ty.shape, "float32"))


class TableRegistry:
    """Fits and records the module's tables; each gets an instance id ``key#n`` in creation
    order, stable for the same model, so calibrated ranges find their table again."""

    def __init__(self, config: LinearizeConfig, probe: bool = False):
        self.config = config
        self.probe = probe  # calibration run: fitted functions evaluated exactly on the host
        self.records: list[dict] = []
        self.probes: list = []  # (instance id, root expr): the tensors calibration observes
        self.functions: dict = {}  # instance id -> f, for the exact host evaluation

    def call(self, x: relax.Expr, table: PWLTable) -> relax.Expr:
        """The PWL map of ``x`` -- or, when probing for calibration, the exact function, so
        observed ranges do not depend on other tables' (uncalibrated) errors."""
        inst = table.notes.get("id")
        if self.probe and inst in self.functions:
            return relax.call_dps_packed(EXACT_FUNC, relax.Tuple([x, tvm.ir.StringImm(inst)]),
                                         relax.TensorType(x.ty.shape, "float32"))
        return pwl_call(x, table)

    def _instance(self, key: str) -> str:
        return f"{key}#{len(self.records)}"

    def fitted(self, key: str, f, default_range, root=None, floor: float | None = None,
               bounded: bool = False) -> PWLTable:
        """``floor``: inputs below it do not matter (softmax's exp below -16 is < 1e-7 of the
        largest term), so a calibrated range is cut there and the asymptote takes over.
        ``bounded``: the input lies in ``default_range`` by construction (a softmax's sum of
        exps in [1, L]; its shifted scores in [-16, 0] where they matter), so calibration only
        weights the fit: a range narrowed to the samples would fail inputs the samples missed
        (masked rows sum to less, masked scores are -inf)."""
        inst = self._instance(key)
        cfg = self.config
        lo, hi = cfg.ranges.get(inst, cfg.ranges.get(key, default_range))
        if bounded and (inst in cfg.ranges or key not in cfg.ranges):
            lo, hi = default_range
        if floor is not None:
            lo = max(lo, floor)
        samples = cfg.samples.get(inst)
        try:  # the limit first: it rejects ranges across a pole or a domain edge
            promised = limit(f, float(lo), float(hi), cfg.segments_for(key),
                             calibrated=samples is not None and np.size(samples) > 0, name=key)
            table = fit(f, float(lo), float(hi), cfg.segments_for(key), samples=samples,
                        name=key)
        except (PoleError, ValueError) as err:
            raise LinearizeError(f"cannot linearize {inst}: {err}") from None
        table.notes["limit"] = promised.max_err
        if floor is not None:  # inputs below it do not matter (out_of_range skips them)
            table.notes["floor"] = float(floor)
        table.notes["mean_limit"] = promised.mean_abs_err
        if table.max_err > promised.max_err:
            warnings.warn(f"PWL table {inst} on [{lo:.6g}, {hi:.6g}]: fitted max error "
                          f"{table.max_err:.3g} exceeds its limit {promised.max_err:.3g} "
                          f"(nm_tvm.pwl_limits)", stacklevel=2)
        grid = np.linspace(table.lo, table.hi, PLOT_POINTS)
        table.notes["grid"] = [grid.tolist(), np.asarray(f(grid), np.float64).tolist()]
        table.notes["id"] = inst
        self.functions[inst] = f
        self._record(inst, key, table, root)
        return table

    def exact(self, key: str, pl: PL, root=None) -> PWLTable:
        table = pl.table(key)
        table.notes["id"] = self._instance(key)
        entries = self.config.max_table_entries
        if entries and table.segments > entries:
            raise ValueError(f"exact table for {key} needs {table.segments} segments; the "
                             f"target's PWL memory holds {entries} per table")
        self._record(self._instance(key), key, table, root)
        return table

    def _record(self, inst, key, table, root):
        self.records.append({"id": inst, "key": key, "segments": int(table.segments),
                             "exact": table.exact, "lo": float(table.lo), "hi": float(table.hi),
                             "max_err": float(table.max_err),
                             "mean_abs_err": float(table.mean_abs_err),
                             "table": table.to_array().tolist(), **table.notes})
        if root is not None and not table.exact:
            self.probes.append((inst, root))
