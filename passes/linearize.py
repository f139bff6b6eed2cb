"""NeuralMatrix linearization: every nonlinear operator -> PWL maps, GEMMs and vector ops.

Two rewrites, in order:

1. **Decompose** operators that need reductions into GEMM-friendly pieces with known input
   ranges: softmax = max-subtract, PWL exp on [-16, 0], row sum (a GEMM with a ones column),
   PWL reciprocal on [1, L], scale; log-softmax likewise with PWL log; layer norm = mean
   (GEMM), centre, square, mean, PWL ``rsqrt(v + eps)``, scale and shift (RMS norm arrives
   decomposed by passes/decompose_rms_norm.py; group and instance norm are layer norms of a
   grouped view); division by a
   tensor = multiply by its PWL reciprocal; integer powers = repeated multiplies; PRelu =
   relu(x) + alpha * (x - relu(x)); min = -max(-x); reductions over other axes = transpose,
   then reduce.
2. **Fuse scalar functions**: every maximal chain of elementwise ops with one tensor operand
   (and scalar constants) is one function of its root tensor, replaced by one ``nm.pwl_map``
   call with a fitted table -- or an exact table when the chain is piecewise linear (Clip,
   LeakyRelu, HardSigmoid, ...); sums and extrema of two functions of the root are functions
   of it too (Selu, Elu: relu(x) + g(x)). Products of two tensors end a chain and stay exact VEC
   multiplies: GELU's erf form becomes ``x * T(x)``, HardSwish ``x * exact_PL(x)``.

``nm.pwl_map`` is ``call_dps_packed("nm.pwl_map", [x, table])``: the partitioner offloads it to
the accelerator's PWL unit; on the host (strict=False) a numpy implementation runs it. The
tables, their ranges, fitted errors and limits go into the pass's compile record
(``nm_tvm.record.CompileRecord.tables``).
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from nm_tvm.provenance import inherit_span
from nm_tvm.pwl import PL
from nm_tvm.record import CompileRecord

from . import scalar_function as sf
from .calibration_probes import expose_probes
from .pwl_tables import (DEFAULT_RANGE, NORM_VARIANCE_RANGE, POSITIVE_RANGE, LinearizeConfig,
                         LinearizeError, TableRegistry)

__all__ = ["Linearize", "LinearizeConfig", "LinearizeError"]


def _shape(expr) -> tuple:
    return tuple(int(d) for d in expr.ty.shape)


def _axes(call) -> tuple | None:
    """A reduction's axes, sorted and non-negative; None: all."""
    if call.attrs.axis is None:
        return None
    rank = len(call.args[0].ty.shape)
    return tuple(sorted(int(a) % rank for a in call.attrs.axis))


