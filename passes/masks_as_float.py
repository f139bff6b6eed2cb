"""Boolean masks as float 0/1 tensors, so comparisons, logic and selects run on the accelerator.

The accelerator computes in fp32 / bf16 only; attention and padding masks arrive as ONNX
Equal / Less / Not / And / Where over integer or float tensors. Each boolean tensor is given a
float32 twin holding 0.0 / 1.0, built from operations that are exact:

* ``a < b`` (any comparison): ``d = a - b``, whose sign and zero-ness are exact in IEEE
  arithmetic (gradual underflow), then ``astype(d < 0, float32)``, which Linearize turns into
  one exact step table (``PL.compare``). Against a scalar constant ``k`` the tensor is compared
  to ``k`` directly. Integer and bool operands are cast to float32 first (a converting LOAD;
  exact for integers up to 2^24 in magnitude; integer constants beyond that are left alone).
* ``not m = 1 - m``, ``m1 and m2 = m1 * m2``, ``m1 or m2 = max(m1, m2)``, ``xor = (m1 != m2)``.
* ``where(c, x, y)`` stays: one VEC select whose bool condition the LOAD converts to 0/1,
  exact for every x and y, NaN and infinities included (``y + c * (x - y)`` rounds and leaks
  them); with two scalar constant branches an exact step table of the mask.

A boolean result used by anything else (a graph output, an unknown op) is ``astype(twin,
bool)``: a STORE into a bool region. Known limit: comparisons of two infinities of the same
sign (``d`` is NaN) and of NaN give NaN instead of ONNX's booleans.
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from nm_tvm.provenance import inherit_span

_COMPARE = {"relax.less": relax.op.less, "relax.greater": relax.op.greater,
            "relax.less_equal": relax.op.less_equal,
            "relax.greater_equal": relax.op.greater_equal, "relax.equal": relax.op.equal,
            "relax.not_equal": relax.op.not_equal}
_MIRRORED = {"relax.less": "relax.greater", "relax.greater": "relax.less",
             "relax.less_equal": "relax.greater_equal",
             "relax.greater_equal": "relax.less_equal", "relax.equal": "relax.equal",
             "relax.not_equal": "relax.not_equal"}
_LOGIC = ("relax.logical_not", "relax.logical_and", "relax.logical_or", "relax.logical_xor")
EXACT_INT = 2 ** 24  # integers of larger magnitude do not all have an fp32


def _dtype(expr) -> str | None:
    return getattr(expr.ty, "dtype", None)


def _shape(expr):
    shape = getattr(expr.ty, "shape", None)
    return None if shape is None else tuple(int(d) for d in shape)


def _scalar(expr) -> float | None:
    """The value of a constant whose elements are all equal and exact in fp32, any dtype."""
    if not isinstance(expr, tvm.ir.Constant):
        return None
    value = expr.value.numpy().reshape(-1)
    if value.size == 0 or not np.all(value == value[0]):
        return None
    if value.dtype.kind in "iub" and abs(int(value[0])) > EXACT_INT:
        return None
    return float(value[0])


@relax.expr_functor.mutator
class _MaskRewriter(relax.PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.twin: dict = {}  # bool var -> its float32 0/1 twin
        self._span = None

    def _emit(self, expr):
        return self.builder_.emit(inherit_span(expr, self._span))

    def _as_float(self, expr):
        if expr in self.twin:
            return self.twin[expr]
        if _dtype(expr) == "float32":
            return expr
        if isinstance(expr, tvm.ir.Constant):
            value = expr.value.numpy()
            if value.dtype.kind in "iu" and np.abs(value).max(initial=0) > EXACT_INT:
                return None
            return relax.const(value.astype(np.float32))
        if _dtype(expr) in ("bool", "int32", "int64", "uint8", "int8"):
            return self._emit(relax.op.astype(expr, "float32"))
        return None

    def _step(self, op: str, x, k: float):
        return self._emit(relax.op.astype(self._emit(_COMPARE[op](x, relax.const(k, "float32"))),
                                          "float32"))

    def _compare(self, op: str, a, b, out_shape):
        ka, kb = _scalar(a), _scalar(b)
        if kb is not None and _shape(a) == out_shape and self._as_float(a) is not None:
            return self._step(op, self._as_float(a), kb)
        if ka is not None and _shape(b) == out_shape and self._as_float(b) is not None:
            return self._step(_MIRRORED[op], self._as_float(b), ka)
        fa, fb = self._as_float(a), self._as_float(b)
        if fa is None or fb is None:
            return None
        return self._step(op, self._emit(relax.op.subtract(fa, fb)), 0.0)

    def _logic(self, name: str, args, out_shape):
        masks = [self._as_float(a) for a in args]
        if any(m is None for m in masks):
            return None
        if name == "relax.logical_not":
            return self._emit(relax.op.subtract(relax.const(1.0, "float32"), masks[0]))
        if name == "relax.logical_and":
            return self._emit(relax.op.multiply(*masks))
        if name == "relax.logical_or":
            return self._emit(relax.op.maximum(*masks))
        return self._compare("relax.not_equal", masks[0], masks[1], out_shape)

    def _where(self, call, args):
        """Two scalar constant branches: an exact step table of the mask. Otherwise the Where
        stays (one VEC select, its bool condition converted by the LOAD)."""
        cond, x, y = args
        m = self._as_float(cond)
        kx, ky = _scalar(x), _scalar(y)
        if m is None or kx is None or ky is None or _dtype(call) != "float32" \
                or _shape(m) != _shape(call):
            return None
        on = self._emit(relax.op.not_equal(m, relax.const(0.0, "float32")))
        return self._emit(relax.op.where(on, relax.const(kx, "float32"),
                                         relax.const(ky, "float32")))

    def _rewrite(self, call, args):
        name = call.op.name
        if name in _COMPARE:
            return self._compare(name, args[0], args[1], _shape(call))
        if name in _LOGIC:
            return self._logic(name, args, _shape(call))
        if name == "relax.where":
            return self._where(call, args)
        return None

    def visit_var_binding_(self, binding):
        value = binding.value
        if not (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)):
            return super().visit_var_binding_(binding)
        name = value.op.name
        args = [self.visit_expr(a) for a in value.args]
        if name == "relax.astype" and args[0] in self.twin:
            new = self._cast_twin(self.twin[args[0]], str(value.attrs.dtype), binding)
            self.set_var_remap(binding.var, new)
            return
        self._span = value.span
        result = self._rewrite(value, args) if name in _COMPARE or name in _LOGIC or \
            name == "relax.where" else None
        if result is None:
            return super().visit_var_binding_(binding)
        if _dtype(value) == "bool":  # anything that is not mask-aware reads the bool tensor
            new = self._bind(relax.op.astype(result, "bool"), binding)
            self.twin[new] = result
        else:
            new = self._bind(result, binding) if not isinstance(binding.var, relax.DataflowVar) \
                else result
        self.set_var_remap(binding.var, new)

    def _cast_twin(self, twin, dtype: str, binding):
        if dtype == "float32":
            return twin if isinstance(binding.var, relax.DataflowVar) else \
                self._bind(twin, binding)
        return self._bind(relax.op.astype(twin, dtype), binding)

    def _bind(self, expr, binding):
        """Bind under the original name (an output var of the dataflow block stays one)."""
        expr = inherit_span(expr, binding.value.span)
        if isinstance(binding.var, relax.DataflowVar):
            return self.builder_.emit(expr, name_hint=binding.var.name)
        return self.builder_.emit_output(expr, name_hint=binding.var.name)


@tvm.transform.module_pass(opt_level=0, name="nm.MasksAsFloat")
class MasksAsFloat:
    """Comparisons, boolean logic and Where as float 0/1 arithmetic (see the module doc)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function) and not (func.attrs and "Codegen" in func.attrs):
                mod[gv] = _MaskRewriter(mod).visit_expr(func)
        return relax.transform.DeadCodeElimination()(relax.transform.Normalize()(mod))
