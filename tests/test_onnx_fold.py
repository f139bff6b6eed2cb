"""Shape arithmetic folded before import (nm_tvm/onnx_fold.py), against ONNX Runtime."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nm_tvm
from nm_tvm import artifact
from nm_tvm.frontend import ModelLoadError
from nm_tvm.runtime import InputError
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


def _vad_like(width=4) -> onnx.ModelProto:
    """silero-vad's structure in small: an int64 sample rate selects an If branch, and inside
    the taken branch a nested If tests a static shape (Size) and a branch initializer scales."""
    inner = helper.make_graph(
        [helper.make_node("Identity", ["r"], ["inner_out"])], "inner", [],
        [helper.make_tensor_value_info("inner_out", TensorProto.FLOAT, None)])
    skip = helper.make_graph(
        [helper.make_node("Neg", ["r"], ["skip_out"])], "skip", [],
        [helper.make_tensor_value_info("skip_out", TensorProto.FLOAT, None)])
    then = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("Size", ["x"], ["n"]),
         helper.make_node("Equal", ["n", "four"], ["is4"]),
         helper.make_node("If", ["is4"], ["picked"], then_branch=inner, else_branch=skip),
         helper.make_node("Mul", ["picked", "scale"], ["then_out"])], "then", [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, None)],
        [helper.make_tensor("scale", TensorProto.FLOAT, [], [2.0]),
         helper.make_tensor("four", TensorProto.INT64, [], [width])])
    other = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["else_out"])], "other", [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)])
    graph = helper.make_graph(
        [helper.make_node("Equal", ["sr", "rate"], ["is16k"]),
         helper.make_node("If", ["is16k"], ["y"], then_branch=then, else_branch=other,
                          name="by_rate")], "vad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor("rate", TensorProto.INT64, [], [16000])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_input_values_fold_if_branches_and_run_checks_them(tmp_path):
    proto = _vad_like()
    x = np.array([[-1.5, 0.25, 3.0, -0.0]], np.float32)
    for rate in (16000, 8000):
        compiled = nm_tvm.compile(proto, input_values={"sr": rate})
        assert compiled.host_ops == [] and compiled.input_names == ["x"]
        ref = onnx_runtime_outputs(proto, {"x": x, "sr": np.array(rate, np.int64)})[0]
        np.testing.assert_array_equal(compiled.run({"x": x})[0], ref)
        # ORT-style calls pass the fixed input too: the same value is accepted, another is not
        np.testing.assert_array_equal(compiled.run({"x": x, "sr": np.int64(rate)})[0], ref)
        with pytest.raises(InputError, match="'sr' was fixed at compile time"):
            compiled.run({"x": x, "sr": np.int64(rate + 1)})
    reloaded = artifact.load(artifact.save(compiled, tmp_path / "vad.tar"))
    np.testing.assert_array_equal(reloaded.run({"x": x, "sr": np.int64(8000)})[0],
                                  compiled.run({"x": x})[0])


def test_if_on_a_run_time_value_is_refused_naming_node_and_input():
    with pytest.raises(ModelLoadError, match=r"If node 'by_rate'.*input\(s\) \['sr'\].*"
                                             r"input_values"):
        nm_tvm.compile(_vad_like())


@pytest.mark.parametrize("values, message", [
    ({"rate": 1}, "unknown input 'rate'"),
    ({"sr": 16000.5}, "does not fit the input's type int64"),
    ({"sr": [16000]}, r"has shape \[1\]; the input is declared \[\]"),
])
def test_input_values_are_checked(values, message):
    with pytest.raises(ModelLoadError, match=message):
        nm_tvm.compile(_vad_like(), input_values=values)


def test_weights_rearranged_by_movement_ops_fold_at_any_size():
    """silero-vad's LSTM weights are Unsqueeze / Concat of large Constants: folded, so the
    LSTM sees initializers (the shape-arithmetic size cap does not apply to movement)."""
    hidden, width = 40, 48  # W: 160 x 48 = 7680 elements, above MAX_FOLDED_ELEMENTS
    rng = np.random.default_rng(0)
    w = (0.2 * rng.standard_normal((4 * hidden, width))).astype(np.float32)
    r = (0.2 * rng.standard_normal((4 * hidden, hidden))).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["w2"], value=numpy_helper.from_array(w)),
             helper.make_node("Constant", [], ["r2"], value=numpy_helper.from_array(r)),
             helper.make_node("Unsqueeze", ["w2", "zero"], ["W"]),
             helper.make_node("Unsqueeze", ["r2", "zero"], ["R"]),
             helper.make_node("LSTM", ["x", "W", "R"], ["", "h"], hidden_size=hidden)]
    graph = helper.make_graph(
        nodes, "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1, width])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 1, hidden])],
        [_i64("zero", [0])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    compiled = nm_tvm.compile(proto, calibration=[])
    assert compiled.host_ops == []
    x = rng.standard_normal((3, 1, width)).astype(np.float32)
    np.testing.assert_allclose(compiled.run({"x": x})[0], onnx_runtime_outputs(proto, {"x": x})[0],
                               atol=2e-2)