# ------------------------------------------------------------------------- 1. decompose
@relax.expr_functor.mutator
class _Decompose(relax.PyExprMutator):
    def __init__(self, mod, tables: TableRegistry):
        super().__init__(mod)
        self.tables = tables
        self._span = None  # span of the call being decomposed
        self.original: dict = {}  # var -> its value in the function before decomposition

    def _emit(self, expr):
        return self.builder_.emit(inherit_span(expr, self._span))

    def visit_call_(self, call):
        original = call
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op):
            return call
        self._span = call.span  # the calls a decomposition emits come from the same node
        new = self._decompose(call, original)
        return new if new.same_as(call) else inherit_span(new, call.span)

    def _decompose(self, call, original):
        name, disabled = call.op.name, self.tables.config.disabled
        if getattr(call.ty, "dtype", None) != "float32":
            return call  # integer / bool arithmetic has no accelerator form: left as it is
        if name in ("relax.nn.softmax", "relax.nn.log_softmax") and "softmax" not in disabled:
            return self._softmax(call, log=name.endswith("log_softmax"))
        if name == "relax.nn.layer_norm" and "layer_norm" not in disabled:
            return self._norm(call)
        if name == "relax.nn.group_norm" and "layer_norm" not in disabled:
            return self._group_norm(call)
        if "softmax" not in disabled:  # softmax's pieces written out (LogSumExp, _expanded)
            if name == "relax.exp" and self._max_shifted(original.args[0]):
                return self._shifted_exp(call.args[0])
            length = self._sum_of_shifted_exps(original.args[-1]) if name in (
                "relax.log", "relax.divide") else None
            if length is not None and name == "relax.log":
                return self.tables.call(call.args[0], self._sum_log_table(call.args[0], length))
            if length is not None and "reciprocal" not in disabled:  # a / sum, 1 / sum
                return relax.op.multiply(call.args[0], self._reciprocal(
                    call.args[1], (1.0, max(2.0, float(length)))))
        if name == "relax.divide" and sf.scalar_constant(call.args[0]) is None \
                and not isinstance(call.args[1], tvm.ir.Constant) and "reciprocal" not in disabled:
            # 1 / b as an elementwise op: the fusion below folds it into b's own scalar
            # function (one table for 1 / sqrt(v + eps), not a reciprocal of a fitted sqrt)
            recip = self._emit(relax.op.divide(relax.const(1.0, "float32"), call.args[1]))
            return relax.op.multiply(call.args[0], recip)
        if name in ("relax.max", "relax.mean", "relax.sum", "relax.prod"):
            return self._reduce_trailing(call)
        if name == "relax.min":
            return self._reduce_min(call)
        if name == "relax.nn.prelu":
            return self._prelu(call)
        if name == "relax.power":
            exponent = sf.scalar_constant(call.args[1])
            if exponent in (2.0, 3.0, 4.0):
                x, y = call.args[0], call.args[0]
                for _ in range(int(exponent) - 1):
                    y = self._emit(relax.op.multiply(y, x))
                return y
        return call

    def _prelu(self, call):
        """prelu(x) = relu(x) + alpha * (x - relu(x)): exact PWL, subtract, multiply, add."""
        x, alpha = call.args
        rank = len(x.ty.shape)
        shape = [1] * rank
        shape[int(call.attrs.axis) % rank] = _shape(alpha)[0] if len(alpha.ty.shape) else 1
        alpha = self._emit(relax.op.reshape(alpha, shape))
        pos = self._emit(relax.op.nn.relu(x))
        neg = self._emit(relax.op.subtract(x, pos))
        return relax.op.add(pos, self._emit(relax.op.multiply(neg, alpha)))

    def _reduce_trailing(self, call):
        """Reductions run over trailing axes on the accelerator: move other axes last with a
        transpose (DMA work), reduce, and reshape to the keepdims shape (a view)."""
        x = call.args[0]
        rank = len(x.ty.shape)
        axes = (list(range(rank)) if call.attrs.axis is None
                else sorted(int(a) % rank for a in call.attrs.axis))
        if axes == list(range(rank - len(axes), rank)):
            return call
        keep = [i for i in range(rank) if i not in axes]
        moved = self._emit(relax.op.permute_dims(x, keep + axes))
        op = {"relax.max": relax.op.max, "relax.mean": relax.op.mean,
              "relax.sum": relax.op.sum, "relax.prod": relax.op.prod}[call.op.name]
        reduced = self._emit(op(moved, axis=list(range(len(keep), rank)), keepdims=False))
        return relax.op.reshape(reduced, call.ty.shape)

    def _reduce_min(self, call):
        """min(x) = -max(-x): exact (negation is an exact table), on the VEC max tree."""
        neg = self._emit(relax.op.negative(call.args[0]))
        largest = self.builder_.normalize(relax.op.max(neg, call.attrs.axis, call.attrs.keepdims))
        return relax.op.negative(self._emit(self._reduce_trailing(largest)))

    def _reciprocal(self, x, default_range, bounded: bool = False):
        table = self.tables.fitted("reciprocal", lambda v: 1.0 / v, default_range, root=x,
                                   bounded=bounded)
        return self._emit(self.tables.call(x, table))

    # A softmax written out as ops (ReduceLogSumExp, ONNX's _expanded functions, exported
    # attention) gets the ranges of the Softmax decomposition below as its tables' defaults:
    # x - max(x) <= 0 (exp below -16 does not matter: the floor) and a sum of L of its
    # exponentials lies in [1, L], whatever the inputs. Calibration narrows them as it does
    # any fitted table; only the Softmax operator's own tables keep their ranges (bounded).
    def _max_reduction(self, var):
        """(x, axes) if ``var`` was ``max(x, axes, keepdims=True)`` (axes None: all)."""
        value = self.original.get(var)
        if not (isinstance(value, relax.Call) and value.op == tvm.ir.Op.get("relax.max")
                and value.attrs.keepdims):
            return None
        return value.args[0], _axes(value)

    def _max_shifted(self, var) -> tuple | None:
        """(x, axes) if ``var`` was ``x - max(x, axes, keepdims=True)``."""
        value = self.original.get(var)
        if not (isinstance(value, relax.Call) and value.op == tvm.ir.Op.get("relax.subtract")):
            return None
        reduced = self._max_reduction(value.args[1])
        return reduced if reduced is not None and reduced[0].same_as(value.args[0]) else None

    def _sum_of_shifted_exps(self, var) -> int | None:
        """L if ``var`` was ``sum(exp(x - max(x)))`` over the max's L elements."""
        value = self.original.get(var)
        if not (isinstance(value, relax.Call) and value.op == tvm.ir.Op.get("relax.sum")):
            return None
        e = self.original.get(value.args[0])
        if not (isinstance(e, relax.Call) and e.op == tvm.ir.Op.get("relax.exp")):
            return None
        shifted = self._max_shifted(e.args[0])
        if shifted is None or shifted[1] != _axes(value):
            return None
        shape = _shape(shifted[0])
        axes = shifted[1] if shifted[1] is not None else range(len(shape))
        return int(np.prod([shape[a % len(shape)] for a in axes], dtype=np.int64))

    def _shifted_exp(self, shifted):
        table = self.tables.fitted("exp", np.exp, (-16.0, 0.0), root=shifted, floor=-16.0)
        return self.tables.call(shifted, table)

    def _sum_log_table(self, s, length: int, bounded: bool = False):
        return self.tables.fitted("log", np.log, (1.0, max(2.0, length)), root=s,
                                  bounded=bounded)

    def _softmax(self, call, log: bool):
        x = call.args[0]
        rank = len(x.ty.shape)
        axis = int(call.attrs.axis) % rank
        if axis != rank - 1:  # move the axis last (a DMA transpose), normalize, move it back
            order = [i for i in range(rank) if i != axis] + [axis]
            moved = self._emit(relax.op.permute_dims(x, order))
            op = relax.op.nn.log_softmax if log else relax.op.nn.softmax
            y = self._emit(self._softmax(self.builder_.normalize(op(moved, axis=-1)), log))
            return relax.op.permute_dims(y, [order.index(i) for i in range(rank)])
        length = _shape(x)[-1]
        m = self._emit(relax.op.max(x, axis=-1, keepdims=True))
        shifted = self._emit(relax.op.subtract(x, m))
        # bounded: x - max(x) <= 0 and exp below -16 does not matter, so the table always
        # spans [-16, 0] (calibration weights it): a range narrowed to the samples would
        # give masked (-inf) and far-below-max scores its tail, not ~0
        exp_table = self.tables.fitted("exp", np.exp, (-16.0, 0.0), root=shifted, floor=-16.0,
                                       bounded=True)
        e = self._emit(self.tables.call(shifted, exp_table))
        s = self._emit(relax.op.sum(e, axis=-1, keepdims=True))
        if log:  # log_softmax = (x - m) - log(sum)
            log_s = self._emit(self.tables.call(s, self._sum_log_table(s, length, bounded=True)))
            return relax.op.subtract(shifted, log_s)
        r = self._reciprocal(s, (1.0, max(2.0, float(length))), bounded=True)
        return relax.op.multiply(e, r)

    def _normalize(self, x, axes, eps: float):
        """(x - mean) * rsqrt(variance + eps) over ``axes``: means as GEMMs, one PWL table."""
        mu = self._emit(relax.op.mean(x, axis=axes, keepdims=True))
        d = self._emit(relax.op.subtract(x, mu))
        v = self._emit(relax.op.mean(self._emit(relax.op.multiply(d, d)), axis=axes, keepdims=True))
        table = self.tables.fitted("rsqrt", lambda t: 1.0 / np.sqrt(t + eps), NORM_VARIANCE_RANGE,
                                   root=v)
        r = self._emit(self.tables.call(v, table))
        return self._emit(relax.op.multiply(d, r))

    def _norm(self, call):
        x, gamma = call.args[0], call.args[1]
        y = self._normalize(x, [int(a) for a in call.attrs.axes], float(call.attrs.epsilon))
        y = self._emit(relax.op.multiply(y, gamma))
        if len(call.args) > 2:
            y = relax.op.add(y, call.args[2])
        return y

    def _group_norm(self, call):
        """Group norm (and instance norm, one channel per group) = layer norm of each group:
        a view splits the channel axis into (groups, the rest of the group's elements), the
        last axis is normalized, a view restores the shape, then the per-channel scale and
        shift. Only groups that span every axis after the channel axis (ONNX's forms)."""
        x, gamma, beta = call.args
        shape, attrs = _shape(x), call.attrs
        rank = len(shape)
        channel = int(attrs.channel_axis) % rank
        if sorted(int(a) % rank for a in attrs.axes) != list(range(channel + 1, rank)):
            return call
        groups = int(attrs.num_groups)
        grouped = self._emit(relax.op.reshape(x, shape[:channel] + (
            groups, int(np.prod(shape[channel:], dtype=np.int64)) // groups)))
        y = self._emit(relax.op.reshape(self._normalize(grouped, [channel + 1],
                                                        float(attrs.epsilon)), shape))
        per_channel = (shape[channel],) + (1,) * (rank - channel - 1)
        if attrs.scale:
            y = self._emit(relax.op.multiply(y, self._reshaped(gamma, per_channel)))
        if attrs.center:
            y = relax.op.add(y, self._reshaped(beta, per_channel))
        return y

    def _reshaped(self, v, shape):
        """A per-channel vector in broadcast shape: folded if constant, else a view."""
        if isinstance(v, tvm.ir.Constant):
            return relax.const(v.value.numpy().reshape(shape))
        return self._emit(relax.op.reshape(v, shape))


# ----------------------------------------------------------------- 2. fuse scalar functions
class _Region:
    def __init__(self, root):
        self.root = root
        self.bindings: list = []  # (var, call) in order


def _find_regions(block) -> dict:
    """var -> region for every binding that is an elementwise function of one root tensor.
    All such bindings of one root form one region (they are all functions of it), except that
    a comparison of a function without an exact PL form roots a region of its own (a fitted
    table's output is then compared exactly, never a fitted step)."""
    region_of: dict = {}
    by_root: dict = {}
    for binding in block.bindings:
        call = binding.value
        if sf.elementwise_kind(call) is None or \
                getattr(binding.var.ty, "dtype", None) not in ("float32", "bool"):
            continue
        tensor_args = [a for a in sf.operands(call) if sf.scalar_constant(a) is None]
        if len(tensor_args) > 1 and not (_sum_or_extremum(call)
                                         or _masked_product(call, region_of)):
            continue  # x * g(x) and friends stay exact VEC ops; the regions end here
        roots, ok = set(), True
        for arg in sf.operands(call):
            if sf.scalar_constant(arg) is not None:
                continue
            if isinstance(arg, tvm.ir.Constant) or not isinstance(arg, relax.Var):
                ok = False
                break
            region = region_of.get(arg)
            if region is not None and sf.is_mask_op(call) and \
                    _evaluate(region, arg, PL.identity(), exact=True) is None:
                region = None  # a step of a fitted function: a step table of its own
            roots.add(region.root if region else arg)
        if not ok or len(roots) != 1:
            continue
        root = roots.pop()
        if getattr(root.ty, "dtype", None) != "float32":
            continue  # a bool / integer tensor enters a region only through a cast (a LOAD)
        try:
            if _shape(binding.var) != _shape(root):
                continue
        except (TypeError, AttributeError):
            continue
        region = by_root.setdefault(root, _Region(root))
        region.bindings.append((binding.var, call))
        region_of[binding.var] = region
    return region_of


def _sum_or_extremum(call) -> bool:
    """add / subtract / maximum / minimum: of two functions of one root, a function of it
    (Selu's and Elu's relu(x) + g(x) is one table); products stay VEC multiplies."""
    return call.op.name in ("relax.add", "relax.subtract", "relax.maximum", "relax.minimum") \
        or sf.elementwise_kind(call) == "tir"


def _masked_product(call, region_of: dict) -> bool:
    """A 0/1 step of the root times a piecewise-linear function of it (ThresholdedRelu's
    ``astype(x > alpha) * x``): exactly piecewise linear, so one exact table (0 for x = -inf,
    where a VEC multiply gives 0 * -inf = NaN)."""
    if call.op.name != "relax.multiply":
        return False
    factors = [_evaluate(region_of[a], a, PL.identity(), exact=True) if a in region_of
               else PL.identity() for a in call.args]
    return all(f is not None for f in factors) and any(f.is_piecewise_constant()
                                                       for f in factors)


def _function_key(calls) -> str:
    names = []
    for call in calls:
        name = call.op.name.split(".")[-1]
        if call.op.name in sf.UNARY and call.op.name not in sf.PL_UNARY and name not in names:
            names.append(name)
    if any(c.op.name == "relax.divide" and sf.scalar_constant(c.args[0]) is not None
           for c in calls):
        names.append("reciprocal")
    if any(c.op.name == "relax.power" for c in calls):  # x ** c, c not 2 / 3 / 4
        names.append("power")
    if any(sf.is_mask_op(c) for c in calls):
        names.append("step")
    return "+".join(names) if names else "pl"


def _evaluate(region: _Region, upto, x, exact: bool):
    """Value of var ``upto`` as a function of the root: numpy array or PL."""
    values = {region.root: x}
    needed = {upto}
    for var, call in reversed(region.bindings):
        if var in needed:
            needed.update(a for a in sf.operands(call) if hasattr(a, "ty"))
    for var, call in region.bindings:
        if var not in needed:
            continue
        args = []
        for arg in sf.operands(call):
            c = sf.scalar_constant(arg)
            args.append(c if c is not None else values[arg])
        values[var] = sf.evaluate_pl(call, args) if exact else sf.evaluate(call, args)
        if exact and values[var] is None:
            return None
        if var.same_as(upto):
            return values[var]
    raise KeyError(upto)


def _subgraph(region: _Region, out) -> list:
    """Calls of the region that ``out`` depends on."""
    needed, calls = {out}, []
    for var, call in reversed(region.bindings):
        if var in needed:
            calls.append(call)
            needed.update(a for a in sf.operands(call) if hasattr(a, "ty"))
    return list(reversed(calls))


@relax.expr_functor.mutator
class _FuseScalar(relax.PyExprMutator):
    def __init__(self, mod, tables: TableRegistry, replace: dict):
        super().__init__(mod)
        self.tables = tables
        self.replace = replace  # var -> table

    def visit_var_binding_(self, binding):
        if binding.var in self.replace:
            root, table = self.replace[binding.var]
            call = inherit_span(self.tables.call(self.visit_expr(root), table), binding.value.span)
            emit = (self.builder_.emit if isinstance(binding.var, relax.DataflowVar)
                    else self.builder_.emit_output)
            new = emit(call, name_hint=binding.var.name)
            self.set_var_remap(binding.var, new)
            return
        super().visit_var_binding_(binding)


def _plan_fusion(func: relax.Function, tables: TableRegistry) -> dict:
    replace = {}
    uses: dict = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            relax.analysis.post_order_visit(
                binding.value, lambda e: uses.setdefault(e, set()).add(binding.var)
                if isinstance(e, relax.Var) else None)
    outputs = set()
    relax.analysis.post_order_visit(func.body.body, lambda e: outputs.add(e)
                                    if isinstance(e, relax.Var) else None)
    for block in func.body.blocks:
        region_of = _find_regions(block)
        for var, region in region_of.items():
            users = uses.get(var, set())
            external = var in outputs or any(region_of.get(u) is not region for u in users)
            if not external or str(var.ty.dtype) != "float32":
                continue  # a bool mask leaves the region only through a cast (a STORE)
            calls = _subgraph(region, var)
            if len(calls) == 1 and calls[0].op.name == "relax.nn.relu":
                continue  # ReLU alone is a pattern of its own (fused into GEMMs)
            key = _function_key(calls)
            if any(part in tables.config.disabled for part in key.split("+")):
                continue
            pl = _evaluate(region, var, PL.identity(), exact=True)
            if pl is not None:
                table = tables.exact(key, pl)
            elif any(sf.is_mask_op(c) for c in calls):
                continue  # a step of a nonlinear function: no exact table, never fitted
            else:
                f = lambda x, r=region, v=var: _evaluate(r, v, np.asarray(x, np.float64), False)
                table = tables.fitted(key, f, _default_range(f), root=region.root)
            replace[var] = (region.root, table)
    return replace


POLE_LIKE = 1e6  # |f| this large on the default range: a pole behind a clamp (1 / max(x, eps))


def _default_range(f) -> tuple:
    """[-8, 8] unless f is undefined or blows up there (rsqrt, 1 / max(x, eps)): then the
    positive range."""
    with np.errstate(all="ignore"):
        probe = f(np.linspace(*DEFAULT_RANGE, 257))
    tame = np.all(np.isfinite(probe)) and np.max(np.abs(probe)) < POLE_LIKE
    return DEFAULT_RANGE if tame else POSITIVE_RANGE


@tvm.transform.module_pass(opt_level=0, name="nm.Linearize")
class Linearize:
    """Rewrite nonlinear operators into PWL maps + GEMMs + vector ops (see module doc).

    With ``probe=True`` ``main`` also returns the input tensor of every fitted table (after
    the model's outputs; ``record.probes`` says which) and evaluates the fitted functions
    exactly (``record.exact_functions``): calibration runs that module on sample inputs to
    find each table's real input range. The tables go to ``record.tables`` (the caller's
    record, or the pass's own).
    """

    def __init__(self, config: LinearizeConfig | None = None, probe: bool = False,
                 record: CompileRecord | None = None):
        self.config = config or LinearizeConfig()
        self.probe = probe
        self.record = record if record is not None else CompileRecord()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        tables = TableRegistry(self.config, self.probe)
        decompose = _Decompose(mod, tables)
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function) and not (func.attrs and "Codegen" in func.attrs):
                decompose.original = relax.analysis.get_var2val(func)
                mod[gv] = decompose.visit_expr(func)
        mod = relax.transform.Normalize()(mod)
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function) and not (func.attrs and "Codegen" in func.attrs):
                replace = _plan_fusion(func, tables)
                if replace:
                    mod[gv] = _FuseScalar(mod, tables, replace).visit_expr(func)
        if self.probe:
            mod, self.record.probes = expose_probes(mod, tables.probes)
            self.record.exact_functions = dict(tables.functions)
        self.record.tables = tables.records
        return relax.transform.DeadCodeElimination()(mod)
