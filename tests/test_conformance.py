"""Fast subset of the ONNX operator conformance suite (the full run: benchmarks/conformance.py).

Every collected case gets a status; no case may fail except the known, reported compiler bugs
below (each an xfail(strict=True): when the bug is fixed the xfail turns into an error and the
entry must be removed).
"""
from __future__ import annotations

import numpy as np
import pytest

from nm_tvm import conformance, support

# Case modules of onnx.backend.test.case.node run in `make test` (about 10 s).
FAST_MODULES = ["relu", "gemm", "conv", "averagepool", "globalaveragepool", "flatten",
                "transpose", "matmul", "reshape", "add", "mul", "batch_normalization"]

KNOWN_FAILURES: dict[str, str] = {}  # name -> reason (xfail strict) while a bug is open

MUST_PASS = ["test_relu", "test_gemm_default_no_bias", "test_gemm_default_matrix_bias",
             "test_gemm_default_vector_bias", "test_gemm_all_attributes",
             "test_basic_conv_with_padding", "test_conv_with_strides_and_asymmetric_padding",
             "test_averagepool_2d_strides", "test_globalaveragepool", "test_flatten_axis2",
             "test_transpose_all_permutations_3", "test_matmul_3d", "test_reshape_negative_dim",
             "test_add", "test_mul"]


@pytest.fixture(scope="module")
def results():
    cases = conformance._quiet_collect(FAST_MODULES)
    assert len(cases) > 60
    out = conformance.run_cases(cases)
    assert len(out) == len(cases)  # every case accounted for
    return {r.name: r for r in out}


def test_every_case_has_a_status_and_reason(results):
    for r in results.values():
        assert r.status in ("passed", "failed", "unsupported")
        if r.status != "passed":
            assert r.reason, r.name
    summary = conformance.summarize(list(results.values()))
    assert summary["passed"] + summary["failed"] + summary["unsupported"] == summary["total"]


def test_no_unexpected_failures(results):
    unexpected = {n: r.reason for n, r in results.items()
                  if r.status == "failed" and n not in KNOWN_FAILURES}
    assert not unexpected


@pytest.mark.parametrize("name", MUST_PASS)
def test_claimed_cases_pass(results, name):
    r = results[name]
    assert r.status == "passed", r.reason
    assert r.level == support.EXACT and r.max_abs_err <= r.tolerance


@pytest.mark.parametrize("name", sorted(KNOWN_FAILURES))
def test_known_failures(results, name, request):
    request.node.add_marker(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[name]))
    assert results[name].status == "passed", results[name].reason


def test_unsupported_reasons_are_specific(results):
    assert "non-float32" in results["test_add_uint8"].reason
    assert results["test_averagepool_3d_default"].reason.startswith("NotGemmOnlyError")
    # Conv weights are graph inputs in the ONNX cases: bound as constants before compiling.
    assert results["test_basic_conv_with_padding"].frozen_inputs == ["W"]


def test_unclaimed_operator_is_unsupported_before_compiling():
    cases = conformance._quiet_collect(["hardmax"])
    r = conformance.run_case(next(c for c in cases if c.name == "test_hardmax_example"))
    assert r.status == "unsupported" and "Hardmax" in r.reason and r.seconds == 0.0


def test_comparison_rules():
    ok, err, _ = conformance._compare(np.float32([1, np.nan, np.inf]),
                                      np.float32([1 + 1e-7, np.nan, np.inf]), 1e-6)
    assert ok and err < 1e-6
    assert not conformance._compare(np.float32([1, 2]), np.float32([1, np.nan]), 1)[0]
    assert not conformance._compare(np.float32([1, np.inf]), np.float32([1, 2]), 1)[0]
    assert not conformance._compare(np.float32([1, 2]), np.float32([[1, 2]]), 1)[0]
    assert not conformance._compare(np.float32([1, 2.1]), np.float32([1, 2]), 0.01)[0]


def test_case_operator_attribution():
    cases = {c.name: c for c in conformance._quiet_collect(["averagepool", "conv"])}
    assert conformance.case_op(cases["test_averagepool_2d_default"]) == "AveragePool"
    assert conformance.case_op(cases["test_basic_conv_with_padding"]) == "Conv"
