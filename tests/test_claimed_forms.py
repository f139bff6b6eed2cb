"""The Conv / MaxPool / AveragePool forms nm_tvm/support.py claims, on both dtype paths.

The support table claims Conv with "any stride / padding / dilation" and any groups, MaxPool,
and AveragePool padded (a depthwise conv, rescaled unless count_include_pad) and unpadded. The
cases below use what the other tests leave symmetric: different row and column strides,
dilations, pads on each side and kernel extents, odd sizes (rows != columns), grouped and
depthwise convolutions, the im2col path and the 1x1 in-place path.

Tolerances, each the project's own:
* fp32 (nm/fp32-16x16): max |sim - ORT| <= 1e-5 * max |ORT| + 1e-6 (tests/test_differential.py).
* bf16 (nm/bf16-32x32): every element within the derived rounding bound of
  nm_tvm/error_bound.py (as tests/test_end_to_end.py), and the result really rounded.
* MaxPool moves and compares values only, so it is exact: equal to ORT's output, except that
  on bf16 a padded input is staged through the scratchpad (DMA copies into the -inf image) and
  so rounded to bf16 once (docs/ISA.md, LOAD): then it equals ORT's output rounded to bf16.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import nm_tvm
from nm_tvm.error_bound import rounding_error_bound
from nm_tvm.models import analytic_macs
from nm_tvm.validate import onnx_runtime_outputs
from test_differential import ATOL, RTOL
from test_ops import _model
from test_simulator import bf16

F32 = np.float32
TARGETS = ["nm/fp32-16x16", "nm/bf16-32x32"]


def _out(size, kernel, stride, pad0, pad1, dilation=1):
    return (size + pad0 + pad1 - dilation * (kernel - 1) - 1) // stride + 1


def _out_shape(n, c, hw, kernel, strides, pads, dilations=(1, 1)):
    return [n, c, _out(hw[0], kernel[0], strides[0], pads[0], pads[2], dilations[0]),
            _out(hw[1], kernel[1], strides[1], pads[1], pads[3], dilations[1])]


def _run(proto, x, target):
    compiled = nm_tvm.compile(proto, target=target)
    assert compiled.host_ops == []
    sim = compiled.run({"x": x})[0]
    ref = onnx_runtime_outputs(proto, {"x": x})[0]
    assert sim.shape == ref.shape
    return compiled, sim, ref


def _check(proto, x, target):
    """The fp32 tolerance or the bf16 rounding bound; returns the compiled model."""
    compiled, sim, ref = _run(proto, x, target)
    err = np.abs(sim.astype(np.float64) - ref)
    if compiled.hw.operand_dtype == "float32":
        tol = RTOL * float(np.abs(ref).max()) + ATOL
        assert err.max() <= tol, f"max abs err {err.max():.3g} > {tol:.3g}"
    else:
        (bound,) = rounding_error_bound(proto, {"x": x}, compiled.hw.operand_dtype)
        worst = tuple(int(i) for i in np.unravel_index(np.argmax(err - bound), err.shape))
        assert np.all(err <= bound), (f"err {err[worst]:.3g} > bound {bound[worst]:.3g} at "
                                      f"{worst}; max err {err.max():.3g}")
        # bf16 really changed the result, and the bound is informative (as in
        # tests/test_end_to_end.py): a few percent of the output's magnitude, within two orders
        # of magnitude of the observed error.
        assert err.max() > 0
        assert bound.max() < 0.1 * np.abs(ref).max()
        assert err.max() > 0.01 * bound.max()
    return compiled


# ------------------------------------------------------------------------------------ Conv
# (c_in, c_out, groups, (h, w), kernel, strides, pads [top, left, bottom, right], dilations)
CONV = {
    "stride_1x2": (3, 5, 1, (9, 11), (3, 3), (1, 2), (1, 1, 1, 1), (1, 1)),
    "stride_2x1": (3, 5, 1, (11, 9), (3, 3), (2, 1), (0, 1, 2, 0), (1, 1)),
    "stride_3x1": (4, 6, 1, (13, 7), (3, 3), (3, 1), (2, 0, 0, 1), (1, 1)),
    "dilation_1x2": (3, 4, 1, (9, 13), (3, 3), (1, 1), (0, 2, 1, 0), (1, 2)),
    "dilation_2x1": (3, 4, 1, (13, 9), (3, 3), (1, 1), (1, 0, 2, 1), (2, 1)),
    "kernel_1x3": (5, 7, 1, (7, 9), (1, 3), (2, 1), (0, 1, 0, 1), (1, 1)),
    "kernel_3x1": (5, 7, 1, (9, 7), (3, 1), (1, 2), (1, 0, 1, 0), (1, 1)),
    "kernel_2x5": (3, 6, 1, (8, 11), (2, 5), (2, 3), (0, 2, 1, 1), (2, 1)),
    # more channels than the array is wide (DIM-channel gathers) and more outputs (N tiles)
    "wide_3x2": (20, 18, 1, (7, 9), (3, 2), (2, 1), (1, 0, 1, 1), (1, 2)),
    "groups_2": (6, 4, 2, (9, 10), (3, 2), (1, 2), (1, 0, 0, 1), (1, 2)),
    "groups_3": (6, 9, 3, (11, 8), (2, 3), (3, 1), (0, 1, 1, 2), (2, 1)),
    "depthwise": (6, 6, 6, (9, 11), (3, 3), (2, 1), (0, 1, 2, 0), (1, 2)),
    "depthwise_x2": (4, 8, 4, (10, 9), (1, 3), (1, 2), (1, 1, 0, 2), (1, 1)),
    "depthwise_5x2": (5, 5, 5, (11, 7), (5, 2), (1, 1), (2, 1, 2, 0), (1, 1)),
    "depthwise_40": (40, 40, 40, (6, 7), (3, 2), (2, 1), (1, 0, 0, 1), (1, 2)),  # groups > DIM
    # pads wider than the kernel (outputs of padding only: the bias), strides that skip inputs
    "pads_over_kernel": (3, 4, 1, (6, 7), (2, 2), (1, 2), (3, 0, 1, 4), (1, 1)),
    "stride_over_kernel": (3, 4, 1, (11, 13), (2, 1), (4, 5), (0, 1, 0, 0), (1, 1)),
    # a 1x1 kernel with a stride or padding goes through im2col ...
    "1x1_stride_2x1": (8, 5, 1, (9, 7), (1, 1), (2, 1), (0, 0, 0, 0), (1, 1)),
    "1x1_stride_1x3": (8, 6, 2, (7, 10), (1, 1), (1, 3), (0, 0, 0, 0), (1, 1)),
    "1x1_padded": (8, 5, 1, (7, 9), (1, 1), (1, 1), (0, 1, 1, 0), (1, 1)),
    # ... and without, reads its input in place (dilation has no effect on a 1x1 kernel)
    "1x1_in_place": (20, 12, 1, (7, 9), (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    "1x1_in_place_groups": (12, 8, 4, (5, 11), (1, 1), (1, 1), (0, 0, 0, 0), (2, 3)),
    "1x1_in_place_depthwise": (6, 6, 6, (9, 5), (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("case", CONV)
def test_conv(rng, case, bias, target):
    c_in, c_out, groups, hw, kernel, strides, pads, dilations = CONV[case]
    n = 2
    inits = [("w", rng.standard_normal((c_out, c_in // groups) + kernel))]
    if bias:
        inits.append(("b", rng.standard_normal(c_out)))
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"],
                            kernel_shape=list(kernel), strides=list(strides), pads=list(pads),
                            dilations=list(dilations), group=groups)
    proto = _model([node], {"x": [n, c_in, *hw]},
                   _out_shape(n, c_out, hw, kernel, strides, pads, dilations), inits)
    x = rng.standard_normal((n, c_in, *hw)).astype(F32)
    compiled = _check(proto, x, target)
    assert compiled.stats.macs == analytic_macs(proto)
    in_place = kernel == (1, 1) and strides == (1, 1) and not any(pads)
    assert [layer["im2col"] for layer in compiled.layers] == [not in_place]


# --------------------------------------------------------------------------------- MaxPool
# ((h, w), kernel, strides, pads, dilations); ONNX Runtime wants each pad below its kernel.
MAXPOOL = {
    "kernel_2x3_stride_1x2": ((9, 11), (2, 3), (1, 2), (0, 0, 0, 0), (1, 1)),
    "kernel_3x2_stride_2x1_padded": ((11, 9), (3, 2), (2, 1), (1, 0, 2, 1), (1, 1)),
    "kernel_3x1_stride_3x1": ((13, 7), (3, 1), (3, 1), (0, 0, 1, 0), (1, 1)),
    "kernel_1x3_dilation_1x2": ((7, 12), (1, 3), (1, 2), (0, 2, 0, 1), (1, 2)),
    "kernel_3x3_dilation_2x1": ((12, 9), (3, 3), (2, 1), (1, 0, 0, 2), (2, 1)),
    "kernel_2x5_stride_2x3": ((8, 13), (2, 5), (2, 3), (1, 2, 0, 4), (1, 1)),
    "kernel_3x2_dilation_2x3": ((13, 11), (3, 2), (1, 2), (2, 1, 0, 0), (2, 3)),
    "kernel_2x1_stride_4x5_padded": ((11, 13), (2, 1), (4, 5), (1, 0, 0, 0), (1, 1)),
    "kernel_1x1_stride_2x3": ((11, 13), (1, 1), (2, 3), (0, 0, 0, 0), (1, 1)),
    # more output columns than the array is wide: two column tiles
    "wide_kernel_2x3_stride_1x2": ((5, 40), (2, 3), (1, 2), (0, 1, 1, 0), (1, 1)),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", MAXPOOL)
def test_max_pool(rng, case, target):
    hw, kernel, strides, pads, dilations = MAXPOOL[case]
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=list(kernel),
                            strides=list(strides), pads=list(pads), dilations=list(dilations))
    proto = _model([node], {"x": [2, 3, *hw]},
                   _out_shape(2, 3, hw, kernel, strides, pads, dilations))
    # All negative: the -inf padding (not zero) must win the border windows.
    x = (-np.abs(rng.standard_normal((2, 3, *hw))) - 1).astype(F32)
    compiled, sim, ref = _run(proto, x, target)
    staged = compiled.hw.operand_dtype == "bfloat16" and any(pads)
    np.testing.assert_array_equal(sim, bf16(ref) if staged else ref)
    assert compiled.stats.macs == 0


# ----------------------------------------------------------------------------- AveragePool
# ((h, w), kernel, strides, pads)
AVGPOOL = {
    "kernel_2x3_stride_1x2": ((9, 11), (2, 3), (1, 2), (0, 0, 0, 0)),
    "kernel_3x1_stride_2x1": ((11, 9), (3, 1), (2, 1), (0, 0, 0, 0)),
    "kernel_1x4_stride_3x1": ((13, 10), (1, 4), (3, 1), (0, 0, 0, 0)),
    "kernel_2x5_stride_2x3": ((8, 13), (2, 5), (2, 3), (0, 0, 0, 0)),
    "kernel_2x1_stride_4x5": ((11, 13), (2, 1), (4, 5), (0, 0, 0, 0)),
    "kernel_2x1_stride_4x5_padded": ((11, 13), (2, 1), (4, 5), (1, 0, 0, 0)),
    "kernel_3x2_stride_2x1_padded": ((11, 9), (3, 2), (2, 1), (1, 0, 2, 1)),
    "kernel_2x3_stride_1x2_padded": ((9, 11), (2, 3), (1, 2), (0, 1, 1, 2)),
    "kernel_1x3_stride_3x1_padded": ((13, 7), (1, 3), (3, 1), (0, 2, 0, 1)),
    "kernel_3x3_stride_1x2_padded": ((7, 10), (3, 3), (1, 2), (2, 0, 0, 1)),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("include_pad", [0, 1], ids=["count_real", "count_include_pad"])
@pytest.mark.parametrize("case", AVGPOOL)
def test_average_pool(rng, case, include_pad, target):
    hw, kernel, strides, pads = AVGPOOL[case]
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=list(kernel),
                            strides=list(strides), pads=list(pads),
                            count_include_pad=include_pad)
    proto = _model([node], {"x": [2, 3, *hw]}, _out_shape(2, 3, hw, kernel, strides, pads))
    compiled = _check(proto, rng.standard_normal((2, 3, *hw)).astype(F32), target)
    # Padded: a depthwise conv (im2col gathers write the zeros), then, counting only real
    # inputs, a per-position rescale; unpadded: window gathers into one GEMM.
    kinds = [layer["kind"] for layer in compiled.layers]
    assert len(kinds) == (2 if any(pads) and not include_pad else 1), kinds
