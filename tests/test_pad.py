"""Pad on the accelerator, bit-exact to ORT on both presets: constant (border slabs as
broadcast views of the value, the input copied into place) and edge / reflect / wrap (runs of
evenly spaced source indices as strided views); cropping stays on the host, named."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nm_tvm
from nm_tvm.target.backend.verify_gemm_only import NotGemmOnlyError
from nm_tvm.target.codegen import CodegenError, pad_program
from nm_tvm.target.hardware import load_preset
from nm_tvm.validate import onnx_runtime_outputs


def _pad_model(x_shape, pads, value=None, axes=None, mode="constant", opset=18):
    inputs, inits = ["x", "pads"], [numpy_helper.from_array(np.array(pads, np.int64), "pads")]
    if value is not None or axes is not None:
        inputs.append("value" if value is not None else "")
        if value is not None:
            inits.append(numpy_helper.from_array(np.array(value, np.float32), "value"))
    if axes is not None:
        inputs.append("axes")
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
    graph = helper.make_graph(
        [helper.make_node("Pad", inputs, ["y"], mode=mode, name="pad")], "pad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=9)
    return onnx.shape_inference.infer_shapes(proto)


@pytest.mark.parametrize("target", ["nm/fp32-16x16", "nm/bf16-32x32"])
@pytest.mark.parametrize("x_shape, kwargs", [
    ((1, 3, 5, 6), dict(pads=[0, 0, 1, 2, 0, 0, 3, 1], value=0.7)),   # NCHW spatial, uneven
    ((2, 37), dict(pads=[3, 0, 1, 19])),                               # default value 0, wide
    ((1, 2, 4, 4), dict(pads=[2, 1, 0, 3], axes=[3, 1], value=-2.5)),  # axes input (opset 18)
    ((3, 4), dict(pads=[0, 0, 0, 0], value=9.0)),                      # nothing to pad
])
def test_constant_pad_matches_onnx_runtime(target, x_shape, kwargs, rng):
    proto = _pad_model(x_shape, **kwargs)
    compiled = nm_tvm.compile(proto, target=target)
    assert not compiled.host_ops
    x = {"x": (rng.standard_normal(x_shape) * 1e3).astype(np.float32)}  # not bf16-exact
    (ref,) = onnx_runtime_outputs(proto, x)
    (out,) = compiled.run(x)
    np.testing.assert_array_equal(out, ref)  # exact on bf16 too: staged through fp32
    if any(kwargs["pads"]):
        assert [layer["kind"] for layer in compiled.layers] == ["nm.pad"]
        writes = compiled.stats.totals["dram_write_bytes"]
        assert writes == ref.size * 4  # every element written once: border + interior


@pytest.mark.parametrize("target", ["nm/fp32-16x16", "nm/bf16-32x32"])
@pytest.mark.parametrize("mode", ["edge", "reflect", "wrap"])
@pytest.mark.parametrize("x_shape, pads", [
    ((1, 576), [0, 0, 0, 64]),                   # silero-vad's STFT padding (reflect, right)
    ((1, 3, 5, 6), [0, 0, 2, 1, 0, 0, 1, 3]),    # NCHW spatial, uneven: corners combine runs
    ((2, 7, 3), [1, 2, 0, 0, 3, 2]),             # every axis, 3-D
])
def test_border_pad_modes_match_onnx_runtime(target, mode, x_shape, pads, rng):
    proto = _pad_model(x_shape, pads, mode=mode)
    compiled = nm_tvm.compile(proto, target=target)
    assert [layer["kind"] for layer in compiled.layers] == ["nm.pad"]
    x = {"x": (rng.standard_normal(x_shape) * 1e3).astype(np.float32)}
    (ref,) = onnx_runtime_outputs(proto, x)
    (out,) = compiled.run(x)
    np.testing.assert_array_equal(out, ref)
    assert compiled.stats.totals["dram_write_bytes"] == ref.size * 4  # each element once


@pytest.mark.parametrize("mode", ["edge", "reflect", "wrap"])
def test_border_pads_wider_than_the_axis_follow_onnx_reference(mode):
    """ONNX's reference is np.pad, which reflects / wraps again past the axis's length."""
    hw = load_preset("fp32-16x16")
    call = pad_program(hw, 0, (2, 3), [0, 0, 7, 5], mode={"edge": "replicate", "wrap": "circular"}
                       .get(mode, mode))
    assert call.out_shape == (2, 15)
    proto = _pad_model((2, 3), [0, 7, 0, 5], mode=mode)
    x = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    want = np.pad(x["x"], ((0, 0), (7, 5)), mode=mode)
    np.testing.assert_array_equal(nm_tvm.compile(proto).run(x)[0], want)


@pytest.mark.parametrize("kwargs, named", [
    (dict(pads=[0, -1, 0, 1]), "pad"),   # a negative pad crops
    (dict(pads=[0, -1, 0, 1], mode="reflect"), "pad"),
])
def test_other_pad_forms_stay_on_the_host_named(kwargs, named, rng):
    proto = _pad_model((3, 5), **kwargs)
    with pytest.raises((NotGemmOnlyError, Exception), match=f"node '{named}'"):
        nm_tvm.compile(proto)
    compiled = nm_tvm.compile(proto, strict=False)
    x = {"x": rng.standard_normal((3, 5)).astype(np.float32)}
    np.testing.assert_array_equal(compiled.run(x)[0], onnx_runtime_outputs(proto, x)[0])


def test_pad_program_checks_its_widths():
    hw = load_preset("fp32-16x16")
    with pytest.raises(CodegenError, match="two non-negative widths per axis"):
        pad_program(hw, 0, (2, 3), [1, 1], 0.0)
    with pytest.raises(CodegenError, match="two non-negative widths per axis"):
        pad_program(hw, 0, (2, 3), [0, 0, -1, 1], 0.0)
    with pytest.raises(CodegenError, match="mode 'symmetric'"):
        pad_program(hw, 0, (2, 3), [0, 0, 1, 1], mode="symmetric")
