"""Expected error from operand rounding: a first-order, probabilistic bound per output element.

Model (the standard probabilistic model of Higham & Mary, SIAM J. Sci. Comput. 2019): each
operand entering the array is rounded, ``rd(v) = v (1 + d)`` with ``d`` independent, mean zero
and ``|d| <= u`` (so variance ``<= u^2 / 3``); ``u = 2^-8`` for bf16, ``2^-24`` for fp32.
A GEMM output ``y_i = sum_k w_ik x_k`` then carries, to first order, the variance
``sum_k w_ik^2 (var(x_k) + 2 u^2 / 3 * x_k^2)``: the incoming error pushed through the weights
plus the rounding of both operands. ReLU passes the variance where its input is positive,
additions (done in the fp32 accumulator, no operand rounding) add variances, BatchNorm scales
them by its factor squared, data movement moves them. The bound is ``lam * sqrt(var)``
(``lam = 6``: a sum of many bounded independent terms exceeds 6 standard deviations with
probability below 1e-8). fp32 accumulation error (relative ``<= K * 2^-24`` worst case, about
``sqrt(K) * 2^-24`` in this model) is orders of magnitude below the bf16 term and not included.

A worst-case bound (absolute values everywhere) also holds but grows like ``sqrt(K)`` per layer
on real networks and is vacuous after a few layers; this one stays near the observed error.
It is evaluated with ONNX Runtime on a *twin* graph that computes the variances next to the
original values.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from nm_tvm.reference import onnx_runtime_outputs

UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "bfloat16": 2.0 ** -8}
DEFAULT_LAMBDA = 6.0


class _Twin:
    def __init__(self, proto: onnx.ModelProto, c: float):
        self.c = c
        self.inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
        self.nodes: list = []
        self.new_inits: list = []
        self._n = 0

    def tmp(self, base: str) -> str:
        self._n += 1
        return f"{base}__t{self._n}"

    def const(self, base: str, value) -> str:
        name = self.tmp(base)
        self.new_inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self.tmp(op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def var(self, name: str) -> str | None:
        """Variance tensor of ``name`` (None: exact constant)."""
        return None if name in self.inits or name == "" else f"{name}__var"

    def rounded_input(self, x: str) -> str:
        """var(x) + c * x^2: the variance of x after rounding it as an operand."""
        local = self.op("Mul", [self.op("Mul", [x, x]), self.const("c", self.c)])
        vx = self.var(x)
        return self.op("Add", [vx, local]) if vx else local

    def squared_weight(self, name: str) -> str:
        return self.const(f"{name}_sq", np.square(self.inits[name]))


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _twin_node(t: _Twin, node) -> None:
    op, ins, out = node.op_type, list(node.input), node.output[0]
    vout = f"{out}__var"
    attrs = _attrs(node)
    if op == "Conv":
        kept = {k: v for k, v in attrs.items()}
        t.op("Conv", [t.rounded_input(ins[0]), t.squared_weight(ins[1])], vout, **kept)
    elif op in ("Gemm", "MatMul"):
        a, b = ins[0], ins[1]
        alpha = attrs.get("alpha", 1.0)
        gemm_attrs = {k: attrs[k] for k in ("transA", "transB") if k in attrs}
        mm = (lambda x, y, o=None: t.op("Gemm", [x, y], o, alpha=alpha ** 2, **gemm_attrs)) \
            if op == "Gemm" else (lambda x, y, o=None: t.op("MatMul", [x, y], o))
        if b in t.inits:
            mm(t.rounded_input(a), t.squared_weight(b), vout)
        else:
            b_rounded = t.rounded_input(b)
            first = mm(t.rounded_input(a), t.op("Mul", [b, b]))
            second = mm(t.op("Mul", [a, a]), b_rounded)
            t.op("Add", [first, second], vout)
    elif op == "AveragePool":
        window = float(np.prod(attrs["kernel_shape"]))
        pooled = t.op("AveragePool", [t.rounded_input(ins[0])], **attrs)
        t.op("Mul", [pooled, t.const("inv_window", 1.0 / window)], vout)
    elif op == "GlobalAveragePool":
        # Sum of (1/L)^2 * v over the window = GAP(v) / L, with L from the input's shape.
        pooled = t.op("GlobalAveragePool", [t.rounded_input(ins[0])])
        shape = t.op("Shape", [ins[0]], start=2)
        window = t.op("Cast", [t.op("ReduceProd", [shape], keepdims=1)], to=onnx.TensorProto.FLOAT)
        t.op("Div", [pooled, window], vout)
    elif op == "BatchNormalization":
        scale, var, eps = t.inits[ins[1]], t.inits[ins[4]], attrs.get("epsilon", 1e-5)
        factor = np.square(scale / np.sqrt(var + eps)).reshape(-1, 1, 1)
        t.op("Mul", [t.var(ins[0]), t.const("bn_factor_sq", factor)], vout)
    elif op == "Relu":
        positive = t.op("Cast", [t.op("Greater", [ins[0], t.const("zero", 0.0)])],
                        to=onnx.TensorProto.FLOAT)
        t.op("Mul", [t.var(ins[0]), positive], vout)
    elif op in ("Add", "Sub"):
        vs = [t.var(i) for i in ins if t.var(i)]
        if len(vs) == 2:
            t.op("Add", vs, vout)
        else:
            t.op("Identity", vs, vout)
    elif op in ("Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity"):
        t.op(op, [t.var(ins[0])] + ins[1:], vout, **attrs)
    else:
        raise NotImplementedError(f"no rounding model for ONNX operator {op} (node '{node.name}')")


def rounding_error_bound(proto: onnx.ModelProto, inputs: dict, operand_dtype: str,
                         lam: float = DEFAULT_LAMBDA) -> list[np.ndarray]:
    """``lam`` standard deviations of the rounding error, per element of every output."""
    twin = _Twin(proto, 2.0 * UNIT_ROUNDOFF[operand_dtype] ** 2 / 3.0)
    graph_inputs = [i.name for i in proto.graph.input if i.name not in twin.inits]
    for name in graph_inputs:  # inputs arrive exact; they are rounded where they are used
        twin.op("Mul", [name, twin.const("zero", 0.0)], f"{name}__var")
    for node in proto.graph.node:
        _twin_node(twin, node)
    graph = helper.make_graph(
        list(proto.graph.node) + twin.nodes, "rounding_twin", list(proto.graph.input),
        [helper.make_tensor_value_info(f"{o.name}__var", onnx.TensorProto.FLOAT, None)
         for o in proto.graph.output],
        list(proto.graph.initializer) + twin.new_inits)
    model = helper.make_model(graph, opset_imports=list(proto.opset_import),
                              ir_version=proto.ir_version)
    variances = onnx_runtime_outputs(model, inputs)
    return [lam * np.sqrt(np.maximum(v, 0.0)) for v in variances]
