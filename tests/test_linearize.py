"""Every linearized operator on the ONNX backend node test cases, GEMM-only, within its bound.

Each case runs through the conformance runner (``nm_tvm.conformance.run_case``): compiled
strictly for the fp32 target, calibrated on the case's own inputs (so every table covers what
it sees), compared with the expected outputs. The bound per operator is stated in
``nm_tvm.approx.op_error_bound``: exact operators (Clip, LeakyRelu, HardSigmoid, HardSwish =
x * exact PWL, Abs, Neg, Sub, reductions, Div by constants, integer Pow) get fp32 slack only
(``1e-5 * max|expected| + 1e-6``); approximated ones add their tables' fitted max errors,
amplified as derived there: unary functions ``e``; Mish ``max|x| e``; Softmax
``(L+1) e_exp + e_recip``; LogSoftmax ``L e_exp + e_log``; LayerNorm
``max|x-mean| max|gamma| e_rsqrt``; Div by a tensor ``max|a| e_recip``.
"""
import pytest

from nm_tvm import conformance

OPS = ["Sigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "HardSigmoid", "HardSwish",
       "Softplus", "Mish", "Softsign", "Elu", "LeakyRelu", "PRelu", "Gelu", "Softmax",
       "LogSoftmax", "LayerNormalization", "RMSNormalization", "Clip", "Abs", "Neg", "Sub",
       "Div", "Pow", "ReduceMax", "ReduceSum", "ReduceMean", "MaxPool"]
MODULES = [op.lower() for op in OPS]
CASES = sorted((c for c in conformance._quiet_collect(MODULES) if conformance.case_op(c) in OPS),
               key=lambda c: c.name)
_passed = {op: 0 for op in OPS}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_case(case):
    result = conformance.run_case(case)
    if result.status == "unsupported":
        pytest.skip(f"unsupported: {result.reason[:200]}")
    assert result.status == "passed", result.reason
    _passed[result.op] += 1


def test_every_operator_has_passing_cases():
    """Runs after the cases above: no operator may be covered by skips alone."""
    missing = [op for op, n in _passed.items() if n == 0]
    assert not missing, f"no passing node case for {missing}"


def test_approx_report_measures_tables_in_the_model(tmp_path):
    """Fitted vs measured error per table on real inputs, and a PNG per fitted table."""
    import numpy as np

    import nm_tvm
    from nm_tvm import approx, frontend
    from nm_tvm.models import zoo

    proto = zoo.bert_tiny()
    imported = frontend.import_model(proto)
    samples = [frontend.random_inputs(imported, seed) for seed in range(2)]
    compiled = nm_tvm.compile(proto)
    rows = approx.measured_rows(proto, samples)
    fitted = approx.fitted(compiled.pwl_tables)
    assert {r["table"] for r in rows} == {t["id"] for t in fitted}
    for row in rows:
        assert row["inputs"] > 0
        if row["share_in_range"] == 1.0:  # inside its range a table keeps its fitted bound
            assert row["measured_max_err"] <= row["fitted_max_err"] * 1.01 + 1e-7
    paths = approx.plot_tables(compiled.pwl_tables, tmp_path)
    assert len(paths) == len(fitted) and all(p.stat().st_size > 1000 for p in paths)
    assert {"gelu", "exp", "reciprocal", "rsqrt"} & {r["function"] for r in rows}
    assert np.isfinite([r["measured_mean_abs_err"] for r in rows]).all()
