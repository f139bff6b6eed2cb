"""Reductions, normalizations and activations added for real-model support lists, each compiled
strictly (GEMM-only) and checked against ONNX Runtime: exact ones bit-exact (or, where a GEMM or
a product tree reorders fp32 sums, within fp32 rounding), approximate ones within
``nm_tvm.approx.op_error_bound`` after calibration on their own inputs."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import nm_tvm
from nm_tvm import approx
from nm_tvm.validate import onnx_runtime_outputs
from test_simulator import bf16

FP32, BF16 = "nm/fp32-16x16", "nm/bf16-32x32"
F32 = np.float32


def _model(op, x, attrs=None, inits=(), opset=18, dtype=T.FLOAT):
    """One ``op`` node over graph input ``x`` (an example array) and constant ``inits``
    ((name, array) pairs, in input order); output type and shape from shape inference, or
    x's where it has none (function operators: GroupNormalization, MeanVarianceNormalization)."""
    node = helper.make_node(op, ["x"] + [n for n, _ in inits], ["y"], **(attrs or {}))
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", dtype, x.shape)],
                              [], [numpy_helper.from_array(v, n) for n, v in inits])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=9)
    inferred = [v for v in onnx.shape_inference.infer_shapes(proto).graph.value_info
                if v.name == "y" and v.type.tensor_type.HasField("shape")]
    proto.graph.output.extend(inferred or [helper.make_tensor_value_info("y", dtype, x.shape)])
    onnx.checker.check_model(proto)
    return proto


def _axes(*axes):
    return [("axes", np.array(axes, np.int64))]


def _exact(proto, x, target=FP32, rtol=0.0):
    compiled = nm_tvm.compile(proto, target=target)
    assert compiled.host_ops == []
    got, = compiled.run({"x": x})
    ref, = onnx_runtime_outputs(proto, {"x": x})
    assert got.dtype == ref.dtype and got.shape == ref.shape
    if rtol:
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    else:
        np.testing.assert_array_equal(got, ref)
    return compiled


def _approximate(op, proto, x, inputs=None, attrs=None, target=FP32):
    """Calibrated on x, within the operator's bound from its tables' limits."""
    compiled = nm_tvm.compile(proto, target=target, calibration=[{"x": x}])
    assert compiled.host_ops == []
    got, = compiled.run({"x": x})
    ref, = onnx_runtime_outputs(proto, {"x": x})
    assert got.shape == ref.shape
    bound = approx.op_error_bound(op, compiled.pwl_tables, inputs or [x], ref, attrs)
    err = float(np.abs(got.astype(np.float64) - ref).max())
    assert err <= bound, f"{op}: max abs err {err:.3g} > bound {bound:.3g}"
    assert any(not t["exact"] for t in compiled.pwl_tables)  # really approximated
    return compiled


def _awkward(rng, shape):
    """Normal values with signed zeros, infinities and ties to the thresholds used below."""
    x = rng.standard_normal(shape).astype(F32)
    x.reshape(-1)[:8] = [0.0, -0.0, np.inf, -np.inf, 0.5, -0.5, 1.0, np.nextafter(F32(1), F32(2))]
    return x


# ------------------------------------------------------------------------------ exact
@pytest.mark.parametrize("target", [FP32, BF16])
def test_reduce_min_max_and_global_max_pool_are_exact(rng, target):
    """On bf16 the inputs are bf16 values: the transpose that moves reduced axes last rounds
    like any Transpose there (README, Status)."""
    x = _awkward(rng, (2, 3, 4, 5))
    x = bf16(x) if target == BF16 else x
    for axes, keep in (((1,), 1), ((0, 2), 0), ((-1,), 1)):
        _exact(_model("ReduceMin", x, {"keepdims": keep}, _axes(*axes)), x, target)
    _exact(_model("ReduceMin", x, {"keepdims": 0}), x, target)  # no axes: all
    _exact(_model("GlobalMaxPool", x), x, target)


def test_reduce_max_and_min_of_masks_are_any_and_all(rng):
    x = rng.random((3, 4, 5)) < 0.3
    x[0] = False  # a slice with no True, one with no False
    x[1] = True
    for op in ("ReduceMax", "ReduceMin"):
        _exact(_model(op, x, {"keepdims": 0}, _axes(2), opset=20, dtype=T.BOOL), x)


@pytest.mark.parametrize("target", [FP32, BF16])
def test_reduce_prod_is_a_vec_multiply_tree(rng, target):
    """Products in fp32 in the accumulator, in a tree order: fp32 rounding of ORT's result
    (bf16 inputs on bf16, where the transpose for the leading axes rounds)."""
    x = (1 + 0.5 * rng.standard_normal((3, 40, 6))).astype(F32)
    x = bf16(x) if target == BF16 else x
    for axes, keep in (((1,), 1), ((0, 2), 0)):
        _exact(_model("ReduceProd", x, {"keepdims": keep}, _axes(*axes)), x, target, rtol=2e-6)


def test_sum_square_and_l1_reductions(rng):
    x = rng.standard_normal((2, 5, 7)).astype(F32)
    for op in ("ReduceSumSquare", "ReduceL1"):
        _exact(_model(op, x, {"keepdims": 0}, _axes(1)), x, rtol=1e-6)


