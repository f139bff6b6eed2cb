"""Split, Expand and Tile on the accelerator, DMA views only (no MACs), bit-exact to ONNX Runtime
on both presets; Split as one strided slice per output, Expand and Tile staged through the fp32
accumulator (so any fp32 value moves exactly on the bf16 preset); forms the flow does not take
stay on the host, named."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nm_tvm
from nm_tvm.frontend import ModelLoadError
from nm_tvm.target.backend.verify_gemm_only import NotGemmOnlyError
from nm_tvm.target.codegen import CodegenError, broadcast_program, tile_program
from nm_tvm.target.hardware import load_preset
from nm_tvm.validate import onnx_runtime_outputs

PRESETS = ["nm/fp32-16x16", "nm/bf16-32x32"]


def _model(op, x_shape, second, n_out=1, opset=18, **attrs):
    inputs, inits = ["x"], []
    if second is not None:
        inputs.append("k")
        inits.append(numpy_helper.from_array(np.array(second, np.int64), "k"))
    outs = [f"y{i}" for i in range(n_out)]
    rank = max(len(x_shape), len(second) if op == "Expand" else 0)
    graph = helper.make_graph(
        [helper.make_node(op, inputs, outs, name="mv", **attrs)], "mv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [f"d{i}" for i in range(rank)])
         for o in outs], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    onnx.checker.check_model(proto)
    return proto


def _check(proto, target, rng, x_shape, bf16_exact=True):
    x = rng.standard_normal(x_shape).astype(np.float32)
    if not bf16_exact:  # a strided slice goes through the scratchpad (operand dtype)
        x = (x.view(np.uint32) & 0xFFFF0000).view(np.float32)
    compiled = nm_tvm.compile(proto, target=target, strict=True)
    got = compiled.run({"x": x})
    ref = onnx_runtime_outputs(proto, {"x": x})
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        np.testing.assert_array_equal(g, r)
    assert compiled.stats.macs == 0
    return compiled


@pytest.mark.parametrize("target", PRESETS)
@pytest.mark.parametrize("x_shape, split, attrs, n_out", [
    ((2, 7, 5), [2, 5], dict(axis=1), 2),
    ((6, 3), [1, 2, 3], dict(), 3),                           # default axis 0
    ((2, 3, 40), [17, 23], dict(axis=-1), 2),                 # more than DIM columns
    ((4, 7), None, dict(axis=1, num_outputs=4), 4),           # uneven: 2, 2, 2, 1
    ((4, 6), None, dict(axis=1, num_outputs=3), 3),
])
def test_split_is_one_slice_per_output(rng, target, x_shape, split, attrs, n_out):
    proto = _model("Split", x_shape, split, n_out=n_out, **attrs)
    compiled = _check(proto, target, rng, x_shape, bf16_exact=False)
    assert len(compiled.layers) == n_out
    assert all(layer["node"] == "mv" for layer in compiled.layers)


@pytest.mark.parametrize("target", PRESETS)
@pytest.mark.parametrize("x_shape, shape", [
    ((3, 1), [2, 3, 4]),          # new leading axis and a broadcast one
    ((1, 4, 1, 5), [3, 4, 2, 5]),
    ((2, 1), [2, 37]),            # wider than one DMA block
    ((3, 4), [1, 1]),             # Expand may keep the input shape
])
def test_expand_is_a_broadcast_view(rng, target, x_shape, shape):
    compiled = _check(_model("Expand", x_shape, shape), target, rng, x_shape)
    assert [layer["name"] for layer in compiled.layers] == ["mv"] or x_shape == tuple(
        np.broadcast_shapes(x_shape, shape))


@pytest.mark.parametrize("target", PRESETS)
@pytest.mark.parametrize("x_shape, repeats", [
    ((3, 1, 2), [2, 3, 4]),
    ((2, 5), [1, 3]),
    ((2, 3, 4, 5), [2, 1, 1, 2]),
    ((4, 20), [3, 2]),
])
def test_tile_is_a_repeat_view(rng, target, x_shape, repeats):
    compiled = _check(_model("Tile", x_shape, repeats), target, rng, x_shape)
    assert [layer["name"] for layer in compiled.layers] == ["mv"]


def test_run_time_repeats_are_refused_by_node_name():
    """Repeats (like Expand's shape and Split's sizes) must be constants: given as a graph
    input (int64 inputs load) the Tile's output shape depends on run-time values, refused at
    load by node name."""
    graph = helper.make_graph(
        [helper.make_node("Tile", ["x", "r"], ["y"], name="mv")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("r", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    with pytest.raises(ModelLoadError, match="node 'mv' produces a tensor of shape "
                                             "\\(tile_dim_0, tile_dim_1\\) that depends on run-time"):
        nm_tvm.compile(proto, target="nm/fp32-16x16", strict=True)


def test_codegen_rejects_bad_views():
    hw = load_preset("fp32-16x16")
    with pytest.raises(CodegenError, match=r"\[2, 3\] does not broadcast to \[4, 3\]"):
        broadcast_program(hw, 0, (2, 3), (4, 3))
    with pytest.raises(CodegenError, match=r"tile: repeats \[2\] for an input of shape \[2, 3\]"):
        tile_program(hw, 0, (2, 3), [2])
    with pytest.raises(CodegenError, match="tile: repeats"):
        tile_program(hw, 0, (2, 3), [1, 0])


@pytest.mark.parametrize("target", PRESETS)
def test_empty_split_part_is_dropped_by_concat(rng, target):
    """A Split part of size 0 (rotary embedding with nothing left unrotated) is an empty
    constant; Concat takes it with no region of its own."""
    graph = helper.make_graph(
        [helper.make_node("Split", ["x", "k"], ["a", "b"], name="mv", axis=1),
         helper.make_node("Concat", ["b", "a"], ["y"], name="cat", axis=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
        [numpy_helper.from_array(np.array([5, 0], np.int64), "k")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    _check(proto, target, rng, (2, 5), bf16_exact=False)
