"""Nearest Resize on the accelerator (one DMA view, bit-exact to ORT) and the forms that stay on
the host: the per-axis index maps are computed as ONNX / TVM define them, and only integer
repeats and strides are taken."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nm_tvm
from nm_tvm.target.backend.operators import nearest_source_index, strided_axis_map
from nm_tvm.target.backend.verify_gemm_only import NotGemmOnlyError
from nm_tvm.target.codegen import CodegenError, resample_program
from nm_tvm.target.hardware import load_preset
from nm_tvm.validate import onnx_runtime_outputs


def _resize(x_shape, scales=None, sizes=None, **attrs):
    inputs, inits = ["x", ""], []
    if scales is not None:
        inputs.append("scales")
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
    else:
        inputs += ["", "sizes"]
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
    graph = helper.make_graph(
        [helper.make_node("Resize", inputs, ["y"], name="up", **attrs)], "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    onnx.checker.check_model(proto)
    return proto


@pytest.mark.parametrize("target", ["nm/fp32-16x16", "nm/bf16-32x32"])
@pytest.mark.parametrize("x_shape, kwargs", [
    ((1, 3, 4, 5), dict(scales=[1, 1, 2, 2], coordinate_transformation_mode="asymmetric",
                        nearest_mode="floor")),                     # PyTorch / YOLO upsampling
    ((2, 3, 5, 7), dict(scales=[1, 1, 2, 3])),                      # ONNX defaults, unequal scales
    ((1, 2, 4, 4), dict(scales=[1, 1, 2, 2], coordinate_transformation_mode="half_pixel",
                        nearest_mode="round_prefer_ceil")),
    ((1, 2, 6, 9), dict(sizes=[1, 2, 3, 3], coordinate_transformation_mode="asymmetric")),  # stride
    ((1, 2, 6, 4), dict(sizes=[1, 2, 2, 8], coordinate_transformation_mode="align_corners")),
    ((1, 40, 3, 37), dict(scales=[1, 1, 4, 1])),  # planes wider than one DMA block
])
def test_nearest_resize_is_bit_exact(rng, target, x_shape, kwargs):
    proto = _resize(list(x_shape), mode="nearest", **kwargs)
    x = rng.standard_normal(x_shape).astype(np.float32)
    if target.startswith("nm/bf16"):
        x = x.astype(np.float16).astype(np.float32)  # bf16-representable: a DMA moves it as is
        x = (x.view(np.uint32) & 0xFFFF0000).view(np.float32)
    compiled = nm_tvm.compile(proto, target=target, strict=True)
    got = compiled.run({"x": x})[0]
    ref = onnx_runtime_outputs(proto, {"x": x})[0]
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    assert compiled.stats.macs == 0
    assert [layer["name"] for layer in compiled.layers] == ["up"]


@pytest.mark.parametrize("kwargs, why", [
    (dict(scales=[1, 1, 2, 2], mode="linear"), "bilinear is arithmetic"),
    (dict(scales=[1, 1, 0.5, 0.5], mode="nearest"), "5 -> 2 is no integer ratio"),
    (dict(scales=[1, 1, 2, 2], mode="nearest", coordinate_transformation_mode="asymmetric",
          nearest_mode="round_prefer_ceil"), "index map 0,1,1,2,2,...: no repeat from 0"),
])
def test_other_resizes_stay_on_the_host_by_name(rng, kwargs, why):
    proto = _resize([1, 3, 4, 5], **kwargs)
    with pytest.raises(NotGemmOnlyError, match=r"resize2d \(node 'up'\)"):
        nm_tvm.compile(proto, target="nm/fp32-16x16", strict=True)
    compiled = nm_tvm.compile(proto, target="nm/fp32-16x16", strict=False)
    assert compiled.host_ops == ["node 'up':relax.image.resize2d"]


def test_index_maps():
    assert list(nearest_source_index(3, 6, "asymmetric", "floor")) == [0, 0, 1, 1, 2, 2]
    assert list(nearest_source_index(3, 6, "half_pixel", "round_prefer_floor")) == [0, 0, 1, 1,
                                                                                    2, 2]
    assert list(nearest_source_index(6, 3, "asymmetric", "")) == [0, 2, 4]
    assert list(nearest_source_index(6, 3, "half_pixel", "round_prefer_floor")) == [0, 2, 4]
    assert list(nearest_source_index(6, 3, "half_pixel", "round_prefer_ceil")) == [1, 3, 5]
    assert nearest_source_index(6, 3, "tf_crop_and_resize", "") is None
    assert strided_axis_map(np.array([0, 0, 1, 1, 2, 2])) == (2, 1, 0)
    assert strided_axis_map(np.array([1, 3, 5])) == (1, 2, 1)
    assert strided_axis_map(np.array([4])) == (1, 1, 4)
    assert strided_axis_map(np.array([0, 1, 1, 2, 2, 3])) is None      # shifted repeats
    assert strided_axis_map(np.array([0, 0, 2, 2])) is None            # repeat and stride
    assert strided_axis_map(np.array([0, 0, 0, 1, 1])) is None         # uneven repeats


def test_resample_rejects_a_map_that_leaves_the_input():
    hw = load_preset("fp32-16x16")
    with pytest.raises(CodegenError, match="does not take an axis of 4 to 3"):
        resample_program(hw, 0, (1, 1, 4, 4), (1, 1, 3, 4), [(1, 1, 0)] * 2 + [(1, 2, 0),
                                                                              (1, 1, 0)])
    with pytest.raises(CodegenError, match="2 axis maps"):
        resample_program(hw, 0, (1, 1, 4, 4), (1, 1, 4, 4), [(1, 1, 0)] * 2)


@pytest.mark.parametrize("x_shape, kwargs, message", [
    ([1, 1, 4, 4], dict(scales=[1, 1, 2, 2], mode="linear",
                        coordinate_transformation_mode="half_pixel_symmetric"),
     "Resize node 'up': coordinate_transformation_mode 'half_pixel_symmetric' is not implemented"),
    ([1, 1, 2, 4], dict(sizes=[1, 1, 1, 2], mode="linear",
                        coordinate_transformation_mode="align_corners"),
     "Resize node 'up': align_corners to an output axis of size 1"),
])
def test_resizes_tvm_cannot_build_are_refused_by_node(x_shape, kwargs, message):
    """Forms TVM's resize2d fails on deep in legalization are refused at load, by name."""
    from nm_tvm.frontend import ModelLoadError

    with pytest.raises(ModelLoadError, match=message):
        nm_tvm.compile(_resize(x_shape, **kwargs), target="nm/fp32-16x16", strict=False)
