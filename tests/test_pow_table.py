"""Pow with a non-integer constant exponent runs through a fitted PWL table (2, 3 and 4 are
exact multiplies): the table path, GEMM-only, within the limit-based bound."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import nm_tvm
from nm_tvm import approx


def pow_model(exponent: float, shape=(3, 17)):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    e = numpy_helper.from_array(np.array(exponent, np.float32), "e")
    graph = helper.make_graph([helper.make_node("Pow", ["x", "e"], ["y"], name="pow")], "pow",
                              [x], [y], [e])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize("exponent", [0.5, 1.5, -0.5, 2.5, -1.25])
@pytest.mark.parametrize("calibrated", [False, True])
def test_pow_non_integer_exponent_uses_a_table(exponent, calibrated):
    rng = np.random.default_rng(3)
    x = rng.uniform(0.05, 6.0, (3, 17)).astype(np.float32)
    # uncalibrated: the default range (synthetic N(0, 1) samples would widen it toward 0)
    compiled = nm_tvm.compile(pow_model(exponent), calibration=[{"x": x}] if calibrated else [])
    tables = approx.fitted(compiled.pwl_tables)
    assert len(tables) == 1 and tables[0]["key"] == "power"
    (out,) = compiled.run({"x": x})
    expect = np.power(x.astype(np.float64), exponent)
    bound = approx.op_error_bound("Pow", compiled.pwl_tables, [x], expect)
    err = float(np.max(np.abs(out - expect)))
    assert err <= bound, f"x^{exponent}: {err:.3g} > {bound:.3g}"
    # the bound is the table's limit, not a blanket tolerance
    assert bound < 0.05 * float(np.max(np.abs(expect)))
