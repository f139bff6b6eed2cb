"""ConvTranspose on the accelerator: a sub-pixel conv2d (im2col + LOOP_GEMM) and a depth-to-space
DMA view, compared with ONNX Runtime on both presets, with and without bias / ReLU / residual;
the MAC count is the sub-pixel GEMMs'; forms the flow does not take are refused by name."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nm_tvm
from nm_tvm.frontend import ModelLoadError
from nm_tvm.target.backend.verify_gemm_only import NotGemmOnlyError
from nm_tvm.target.codegen import CodegenError, ConvTranspose2dAttrs, conv2d_transpose_program
from nm_tvm.target.hardware import load_preset
from nm_tvm.validate import onnx_runtime_outputs

PRESETS = ["nm/fp32-16x16", "nm/bf16-32x32"]


def _bf16(a: np.ndarray) -> np.ndarray:
    """bf16-representable values: the bf16 preset's operand rounding leaves them as they are,
    so both presets must match ORT to fp32 summation-order rounding."""
    return (a.astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)


def _conv_t(x_shape, w_shape, bias=True, relu=False, residual=False, opset=17, rng=None,
            **attrs):
    rng = rng or np.random.default_rng(0)
    inits = [numpy_helper.from_array(_bf16(rng.standard_normal(w_shape)), "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(
            _bf16(rng.standard_normal(w_shape[1] * attrs.get("group", 1))), "b"))
        inputs.append("b")
    nodes = [helper.make_node("ConvTranspose", inputs, ["t"], name="up", **attrs)]
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))]
    last = "t"
    if residual:
        nodes.append(helper.make_node("Add", ["t", "r"], ["s"], name="skip"))
        last = "s"
    if relu:
        nodes.append(helper.make_node("Relu", [last], ["y"], name="act"))
        last = "y"
    graph = helper.make_graph(nodes, "convt", graph_inputs,
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT,
                                                            [f"d{i}" for i in range(len(x_shape))])],
                              inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    if residual:  # the residual's shape is the ConvTranspose output's
        shape = onnx.shape_inference.infer_shapes(proto).graph.value_info
        t_shape = [d.dim_value for d in next(v for v in shape if v.name == "t")
                   .type.tensor_type.shape.dim]
        proto.graph.input.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, t_shape))
    onnx.checker.check_model(proto)
    return proto


def _run_and_compare(proto, target, rng):
    inputs = {i.name: _bf16(rng.standard_normal([d.dim_value for d in
                                                 i.type.tensor_type.shape.dim]))
              for i in proto.graph.input}
    compiled = nm_tvm.compile(proto, target=target, strict=True)
    got = compiled.run(inputs)
    ref = onnx_runtime_outputs(proto, inputs)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=0, atol=2e-6 * max(1.0, np.abs(r).max()))
    return compiled


CASES = [
    # (x shape, w shape [Cin, Cout/g, kh, kw], attrs)
    ((1, 8, 5, 6), (8, 4, 2, 2), dict(strides=[2, 2])),                  # OCR-detector upsample
    ((1, 6, 4, 4), (6, 3, 4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1])),  # ViT decoder
    ((2, 3, 4, 5), (3, 2, 3, 3), dict()),                                # stride 1: no view
    ((1, 3, 3, 4), (3, 2, 3, 3), dict(strides=[3, 2], pads=[1, 2, 1, 2])),
    ((1, 2, 3, 3), (2, 2, 3, 3), dict(strides=[3, 2], output_padding=[1, 1])),
    ((1, 1, 3, 3), (1, 2, 3, 3), dict(strides=[3, 2], output_shape=[10, 8])),  # end pads < 0
    ((1, 2, 4, 3), (2, 2, 3, 2), dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    ((1, 2, 4, 3), (2, 2, 3, 3), dict(strides=[2, 3], auto_pad="SAME_LOWER")),
    ((1, 2, 3, 3), (2, 2, 2, 2), dict(dilations=[2, 2])),                # dilated sub-kernel
    ((1, 2, 3, 4), (2, 2, 3, 3), dict(dilations=[2, 1], strides=[3, 2])),  # zero-weight taps
    ((1, 2, 3, 4), (2, 2, 3, 3), dict(dilations=[2, 3], strides=[2, 3])),  # zero phases
    ((3, 4, 3, 3), (4, 1, 3, 3), dict(group=2, strides=[2, 2], pads=[0, 1, 1, 0])),
    ((1, 6, 3, 3), (6, 1, 2, 2), dict(group=6, strides=[2, 2])),           # depthwise
    ((1, 40, 9, 20), (40, 20, 2, 2), dict(strides=[2, 2])),                # > DIM channels
]


@pytest.mark.parametrize("target", PRESETS)
@pytest.mark.parametrize("x_shape, w_shape, attrs", CASES)
def test_conv_transpose_matches_onnx_runtime(rng, target, x_shape, w_shape, attrs):
    compiled = _run_and_compare(_conv_t(x_shape, w_shape, rng=rng, **attrs), target, rng)
    assert [layer["name"] for layer in compiled.layers] == ["up"]


@pytest.mark.parametrize("target", PRESETS)
@pytest.mark.parametrize("attrs", [dict(strides=[2]), dict(strides=[3], pads=[1, 2],
                                                           output_padding=[2], dilations=[2])])
def test_conv_transpose_1d_is_the_2d_program_on_one_row(rng, target, attrs):
    _run_and_compare(_conv_t((2, 4, 7), (4, 3, 3), rng=rng, **attrs), target, rng)


@pytest.mark.parametrize("target", PRESETS)
@pytest.mark.parametrize("bias, relu, residual, attrs", [
    (False, False, False, dict(strides=[2, 2])),
    (True, True, False, dict(strides=[2, 2], pads=[1, 1, 1, 1])),
    (True, True, True, dict(strides=[2, 2], pads=[1, 1, 1, 1])),  # residual moved into Y
    (False, False, True, dict(strides=[3, 2], output_padding=[1, 0])),
    (True, True, True, dict()),                                    # stride 1: D is direct
])
def test_conv_transpose_epilogues_fuse(rng, target, bias, relu, residual, attrs):
    proto = _conv_t((1, 4, 4, 5), (4, 3, 4, 4), bias=bias, relu=relu, residual=residual,
                    rng=rng, **attrs)
    compiled = _run_and_compare(proto, target, rng)
    assert len(compiled.layers) == 1  # bias, residual and ReLU in the GEMM


@pytest.mark.parametrize("kernel, stride, pads, taps", [
    (2, 2, 0, 1),   # kernel = stride: a 1x1 conv, each output reads one product per channel
    (4, 2, 1, 2),   # every tap of the 2x2 sub-pixel kernel is used
    (3, 2, 1, 2),   # one phase has 2 taps, the other 1 (a zero weight)
])
def test_macs_are_the_sub_pixel_gemms(kernel, stride, pads, taps):
    c_in, c_out, h = 8, 4, 6
    proto = _conv_t((1, c_in, h, h), (c_in, c_out, kernel, kernel), strides=[stride] * 2,
                    pads=[pads] * 4)
    compiled = nm_tvm.compile(proto, target="nm/fp32-16x16", strict=True)
    compiled.run({"x": np.ones((1, c_in, h, h), np.float32)})
    out = stride * (h - 1) + kernel - 2 * pads
    rows = (out - 1 + pads) // stride - pads // stride + 1  # input-grid rows Y computes
    assert compiled.stats.macs == rows * rows * c_in * taps * taps * c_out * stride * stride
    useful = out * out * c_out * c_in * (kernel // stride) ** 2
    if kernel % stride == 0 and pads == 0:
        assert compiled.stats.macs == useful


def test_codegen_rejects_bad_shapes():
    hw = load_preset("fp32-16x16")
    attrs = ConvTranspose2dAttrs((1, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(CodegenError, match="does not fit 3 input channels"):
        conv2d_transpose_program(hw, 0, (1, 3, 4, 4), np.ones((2, 2, 3, 3), np.float32), attrs)
    with pytest.raises(CodegenError, match="an axis of 2 gives 0 outputs"):
        conv2d_transpose_program(hw, 0, (1, 2, 2, 2), np.ones((2, 2, 1, 1), np.float32),
                                 ConvTranspose2dAttrs((1, 1), (1, 0, 1, 0), (1, 1)))


def test_non_constant_weight_stays_on_the_host_by_name():
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    with pytest.raises(NotGemmOnlyError, match=r"conv2d_transpose \(node 'up'\)"):
        nm_tvm.compile(proto, target="nm/fp32-16x16", strict=True)


def test_three_d_stays_on_the_host_by_name():
    proto = _conv_t((1, 2, 3, 3, 3), (2, 2, 2, 2, 2), bias=False, strides=[2, 2, 2])
    with pytest.raises(NotGemmOnlyError, match=r"conv3d_transpose \(node 'up'\)"):
        nm_tvm.compile(proto, target="nm/fp32-16x16", strict=True)


def test_output_shape_with_pads_is_refused_by_node():
    proto = _conv_t((1, 1, 3, 3), (1, 2, 3, 3), strides=[3, 2], pads=[0, 0, 0, 0],
                    output_shape=[10, 8])
    with pytest.raises(ModelLoadError, match="ConvTranspose node 'up': both output_shape and pads"):
        nm_tvm.compile(proto, target="nm/fp32-16x16")
