"""Linearized operators: the measured error of the fitted tables in a real model.

The ONNX backend node cases of every linearized operator (compiled strictly for the fp32
target, calibrated on the case's own inputs, within the bound ``nm_tvm.approx.op_error_bound``
states) run with all other node cases in tests/test_conformance.py, each held to the status
recorded in tests/conformance_ledger.json; that is also where every claimed operator must have
a passing case (``test_every_operator_has_passing_cases``).
"""


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
