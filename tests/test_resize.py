"""Resize on the accelerator: an integer-ratio nearest Resize as one DMA view (bit-exact to
ORT), every other form as one GEMM per resized axis with ONNX's own interpolation matrices
(nm_tvm/resize_matrices.py), and the forms that are refused, by node and attribute.

Tolerances are the project's own: fp32 max |sim - ORT| <= 1e-5 * max |ORT| + 1e-6
(tests/test_differential.py); nearest through 0/1 matrices is exact; bf16 bilinear within the
operand-rounding bound of two GEMMs."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import nm_tvm
from nm_tvm import resize_matrices
from nm_tvm.frontend import ModelLoadError
from nm_tvm.resize_matrices import (ResizeFormError, nearest_source_index, separable_resize,
                                    strided_axis_map)
from nm_tvm.target.backend.verify_gemm_only import NotGemmOnlyError
from nm_tvm.target.codegen import CodegenError, resample_program
from nm_tvm.target.hardware import load_preset
from nm_tvm.validate import onnx_runtime_outputs
from test_differential import ATOL, RTOL
from test_simulator import bf16

FP32, BF16 = "nm/fp32-16x16", "nm/bf16-32x32"


def _resize(x_shape, scales=None, sizes=None, roi=None, opset=13, op="Resize", **attrs):
    """A one-node Resize (or Upsample / Resize-10, which take scales as their second input)
    named 'up', with constant roi / scales / sizes."""
    inits = []

    def constant(name, value, dtype):
        if value is None:
            return ""
        inits.append(numpy_helper.from_array(np.array(value, dtype), name))
        return name

    if op == "Upsample" or opset < 11:
        inputs = ["x", constant("scales", scales, np.float32)]
    else:
        inputs = ["x", constant("roi", roi, np.float32), constant("scales", scales, np.float32),
                  constant("sizes", sizes, np.int64)]
        while inputs[-1] == "":
            inputs.pop()
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], name="up", **attrs)], "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                       [f"d{i}" for i in range(len(x_shape))])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(proto)
    return proto


def _compile_and_run(proto, x, target=FP32):
    compiled = nm_tvm.compile(proto, target=target, strict=True)
    assert compiled.host_ops == []
    got = compiled.run({"x": x})[0]
    ref = onnx_runtime_outputs(proto, {"x": x})[0]
    assert got.shape == ref.shape
    return compiled, got, ref


# ------------------------------------------------------------------ nearest: one DMA view
@pytest.mark.parametrize("target", [FP32, BF16])
@pytest.mark.parametrize("x_shape, kwargs", [
    ((1, 3, 4, 5), dict(scales=[1, 1, 2, 2], coordinate_transformation_mode="asymmetric",
                        nearest_mode="floor")),                     # PyTorch / YOLO upsampling
    ((2, 3, 5, 7), dict(scales=[1, 1, 2, 3])),                      # ONNX defaults, unequal scales
    ((1, 2, 4, 4), dict(scales=[1, 1, 2, 2], coordinate_transformation_mode="half_pixel",
                        nearest_mode="round_prefer_ceil")),
    ((1, 2, 6, 9), dict(sizes=[1, 2, 3, 3], coordinate_transformation_mode="asymmetric")),  # stride
    ((1, 2, 6, 4), dict(sizes=[1, 2, 2, 8], coordinate_transformation_mode="align_corners")),
    ((1, 40, 3, 37), dict(scales=[1, 1, 4, 1])),  # planes wider than one DMA block
    ((1, 2, 4, 6), dict(scales=[1, 1, 2, 3], op="Upsample", opset=9)),
])
def test_nearest_resize_is_bit_exact(rng, target, x_shape, kwargs):
    proto = _resize(list(x_shape), mode="nearest", **kwargs)
    x = rng.standard_normal(x_shape).astype(np.float32)
    if target == BF16:
        x = bf16(x)  # bf16-representable: a DMA moves it as is
    compiled, got, ref = _compile_and_run(proto, x, target)
    np.testing.assert_array_equal(got, ref)
    assert compiled.stats.macs == 0
    assert [layer["name"] for layer in compiled.layers] == ["up"]


# ------------------------------------------------------------------ every other form: GEMMs
GEMM_CASES = {
    "bilinear_2x": ((1, 3, 6, 8), dict(scales=[1, 1, 2, 2], mode="linear")),
    "linear_align_corners_to_one": (  # TVM's resize2d divided by zero here
        (1, 1, 2, 4), dict(sizes=[1, 1, 1, 2], mode="linear",
                           coordinate_transformation_mode="align_corners")),
    "linear_half_pixel_symmetric_down": (
        (1, 2, 7, 9), dict(scales=[1, 1, 1, 0.6], mode="linear", opset=19,
                           coordinate_transformation_mode="half_pixel_symmetric")),
    "linear_pytorch_half_pixel_sizes": (
        (1, 2, 5, 7), dict(sizes=[1, 2, 3, 1], mode="linear",
                           coordinate_transformation_mode="pytorch_half_pixel")),
    "linear_antialias_down": ((1, 2, 9, 12), dict(scales=[1, 1, 0.45, 0.6], mode="linear",
                                                  antialias=1, opset=18)),
    "cubic_a_half_exclude_outside_up": (
        (1, 2, 5, 7), dict(scales=[1, 1, 1.7, 2.2], mode="cubic", cubic_coeff_a=-0.5,
                           exclude_outside=1)),
    "cubic_asymmetric_down": ((1, 2, 9, 7), dict(scales=[1, 1, 0.5, 0.75], mode="cubic",
                                                 coordinate_transformation_mode="asymmetric")),
    "cubic_antialias_down": ((1, 2, 9, 7), dict(sizes=[1, 2, 4, 3], mode="cubic", antialias=1,
                                                opset=18)),
    "tf_crop_and_resize_extrapolation": (
        (1, 2, 6, 6), dict(roi=[0, 0, 0.1, -0.2, 1, 1, 0.9, 1.3], sizes=[1, 2, 7, 9],
                           mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                           extrapolation_value=2.5)),
    "axes_3_2_keep_aspect_not_larger_cubic": (
        (1, 2, 5, 7), dict(sizes=[4, 9], axes=[3, 2], mode="cubic", opset=18,
                           keep_aspect_ratio_policy="not_larger")),
    "keep_aspect_not_smaller_linear": (
        (1, 2, 5, 7), dict(sizes=[4, 9], axes=[2, 3], mode="linear", opset=18,
                           keep_aspect_ratio_policy="not_smaller")),
    "ncw_linear_align_corners": ((2, 3, 7), dict(sizes=[2, 3, 15], mode="linear",
                                                 coordinate_transformation_mode="align_corners")),
    "ncdhw_trilinear": ((1, 2, 3, 4, 5), dict(scales=[1, 1, 2, 1.5, 0.5], mode="linear")),
    "channels_linear": ((1, 4, 3, 5), dict(scales=[1, 2, 1, 1], mode="linear")),
    "upsample_linear": ((1, 2, 4, 4), dict(scales=[1, 1, 2, 1.5], mode="linear", op="Upsample",
                                           opset=9)),
    "resize10_linear_down": ((1, 2, 9, 7), dict(scales=[1, 1, 0.5, 0.6], mode="linear",
                                                opset=10)),
}


@pytest.mark.parametrize("case", sorted(GEMM_CASES))
def test_resize_as_gemms_matches_ort(rng, case):
    x_shape, kwargs = GEMM_CASES[case]
    proto = _resize(list(x_shape), **kwargs)
    x = rng.standard_normal(x_shape).astype(np.float32)
    compiled, got, ref = _compile_and_run(proto, x)
    assert np.abs(got - ref).max() <= RTOL * np.abs(ref).max() + ATOL
    assert compiled.stats.macs > 0
    assert all(layer["name"].startswith("up/") or layer["name"] == "up"
               for layer in compiled.layers)


NEAREST_GEMM_CASES = {
    "5_to_2": ((1, 3, 4, 5), dict(scales=[1, 1, 0.5, 0.5])),  # no integer ratio
    "shifted_repeats": ((1, 3, 4, 5), dict(  # index map 0,1,1,2,2,...: no repeat from 0
        scales=[1, 1, 2, 2], coordinate_transformation_mode="asymmetric",
        nearest_mode="round_prefer_ceil")),
    "scale_2.1": ((1, 2, 5, 5), dict(  # 5 -> 10 by scale 2.1: resize2d would read 10 / 5
        scales=[1, 1, 2.1, 2.1], coordinate_transformation_mode="asymmetric",
        nearest_mode="floor")),
    "non_integer_up": ((1, 2, 5, 7), dict(scales=[1, 1, 1.7, 2.5], nearest_mode="ceil")),
    "resize10_down": ((1, 2, 9, 7), dict(scales=[1, 1, 0.5, 0.6], opset=10)),  # rounds up
    "ncw_axes": ((2, 3, 7), dict(scales=[1.5], axes=[-1], opset=18)),
}


@pytest.mark.parametrize("target", [FP32, BF16])
@pytest.mark.parametrize("case", sorted(NEAREST_GEMM_CASES))
def test_nearest_through_a_gemm_is_exact(rng, case, target):
    """A 0/1 matrix picks each input exactly (products by 1 and 0, sums with zeros); on bf16
    the GEMM rounds its input to bf16 (support note), so the input is bf16-representable."""
    x_shape, kwargs = NEAREST_GEMM_CASES[case]
    proto = _resize(list(x_shape), mode="nearest", **kwargs)
    x = bf16(rng.standard_normal(x_shape))
    compiled, got, ref = _compile_and_run(proto, x, target)
    np.testing.assert_array_equal(got, ref)
    assert compiled.stats.macs > 0


def test_bilinear_on_bf16_is_within_the_rounding_bound(rng):
    """Each of the two GEMMs rounds both operands to bf16 (relative 2^-8 each): the error is
    below 5 * 2^-8 times the resize of |x| with |weights|, and bf16 really rounded."""
    proto = _resize([1, 3, 6, 8], scales=[1, 1, 2, 2], mode="linear")
    x = rng.standard_normal((1, 3, 6, 8)).astype(np.float32)
    _, got, ref = _compile_and_run(proto, x, BF16)
    resize = separable_resize(proto.graph.node[0], 13, x.shape,
                              [None, None, np.array([1, 1, 2, 2], np.float32)])
    magnitude = resize_matrices.SeparableResize(
        resize.in_shape, resize.out_shape,
        {a: np.abs(m) for a, m in resize.matrices.items()}).apply(np.abs(x))
    err = np.abs(got.astype(np.float64) - ref)
    assert np.all(err <= 5 * 2.0 ** -8 * magnitude + ATOL)
    assert err.max() > 0


def test_fractional_align_corners_follows_onnx_not_ort(rng):
    """align_corners with scales whose in * scale is fractional: ONNX's reference (and its
    backend test data, test_resize_downsample_scales_linear_align_corners) divides by the
    fractional length minus 1, ONNX Runtime by the integer one. The matrices follow ONNX."""
    proto = _resize([1, 1, 2, 4], scales=[1, 1, 0.6, 0.6], mode="linear",
                    coordinate_transformation_mode="align_corners")
    x = rng.standard_normal((1, 1, 2, 4)).astype(np.float32)
    compiled = nm_tvm.compile(proto, target=FP32, strict=True)
    got = compiled.run({"x": x})[0]
    onnx_ref = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, onnx_ref, rtol=0, atol=RTOL * np.abs(onnx_ref).max() + ATOL)
    assert np.abs(got - onnx_runtime_outputs(proto, {"x": x})[0]).max() > 0.1


# ------------------------------------------------------------------ refused, by node and attribute
@pytest.mark.parametrize("proto_kwargs, message", [
    (dict(x_shape=[1, 1, 4, 4], scales=[1, 1, 2, 2], mode="nearest", antialias=1, opset=18),
     "Resize node 'up': antialias with mode 'nearest'"),
    (dict(x_shape=[1, 1, 4, 4], scales=[1, 1, 0.5, 2], mode="nearest", op="Upsample", opset=9),
     r"Upsample node 'up': scales \[1.0, 1.0, 0.5, 2.0\] below 1"),
    (dict(x_shape=[1, 1, 4, 4], scales=[1, 1, 0.5, 2], mode="nearest", opset=10),
     "Resize node 'up': nearest with both up- and downscaled axes"),
    (dict(x_shape=[1, 1, 4, 4], scales=[1, 1, 0.1, 1], mode="linear"),
     r"Resize node 'up': output shape \(1, 1, 0, 4\) has an empty axis"),
    (dict(x_shape=[1, 1, 4, 4], sizes=[2, 2], mode="linear", opset=18, axes=[2, 2]),
     r"Resize node 'up': axes \[2, 2\] are not distinct axes"),
    (dict(x_shape=[1, 1, 4, 4], sizes=[2, 2], mode="linear"),
     "Resize node 'up': sizes has 2 entries for 4 axes"),
])
def test_unsupported_attributes_are_refused_by_node(proto_kwargs, message):
    kwargs = dict(proto_kwargs)
    with pytest.raises(ModelLoadError, match=message):
        nm_tvm.compile(_resize(kwargs.pop("x_shape"), **kwargs), target=FP32, strict=False)


def test_run_time_scales_are_refused_by_node():
    graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", mode="linear")], "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.raises(ModelLoadError, match="Resize node 'up': input 's' is computed at run "
                                             "time; roi, scales and sizes must be constants"):
        nm_tvm.compile(proto, target=FP32, strict=False)


def test_integer_data_is_refused_by_node():
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up")], "resize",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 1, 4, 4])], [scales])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.raises(ModelLoadError, match="Resize node 'up': input of type int64"):
        nm_tvm.compile(proto, target=FP32, strict=False)


def test_tf_half_pixel_for_nn_keeps_tvms_import():
    """Not in ONNX's reference (opset 18 removed it): TVM's resize2d, on the host unless its
    nearest map is an integer repeat or stride, named by the GEMM-only check."""
    proto = _resize([1, 2, 5, 7], scales=[1, 1, 1.5, 2], mode="nearest",
                    coordinate_transformation_mode="tf_half_pixel_for_nn")
    with pytest.raises(NotGemmOnlyError, match=r"resize2d \(node 'up'\)"):
        nm_tvm.compile(proto, target=FP32, strict=True)
    compiled = nm_tvm.compile(proto, target=FP32, strict=False)
    assert compiled.host_ops == ["node 'up':relax.image.resize2d"]


# ------------------------------------------------------------------ the matrices themselves
def _node(**attrs):
    return helper.make_node("Resize", ["x", "roi", "scales", "sizes"], ["y"], name="r", **attrs)


REFERENCE_FORMS = {
    "nearest_round_prefer_ceil": (dict(mode="nearest", nearest_mode="round_prefer_ceil"),
                                  dict(scales=[1, 1, 1.6, 0.7])),
    "linear_half_pixel_symmetric": (dict(mode="linear",
                                         coordinate_transformation_mode="half_pixel_symmetric"),
                                    dict(scales=[1, 1, 0.6, 1.3])),
    "cubic_antialias_exclude": (dict(mode="cubic", antialias=1, exclude_outside=1,
                                     cubic_coeff_a=-0.5), dict(sizes=[2, 3, 3, 4])),
    "tf_crop_extrapolation": (
        dict(mode="cubic", coordinate_transformation_mode="tf_crop_and_resize",
             extrapolation_value=-3.0),
        dict(roi=[0, 0, -0.3, 0.2, 1, 1, 0.8, 1.4], sizes=[2, 3, 6, 8])),
    "negative_axes_keep_aspect_cubic": (  # the 3-D keep_aspect_ratio probe
        dict(mode="cubic", axes=[-1, -3], keep_aspect_ratio_policy="not_larger"),
        dict(sizes=[9, 7])),
    "keep_aspect_tf_crop_linear": (
        dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
             keep_aspect_ratio_policy="not_smaller", axes=[2, 3], extrapolation_value=1.0),
        dict(roi=[-0.1, 0.3, 0.9, 1.2], sizes=[4, 9])),
}


@pytest.mark.parametrize("form", sorted(REFERENCE_FORMS))
def test_matrices_reproduce_onnx_reference(rng, form):
    """On the full input (batch and channels too), the product of the per-axis matrices plus
    the bias equals ONNX's reference Resize of the one-node model."""
    attrs, operands = REFERENCE_FORMS[form]
    shape = (2, 3, 5, 6)
    node = _node(**attrs)
    inputs = [None, operands.get("roi"), operands.get("scales"), operands.get("sizes")]
    inputs = [None if v is None else np.array(v, np.int64 if k == 3 else np.float32)
              for k, v in enumerate(inputs)]
    resize = separable_resize(node, 19, shape, inputs)
    x = rng.standard_normal(shape)
    model = resize_matrices.SeparableResize(shape, resize.out_shape, resize.matrices, resize.bias)
    positive_axes = [a % 4 for a in attrs.get("axes", [])]
    probe_attrs = ([a for a in node.attribute if a.name != "axes"]
                   + ([helper.make_attribute("axes", positive_axes)] if positive_axes else []))
    expected = resize_matrices._reference(probe_attrs, x, *inputs[1:])
    got = model.apply(x)
    assert got.shape == expected.shape == resize.out_shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    assert (resize.bias is not None) == ("extrapolation_value" in attrs)


