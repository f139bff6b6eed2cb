"""Elementwise Relax subgraphs of one tensor seen as scalar functions ``y = f(x)``.

The ONNX importer leaves many nonlinear operators decomposed (GELU as ``x*0.5*(1+erf(x/√2))``,
Softplus, Mish, HardSwish, Elu as chains of exp/log/clip/...). Every such chain is one scalar
function of its root tensor, so one PWL table replaces the whole chain. This module evaluates a
chain numerically (numpy, float64) for fitting, and exactly as a piecewise-linear function
(:class:`nm_tvm.pwl.PL`) when it is made only of piecewise-linear operations.
"""
from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import relax

from nm_tvm.pwl import PL

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


UNARY = {
    "relax.exp": np.exp, "relax.log": np.log, "relax.tanh": np.tanh,
    "relax.sigmoid": _sigmoid, "relax.erf": _erf, "relax.sqrt": np.sqrt,
    "relax.rsqrt": lambda x: 1.0 / np.sqrt(x), "relax.abs": np.abs,
    "relax.negative": np.negative, "relax.nn.relu": lambda x: np.maximum(x, 0.0),
    "relax.nn.gelu": _gelu, "relax.nn.gelu_tanh": _gelu_tanh,
    "relax.nn.silu": lambda x: x * _sigmoid(x), "relax.square": np.square,
    "relax.nn.softplus": lambda x: np.logaddexp(0.0, x),
    "relax.sin": np.sin, "relax.cos": np.cos, "relax.sign": np.sign,
}
BINARY = {
    "relax.add": np.add, "relax.subtract": np.subtract, "relax.multiply": np.multiply,
    "relax.divide": np.divide, "relax.maximum": np.maximum, "relax.minimum": np.minimum,
    "relax.power": np.power,
}
# Comparisons with a scalar constant, and the select / logic ops over their 0/1 results
# (passes/masks_as_float.py leaves masks in these forms), and sign: exact step tables.
COMPARE = {f"relax.{op}": op for op in ("less", "greater", "less_equal", "greater_equal",
                                         "equal", "not_equal")}
MASK_UNARY = {"relax.where", "relax.logical_not", "relax.astype", "relax.sign"}
_FLIPPED = {"less": "greater", "greater": "less", "less_equal": "greater_equal",
            "greater_equal": "less_equal", "equal": "equal", "not_equal": "not_equal"}
# TE-lowered Clip arrives as call_tir to PrimFuncs with these names (docs/TVM_NOTES.md).
TIR_BINARY = {"maximum": np.maximum, "minimum": np.minimum}
PL_UNARY = {"relax.nn.relu", "relax.abs", "relax.negative", "relax.nn.leakyrelu", "relax.clip",
            "relax.sign"}


def is_mask_op(call) -> bool:
    """A comparison, select or logic op: exact as a step table, never fitted."""
    return call.op.name in COMPARE or call.op.name in MASK_UNARY


def scalar_constant(expr) -> float | None:
    """The value of a constant whose elements are all equal (a scalar in disguise)."""
    if not isinstance(expr, tvm.ir.Constant):
        return None
    value = expr.value.numpy()
    if value.size == 0 or value.dtype.kind != "f":
        return None
    flat = value.reshape(-1)
    return float(flat[0]) if np.all(flat == flat[0]) else None


def _tir_name(call) -> str | None:
    """The PrimFunc's base name (TVM numbers repeats: maximum, maximum1, ...)."""
    if call.op.name == "relax.call_tir":
        return str(call.args[0].name_hint).rstrip("0123456789")
    return None


def elementwise_kind(call) -> str | None:
    """'unary' / 'binary' / 'tir' if ``call`` is an elementwise op this module can evaluate."""
    if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
        return None
    name = call.op.name
    if name in UNARY or name in ("relax.nn.leakyrelu", "relax.clip"):
        return "unary"
    if name in COMPARE:
        return "binary"
    if name == "relax.where" or name == "relax.logical_not":
        return "unary"
    if name == "relax.astype" and (str(call.args[0].ty.dtype), str(call.ty.dtype)) == \
            ("bool", "float32"):  # (to bool: a STORE into a bool region, not a table)
        return "unary"
    if name in BINARY:
        return "binary"
    if name == "relax.call_tir" and _tir_name(call) in TIR_BINARY:
        return "tir"
    return None


