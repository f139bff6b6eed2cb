"""Small ONNX models for the demo, tests and benchmarks, built with ``onnx.helper``."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9  # onnxruntime 1.31 reads IR <= 13; onnx 1.23 would write 14 (docs/TVM_NOTES.md)


class _Graph:
    """Accumulates nodes and initializers with generated, readable names."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []

    def weight(self, name: str, shape, scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = scale if scale is not None else 1.0 / np.sqrt(fan_in)
        value = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        return self.const(name, value)

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv_bn_relu(self, x: str, name: str, c_in: int, c_out: int, k: int, stride: int = 1,
                     relu: bool = True, residual: str | None = None) -> str:
        pad = k // 2
        w = self.weight(f"{name}.weight", (c_out, c_in, k, k))
        y = self.node("Conv", [x, w], f"{name}", kernel_shape=[k, k], strides=[stride] * 2,
                      pads=[pad] * 4)
        bn = [self.const(f"{name}_bn.scale", self.rng.uniform(0.5, 1.5, c_out)),
              self.const(f"{name}_bn.bias", self.rng.normal(0, 0.1, c_out)),
              self.const(f"{name}_bn.mean", self.rng.normal(0, 0.1, c_out)),
              self.const(f"{name}_bn.var", self.rng.uniform(0.5, 1.5, c_out))]
        y = self.node("BatchNormalization", [y] + bn, f"{name}_bn", epsilon=1e-5)
        if residual is not None:
            y = self.node("Add", [y, residual], f"{name}_add")
        return self.node("Relu", [y], f"{name}_relu") if relu else y

    def model(self, name: str, inputs: dict, output: str, out_shape) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)], self.inits)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  ir_version=IR_VERSION, producer_name="nm_tvm.models")
        onnx.checker.check_model(proto)
        return proto


def small_cnn(batch: int = 1, size: int = 16, classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """A ResNet-style CNN: conv-BN-ReLU, a residual block, average pooling, 1x1 conv,
    strided conv, global average pooling and a Gemm classifier."""
    g = _Graph(seed)
    x = g.conv_bn_relu("input", "stem", 3, 16, 3)
    y = g.conv_bn_relu(x, "block1.conv1", 16, 16, 3)
    x = g.conv_bn_relu(y, "block1.conv2", 16, 16, 3, residual=x)
    x = g.node("AveragePool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    x = g.conv_bn_relu(x, "expand", 16, 32, 1)
    x = g.conv_bn_relu(x, "down", 32, 32, 3, stride=2)
    x = g.node("GlobalAveragePool", [x], "gap")
    x = g.node("Flatten", [x], "flatten", axis=1)
    w = g.weight("fc.weight", (classes, 32))
    b = g.const("fc.bias", g.rng.normal(0, 0.1, classes))
    x = g.node("Gemm", [x, w, b], "logits", transB=1)
    return g.model("small_cnn", {"input": [batch, 3, size, size]}, x, [batch, classes])


def mlp(batch: int = 4, sizes=(64, 128, 96, 10), seed: int = 0) -> onnx.ModelProto:
    """Gemm+ReLU layers, the last without ReLU; the middle layer as MatMul+Add."""
    g = _Graph(seed)
    x = "input"
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        b = g.const(f"fc{i}.bias", g.rng.normal(0, 0.1, n))
        if i % 2:
            w = g.weight(f"fc{i}.weight", (k, n))
            x = g.node("Add", [g.node("MatMul", [x, w], f"fc{i}.matmul"), b], f"fc{i}")
        else:
            w = g.weight(f"fc{i}.weight", (n, k))
            x = g.node("Gemm", [x, w, b], f"fc{i}", transB=1)
        if not last:
            x = g.node("Relu", [x], f"fc{i}.relu")
    return g.model("mlp", {"input": [batch, sizes[0]]}, x, [batch, sizes[-1]])


def gemm_model(m: int, k: int, n: int, seed: int = 0) -> onnx.ModelProto:
    """One MatMul ``[m, k] @ [k, n]`` with a constant right-hand side."""
    g = _Graph(seed)
    w = g.weight("weight", (k, n))
    y = g.node("MatMul", ["input", w], "matmul")
    return g.model("gemm", {"input": [m, k]}, y, [m, n])