def test_nearest_matrices_pick_one_input_and_identity_axes_have_none():
    resize = separable_resize(_node(mode="nearest"), 13, (1, 2, 5, 4),
                              [None, None, np.array([1, 1, 2.1, 1], np.float32), None])
    assert list(resize.matrices) == [2]  # scale 1 axes: the identity, skipped
    matrix = resize.matrices[2]
    assert matrix.shape == (10, 5) and set(np.unique(matrix)) == {0.0, 1.0}
    assert resize.nearest_indices()[2].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    linear = separable_resize(_node(mode="linear"), 13, (1, 2, 5, 4),
                              [None, None, np.array([1, 1, 2, 2], np.float32), None])
    assert linear.nearest_indices() is None
    np.testing.assert_allclose(linear.matrices[3].sum(axis=1), 1.0)


def test_axis_order_shrinks_first():
    resize = separable_resize(_node(mode="linear"), 13, (1, 8, 16, 16),
                              [None, None, np.array([1, 1, 4, 0.25], np.float32), None])
    assert resize.axis_order() == [3, 2]  # the downscale of W, then the 4x upscale of H


def test_a_product_that_misses_the_reference_is_refused(monkeypatch):
    """The separability check: a wrong matrix is an error naming the node, never a result."""
    real = resize_matrices._axis_matrix
    monkeypatch.setattr(resize_matrices, "_axis_matrix",
                        lambda *args: real(*args) * 1.001)
    with pytest.raises(ResizeFormError, match="Resize node 'r': the per-axis matrices do not "
                                              "reproduce ONNX's reference Resize"):
        separable_resize(_node(mode="linear"), 13, (1, 1, 4, 4),
                         [None, None, np.array([1, 1, 2, 2], np.float32), None])


# ------------------------------------------------------------------ the DMA view's index maps
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
