"""Analytic operation counts of an ONNX model, independent of the compiler."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import shape_inference


def _shapes(proto: onnx.ModelProto) -> dict[str, tuple]:
    inferred = shape_inference.infer_shapes(proto)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shapes[vi.name] = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
    for init in proto.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def analytic_macs(proto: onnx.ModelProto) -> int:
    """Multiply-accumulates of Conv, Gemm, MatMul and (global) average pooling.

    Pooling counts one MAC per window element (a sum scaled by 1/window), as it runs as a GEMM
    against a constant averaging vector.
    """
    shapes = _shapes(proto)
    total = 0
    for node in proto.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        out = shapes[node.output[0]]
        if node.op_type == "Conv":
            w = shapes[node.input[1]]
            total += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes[node.input[0]]
            k = a[0] if node.op_type == "Gemm" and attrs.get("transA", 0) else a[-1]
            total += int(np.prod(out)) * k
        elif node.op_type == "AveragePool":
            total += int(np.prod(out)) * int(np.prod(attrs["kernel_shape"]))
        elif node.op_type == "GlobalAveragePool":
            total += int(np.prod(shapes[node.input[0]]))
    return total