def operands(call) -> list:
    """The tensor operands of an elementwise call (call_tir: its argument tuple)."""
    if call.op.name == "relax.call_tir":
        return list(call.args[1].fields)
    if call.op.name == "relax.clip":
        return [call.args[0]]
    return list(call.args)


def _clip_bounds(call):
    lo, hi = call.args[1], call.args[2]
    return float(lo.value), float(hi.value)


def evaluate(call, values: list):
    """Apply ``call`` to operand values (numpy arrays, or floats for scalar constants)."""
    name = call.op.name
    if name in UNARY:
        return UNARY[name](values[0])
    if name == "relax.nn.leakyrelu":
        alpha = float(call.attrs.alpha)
        return np.where(values[0] >= 0, values[0], alpha * values[0])
    if name == "relax.clip":
        lo, hi = _clip_bounds(call)
        return np.clip(values[0], lo, hi)
    if name == "relax.call_tir":
        return TIR_BINARY[_tir_name(call)](values[0], values[1])
    if name in COMPARE:
        return getattr(np, COMPARE[name])(values[0], values[1]).astype(np.float64)
    if name == "relax.where":
        return np.where(np.asarray(values[0]) != 0, values[1], values[2]).astype(np.float64)
    if name == "relax.logical_not":
        return (np.asarray(values[0]) == 0).astype(np.float64)
    if name == "relax.astype":  # bool -> float32
        return values[0]
    return BINARY[name](values[0], values[1])


def evaluate_pl(call, values: list) -> PL | None:
    """Exact piecewise-linear result, or None if the op is not PL on these operands."""
    name = call.op.name
    a = values[0]
    if name == "relax.nn.relu":
        return a.maximum(PL.constant(0.0))
    if name == "relax.negative":
        return a.scale(-1.0)
    if name == "relax.abs":
        return a.maximum(a.scale(-1.0))
    if name == "relax.nn.leakyrelu":
        alpha = float(call.attrs.alpha)
        return a.maximum(a.scale(alpha)) if alpha <= 1 else a.scale(-1).maximum(a.scale(-alpha)).scale(-1)
    if name == "relax.clip":
        lo, hi = _clip_bounds(call)
        return a.maximum(PL.constant(lo)).scale(-1.0).maximum(PL.constant(-hi)).scale(-1.0)
    if name in COMPARE:
        if isinstance(a, PL):
            return a.compare(COMPARE[name], values[1]) if not isinstance(values[1], PL) else None
        return values[1].compare(_FLIPPED[COMPARE[name]], a)
    if name == "relax.where":
        return a.select(values[1], values[2]) if not isinstance(values[1], PL) and \
            not isinstance(values[2], PL) else None
    if name == "relax.logical_not":
        return a.compare("equal", 0.0)
    if name == "relax.sign":  # [a > 0] - [a < 0]: two steps at 0
        above, below = a.compare("greater", 0.0), a.compare("less", 0.0)
        if above is None or below is None:
            return None
        return above.combine(below, lambda p, q: (p[0] - q[0], p[1] - q[1]))
    if name == "relax.astype":  # bool -> float32
        return a
    op = TIR_BINARY.get(_tir_name(call)) if name == "relax.call_tir" else BINARY.get(name)
    if op is None:
        return None
    b = values[1]
    as_pl = lambda v: v if isinstance(v, PL) else PL.constant(v)
    if op in (np.maximum, np.minimum):
        if op is np.maximum:
            return as_pl(a).maximum(as_pl(b))
        return as_pl(a).scale(-1).maximum(as_pl(b).scale(-1)).scale(-1)
    if op is np.add:
        return as_pl(a).combine(as_pl(b), lambda p, q: (p[0] + q[0], p[1] + q[1]))
    if op is np.subtract:
        return as_pl(a).combine(as_pl(b), lambda p, q: (p[0] - q[0], p[1] - q[1]))
    if op is np.multiply and (not isinstance(a, PL) or not isinstance(b, PL)):
        k, f = (a, b) if not isinstance(a, PL) else (b, a)
        return f.scale(k)
    if op is np.multiply:  # a step function times a PL function is PL
        return a.masked(b) if a.is_piecewise_constant() else b.masked(a)
    if op is np.divide and not isinstance(b, PL):
        return a.scale(1.0 / b)
    return None
