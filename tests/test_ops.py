"""Single operators of the first operator set, each compiled GEMM-only and checked against ORT."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nm_tvm
from nm_tvm.models import analytic_macs
from nm_tvm.validate import onnx_runtime_outputs


def _model(nodes, inputs, output_shape, inits=()):
    graph = helper.make_graph(
        nodes, "op",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        [numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
         for k, v in inits])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(proto)
    return proto


def _check(proto, inputs, target="nm/fp32-16x16", macs=True):
    compiled = nm_tvm.compile(proto, target=target)
    assert compiled.host_ops == []
    sim = compiled.run(inputs)[0]
    ref = onnx_runtime_outputs(proto, inputs)[0]
    assert sim.shape == ref.shape
    np.testing.assert_allclose(sim, ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ref).max()))
    if macs:
        assert compiled.stats.macs == analytic_macs(proto)
    return compiled


@pytest.mark.parametrize("stride, pad, dilation, bias", [
    (1, 1, 1, True), (2, 1, 1, False), (2, 0, 1, True), (1, 2, 2, True), (3, 1, 1, True)])
def test_conv2d(rng, stride, pad, dilation, bias):
    w = rng.standard_normal((20, 5, 3, 3))
    inits = [("w", w)] + ([("b", rng.standard_normal(20))] if bias else [])
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"],
                            kernel_shape=[3, 3], strides=[stride] * 2, pads=[pad] * 4,
                            dilations=[dilation] * 2)
    size = 11
    out = (size + 2 * pad - dilation * 2 - 1) // stride + 1
    proto = _model([node], {"x": [2, 5, size, size]}, [2, 20, out, out], inits)
    _check(proto, {"x": rng.standard_normal((2, 5, size, size)).astype(np.float32)})


@pytest.mark.parametrize("stride, pads, dilation, groups, relu", [
    (1, (1, 1), 1, 1, True), (128, (0, 0), 1, 1, False),   # silero-vad's STFT: kernel 256
    (2, (2, 1), 2, 2, True), (1, (0, 3), 1, 6, False)])    # grouped, depthwise
def test_conv1d_is_the_2d_program_on_one_row(rng, stride, pads, dilation, groups, relu):
    """1-D Conv (audio models) as the conv2d program over a height-1 image, bias and ReLU
    fused."""
    kernel = 256 if stride == 128 else 3
    c_in, c_out, length = 6, 12, 576
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if relu else "y"],
                              kernel_shape=[kernel], strides=[stride], pads=list(pads),
                              dilations=[dilation], group=groups)]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    out = (length + sum(pads) - dilation * (kernel - 1) - 1) // stride + 1
    proto = _model(nodes, {"x": [1, c_in, length]}, [1, c_out, out],
                   [("w", rng.standard_normal((c_out, c_in // groups, kernel))),
                    ("b", rng.standard_normal(c_out))])
    compiled = _check(proto, {"x": rng.standard_normal((1, c_in, length)).astype(np.float32)})
    assert [layer["kind"] for layer in compiled.layers] == \
        ["nm.conv1d_bias_relu" if relu else "nm.conv1d_bias"]


def test_conv2d_1x1_reads_input_in_place(rng):
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])
    proto = _model([node], {"x": [1, 40, 6, 7]}, [1, 24, 6, 7],
                   [("w", rng.standard_normal((24, 40, 1, 1)))])
    compiled = _check(proto, {"x": rng.standard_normal((1, 40, 6, 7)).astype(np.float32)})
    assert compiled.layers[0]["im2col"] is False


def test_gemm_trans_b_with_bias(rng):
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    proto = _model([node], {"x": [37, 70]}, [37, 33],
                   [("w", rng.standard_normal((33, 70))), ("b", rng.standard_normal(33))])
    _check(proto, {"x": rng.standard_normal((37, 70)).astype(np.float32)})


def test_batched_matmul_constant_rhs(rng):
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    proto = _model([node], {"x": [3, 5, 40]}, [3, 5, 18], [("w", rng.standard_normal((40, 18)))])
    _check(proto, {"x": rng.standard_normal((3, 5, 40)).astype(np.float32)})


def test_batched_matmul_two_activations_broadcast(rng):
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    proto = _model([node], {"a": [2, 3, 9, 20], "b": [3, 20, 17]}, [2, 3, 9, 17])
    _check(proto, {"a": rng.standard_normal((2, 3, 9, 20)).astype(np.float32),
                   "b": rng.standard_normal((3, 20, 17)).astype(np.float32)})


def test_residual_add_and_relu(rng):
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    proto = _model(nodes, {"a": [3, 7, 11], "b": [3, 7, 11]}, [3, 7, 11])
    _check(proto, {"a": rng.standard_normal((3, 7, 11)).astype(np.float32),
                   "b": rng.standard_normal((3, 7, 11)).astype(np.float32)})


def test_add_broadcast_constant_then_relu(rng):
    nodes = [helper.make_node("Add", ["a", "c"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    proto = _model(nodes, {"a": [2, 4, 5, 6]}, [2, 4, 5, 6], [("c", rng.standard_normal((4, 1, 6)))])
    _check(proto, {"a": rng.standard_normal((2, 4, 5, 6)).astype(np.float32)})


def test_relu_alone_large_tensor(rng):
    proto = _model([helper.make_node("Relu", ["a"], ["y"])], {"a": [1, 64, 33, 33]},
                   [1, 64, 33, 33])
    _check(proto, {"a": rng.standard_normal((1, 64, 33, 33)).astype(np.float32)})


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 1), (3, 2)])
def test_average_pool(rng, kernel, stride):
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[kernel] * 2,
                            strides=[stride] * 2)
    out = (9 - kernel) // stride + 1
    proto = _model([node], {"x": [2, 3, 9, 9]}, [2, 3, out, out])
    _check(proto, {"x": rng.standard_normal((2, 3, 9, 9)).astype(np.float32)})


def test_global_average_pool_and_flatten(rng):
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"], axis=1)]
    proto = _model(nodes, {"x": [2, 24, 7, 5]}, [2, 24])
    _check(proto, {"x": rng.standard_normal((2, 24, 7, 5)).astype(np.float32)})


@pytest.mark.parametrize("shape, perm", [((5, 37), (1, 0)), ((2, 3, 4, 5), (0, 2, 3, 1)),
                                         ((3, 20, 6), (2, 0, 1))])
def test_transpose_as_data_movement(rng, shape, perm):
    out = [shape[p] for p in perm]
    proto = _model([helper.make_node("Transpose", ["x"], ["y"], perm=list(perm))],
                   {"x": list(shape)}, out)
    compiled = _check(proto, {"x": rng.standard_normal(shape).astype(np.float32)}, macs=False)
    assert compiled.stats.macs == 0
    assert compiled.stats.totals["dram_write_bytes"] == 4 * int(np.prod(shape))


def test_reshape_is_a_view(rng):
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("MatMul", ["r", "w"], ["y"])]
    proto = _model(nodes, {"x": [2, 3, 10]}, [6, 4], [("w", rng.standard_normal((10, 4))),
                                                     ("shape", np.array([6, 10], np.int64))])
    _check(proto, {"x": rng.standard_normal((2, 3, 10)).astype(np.float32)})


@pytest.mark.parametrize("groups, c_in, c_out, stride, pad", [
    (2, 6, 4, 1, 1), (6, 6, 6, 1, 1), (6, 6, 12, 2, 1), (4, 8, 8, 1, 0)])
def test_grouped_and_depthwise_conv(rng, groups, c_in, c_out, stride, pad):
    k = 3 if pad else 1
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k, k], group=groups,
                            strides=[stride] * 2, pads=[pad] * 4)
    out = (9 + 2 * pad - k) // stride + 1
    proto = _model([node], {"x": [2, c_in, 9, 9]}, [2, c_out, out, out],
                   [("w", rng.standard_normal((c_out, c_in // groups, k, k))),
                    ("b", rng.standard_normal(c_out))])
    _check(proto, {"x": rng.standard_normal((2, c_in, 9, 9)).astype(np.float32)})


@pytest.mark.parametrize("kernel, stride, pad, dilation", [
    (3, 2, 1, 1), (2, 2, 0, 1), (3, 1, 1, 1), (3, 2, 0, 2), (1, 1, 0, 1)])
def test_max_pool(rng, kernel, stride, pad, dilation):
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[kernel] * 2,
                            strides=[stride] * 2, pads=[pad] * 4, dilations=[dilation] * 2)
    size = 11
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    proto = _model([node], {"x": [2, 3, size, size]}, [2, 3, out, out])
    # All-negative inputs: -inf padding (not zero) must win the border windows.
    x = -np.abs(rng.standard_normal((2, 3, size, size))).astype(np.float32) - 1
    compiled = _check(proto, {"x": x}, macs=False)
    assert compiled.stats.macs == 0
    # One VEC max per further window position and output tile: k*k - 1 at least.
    n_vec = compiled.stats.totals["n_vec"]
    assert n_vec == 0 if kernel == 1 else n_vec >= kernel * kernel - 1


def test_concat_and_slice_as_data_movement(rng):
    nodes = [helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
             helper.make_node("Slice", ["c", "starts", "ends", "axes", "steps"], ["y"])]
    proto = _model(nodes, {"a": [2, 3, 5, 4], "b": [2, 6, 5, 4]}, [2, 4, 5, 3],
                   [("starts", np.array([1, -3], np.int64)), ("ends", np.array([9, 4], np.int64)),
                    ("axes", np.array([1, 3], np.int64)), ("steps", np.array([2, 1], np.int64))])
    compiled = _check(proto, {"a": rng.standard_normal((2, 3, 5, 4)).astype(np.float32),
                              "b": rng.standard_normal((2, 6, 5, 4)).astype(np.float32)},
                      macs=False)
    assert [layer["kind"] for layer in compiled.layers] == ["nm.concat", "nm.strided_slice"]


@pytest.mark.parametrize("op", ["Max", "Min", "Sum", "Mean"])
def test_variadic_elementwise_with_broadcast(rng, op):
    """TVM imports these as stack + reduce; they run as pairwise accelerator ops."""
    shapes = {"a": [2, 3, 4], "b": [3, 4], "c": [2, 1, 4]}
    proto = _model([helper.make_node(op, ["a", "b", "c"], ["y"])], shapes, [2, 3, 4])
    compiled = _check(proto, {k: rng.standard_normal(s).astype(np.float32)
                              for k, s in shapes.items()}, macs=False)
    assert len(compiled.layers) == 2  # two pairwise steps (Mean's 1/n rides on the second)


@pytest.mark.parametrize("include_pad", [0, 1])
@pytest.mark.parametrize("kernel, stride, pads", [(3, 1, [1, 1, 1, 1]), (3, 2, [1, 0, 2, 1]),
                                                  (2, 2, [0, 1, 0, 1])])
def test_padded_average_pool(rng, include_pad, kernel, stride, pads):
    """Padded pooling runs as a depthwise conv (1/k^2 weights); without count_include_pad each
    output is rescaled by k^2 / (real inputs in its window)."""
    size = 7
    oh = (size + pads[0] + pads[2] - kernel) // stride + 1
    ow = (size + pads[1] + pads[3] - kernel) // stride + 1
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[kernel] * 2,
                            strides=[stride] * 2, pads=pads, count_include_pad=include_pad)
    proto = _model([node], {"x": [2, 3, size, size]}, [2, 3, oh, ow])
    _check(proto, {"x": rng.standard_normal((2, 3, size, size)).astype(np.float32)}, macs=False)