@pytest.mark.parametrize("target", [FP32, BF16])
def test_sign_shrink_and_thresholded_relu_are_one_exact_table(rng, target):
    x = _awkward(rng, (4, 33))
    cases = [("Sign", {}), ("Shrink", {"lambd": 0.5}), ("Shrink", {"lambd": 0.5, "bias": 0.5}),
             ("Shrink", {"lambd": -1.0, "bias": 0.25}),  # overlapping sides: x + bias wins
             ("ThresholdedRelu", {"alpha": 1.0}), ("ThresholdedRelu", {})]
    for op, attrs in cases:
        compiled = _exact(_model(op, x, attrs), x, target)
        assert len(compiled.layers) == 1 and all(t["exact"] for t in compiled.pwl_tables), op


def test_constant_value_attributes_import():
    """ONNX's function expansions use Constant value_float / value_ints: imported as tensors."""
    nodes = [helper.make_node("Constant", [], ["k"], value_float=2.5),
             helper.make_node("Constant", [], ["shape"], value_ints=[6, 2]),
             helper.make_node("Mul", ["x", "k"], ["m"]),
             helper.make_node("Reshape", ["m", "shape"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", T.FLOAT, [3, 4])],
                              [helper.make_tensor_value_info("y", T.FLOAT, [6, 2])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    _exact(proto, np.arange(12, dtype=F32).reshape(3, 4))


# ------------------------------------------------------------------------ approximate
@pytest.mark.parametrize("axes, keep", [((1,), 1), ((0, 2), 0), ((-1,), 0)])
def test_reduce_log_sum_exp_uses_log_softmax_pieces(rng, axes, keep):
    x = (3 * rng.standard_normal((3, 4, 5))).astype(F32)
    proto = _model("ReduceLogSumExp", x, {"keepdims": keep}, _axes(*axes))
    compiled = _approximate("ReduceLogSumExp", proto, x, [x, np.array(axes)])
    assert {t["key"] for t in approx.fitted(compiled.pwl_tables)} == {"exp", "log"}
    # without calibration: Softmax's ranges, exp on [-16, 0] and log on [1, L]
    length = int(np.prod([x.shape[a] for a in axes]))
    ranges = {t["key"]: (t["lo"], t["hi"])
              for t in nm_tvm.compile(proto).pwl_tables if not t["exact"]}
    assert ranges == {"exp": (-16.0, 0.0), "log": (1.0, max(2.0, length))}


def test_l2_and_log_sum_reductions(rng):
    x = rng.standard_normal((3, 6, 4)).astype(F32)
    _approximate("ReduceL2", _model("ReduceL2", x, {"keepdims": 1}, _axes(1)), x)
    positive = np.abs(x) + 0.1
    _approximate("ReduceLogSum", _model("ReduceLogSum", positive, {"keepdims": 0}, _axes(0, 2)),
                 positive)


@pytest.mark.parametrize("target", [FP32, BF16])
def test_instance_and_group_normalization(rng, target):
    x = (2 + 3 * rng.standard_normal((2, 6, 3, 5))).astype(F32)
    scale, bias = rng.standard_normal(6).astype(F32), rng.standard_normal(6).astype(F32)
    inits = [("scale", scale), ("bias", bias)]
    if target == FP32:
        proto = _model("InstanceNormalization", x, {"epsilon": 1e-3}, inits)
        _approximate("InstanceNormalization", proto, x, [x, scale, bias], target=target)
    for groups in (3, 1):
        proto = _model("GroupNormalization", x, {"num_groups": groups}, inits, opset=21)
        if target == BF16:  # GEMM operands (the means) are rounded to bf16: loosely
            compiled = nm_tvm.compile(proto, target=target, calibration=[{"x": x}])
            got, ref = compiled.run({"x": x})[0], onnx_runtime_outputs(proto, {"x": x})[0]
            assert compiled.host_ops == [] and np.abs(got - ref).max() < 0.05
            continue
        _approximate("GroupNormalization", proto, x, [x, scale, bias])


def test_lp_and_mean_variance_normalization(rng):
    x = rng.standard_normal((3, 4, 5)).astype(F32)
    x[1, :, 2] = 0.0  # a zero vector along axis 1: ONNX gives 0 there
    for p, axis in ((2, 1), (1, 1), (2, -1), (1, 0)):
        proto = _model("LpNormalization", x, {"p": p, "axis": axis})
        compiled = _approximate("LpNormalization", proto, x)
        if axis == 1:
            assert np.all(compiled.run({"x": x})[0][1, :, 2] == 0.0)
    x4 = rng.standard_normal((2, 3, 4, 5)).astype(F32)
    _approximate("MeanVarianceNormalization", _model("MeanVarianceNormalization", x4), x4)


@pytest.mark.parametrize("op, attrs", [("Selu", {}), ("Selu", {"alpha": 2.0, "gamma": 3.0}),
                                       ("Celu", {"alpha": 0.7}), ("Sin", {}), ("Cos", {})])
def test_smooth_activations_are_one_table(rng, op, attrs):
    x = (2 * rng.standard_normal((4, 50))).astype(F32)
    x[0, :3] = [0.0, -0.0, 1e-3]  # Selu's kink
    compiled = _approximate(op, _model(op, x, attrs), x)
    assert len(compiled.layers) == 1 and len(compiled.pwl_tables) == 1
