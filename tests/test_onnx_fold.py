"""Shape arithmetic folded before import (nm_tvm/onnx_fold.py), against ONNX Runtime."""
import numpy as np
import onnx
from onnx import TensorProto, helper

import nm_tvm
from nm_tvm.onnx_fold import fold_shape_computations, with_static_inputs
from nm_tvm.reference import onnx_runtime_outputs


def _i64(name, values):
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _chained_reshapes() -> onnx.ModelProto:
    """PaddleOCR's export pattern: a Reshape target computed from Shape, and a second one from
    the Shape of that Reshape's output (static only once the first target is folded)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "zero", "one"], ["n"]),
        helper.make_node("Concat", ["n", "minus1"], ["t1"], axis=0),
        helper.make_node("Reshape", ["x", "t1"], ["y"]),            # (N, C*H*W)
        helper.make_node("Shape", ["y"], ["s2"]),
        helper.make_node("Slice", ["s2", "one", "two"], ["m"]),
        helper.make_node("Concat", ["m", "n"], ["t2"], axis=0),
        helper.make_node("Reshape", ["y", "t2"], ["z0"]),           # (C*H*W, N)
        helper.make_node("Relu", ["z0"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [6, "N"])],
        [_i64("zero", [0]), _i64("one", [1]), _i64("two", [2]), _i64("minus1", [-1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_fold_repeats_until_shapes_of_folded_reshapes_are_static():
    proto = _chained_reshapes()
    folded = fold_shape_computations(with_static_inputs(proto, {"x": (4, 2, 3)}))
    assert [n.op_type for n in folded.graph.node] == ["Reshape", "Reshape", "Relu"]
    compiled = nm_tvm.compile(proto, input_shapes={"x": (4, 2, 3)})
    assert compiled.host_ops == []
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(compiled.run({"x": x})[0],
                                  onnx_runtime_outputs(proto, {"x": x})[0])
