"""The ONNX operator conformance suite, every case, against the ledger (no silent skips).

``results`` runs every ONNX backend node case on the simulator (the same run as
``benchmarks/conformance.py``: about 35 s on an idle 2-core host, up to 100 s under load) and
each case must have the status ``tests/conformance_ledger.json`` records for it: a passed case
that no longer passes is a regression (a compiler rejection shows here, not as a skip); a case that passes while the ledger says unsupported fails too
("update the ledger: make ledger"), so the ledger stays true. No case may fail. Reasons of
unsupported cases may change freely. The remaining tests check the runner's own rules.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nm_tvm import conformance, support

LEDGER = Path(__file__).parent / "conformance_ledger.json"

# Operators of support.SUPPORTED_OPS that no ONNX node case can pass, each with the reason;
# every other claimed operator must have a passing case in the ledger.
NO_PASSING_CASE: dict[str, str] = {
    # every ONNX Cast case converts between float types (or from strings); the int32 / int64 ->
    # float casts the accelerator claims are checked against ORT in tests/test_integer_inputs.py
    "Cast": "tests/test_integer_inputs.py::test_cast_of_large_integers_is_exact",
    # every CastLike case converts to or from float16 / double / float8 / 4-bit types
    "CastLike": "tests/test_masks.py::test_comparisons_logic_and_where_match_onnx_runtime_exactly",
    # every ReduceLogSumExp case (and its _expanded twin) is float64, but the empty ones
    "ReduceLogSumExp": "tests/test_more_ops.py::test_reduce_log_sum_exp_uses_log_softmax_pieces",
}


@pytest.fixture(scope="module")
def ledger():
    return conformance.load_ledger(LEDGER)


@pytest.fixture(scope="module")
def results(ledger):
    cases = conformance._quiet_collect()
    out = conformance.run_cases(cases, ledger["target"])
    assert len(out) == len(cases) and len({r.name for r in out}) == len(out)
    return {r.name: r for r in out}


def test_no_case_regressed_or_failed(results, ledger):
    regressions, _ = conformance.ledger_problems(list(results.values()), ledger)
    assert not regressions, (f"{len(regressions)} conformance regression(s) against "
                             f"{LEDGER.name}:\n" + "\n".join(regressions))


def test_ledger_is_up_to_date(results, ledger):
    _, stale = conformance.ledger_problems(list(results.values()), ledger)
    assert not stale, (f"update the ledger: {conformance.LEDGER_COMMAND}\n" + "\n".join(stale))


def test_every_case_has_a_status_and_reason(results):
    for r in results.values():
        assert r.status in ("passed", "failed", "unsupported")
        if r.status != "passed":
            assert r.reason, r.name
        if r.status == "passed" and r.level == support.EXACT:
            assert r.max_abs_err <= r.tolerance, r.name


def test_unsupported_reasons_are_specific(results):
    assert "is uint16 (DRAM holds float32, int32, int64, bool, uint8, int8)" in \
        results["test_add_uint16"].reason
    # integer arithmetic is named as the accelerator's gap, not a crash
    assert "relax.add (node 'sum')" in results["test_add_uint8"].reason
    assert results["test_averagepool_3d_default"].reason.startswith("NotGemmOnlyError")
    # Conv weights and Clip bounds are graph inputs in the ONNX cases: bound as constants.
    assert results["test_basic_conv_with_padding"].frozen_inputs == ["W"]
    clip = results["test_clip_min_greater_than_max"]
    assert clip.frozen_inputs == ["max", "min"] and clip.level == support.EXACT


def test_every_operator_has_passing_cases(ledger):
    """No claimed operator may be covered by unsupported cases alone."""
    passing = {e["op"] for e in ledger["cases"].values() if e["status"] == "passed"}
    assert set(NO_PASSING_CASE) <= set(support.SUPPORTED_OPS)
    assert not set(NO_PASSING_CASE) & passing, "listed in NO_PASSING_CASE but has one"
    missing = [op for op in support.SUPPORTED_OPS if op not in passing | set(NO_PASSING_CASE)]
    assert not missing, f"no passing node case for {missing}"


def _result(name, status, reason=""):
    return conformance.CaseResult(name, "Op", status, reason)


def test_ledger_rules():
    ledger = {"cases": {"a": {"op": "Op", "status": "passed"},
                        "b": {"op": "Op", "status": "unsupported", "reason": "old"},
                        "c": {"op": "Op", "status": "unsupported", "reason": "old"},
                        "gone": {"op": "Op", "status": "passed"}}}
    run = [_result("a", "unsupported", "LinearizeError: no"), _result("b", "passed"),
           _result("c", "unsupported", "a new reason"), _result("new", "unsupported", "x")]
    regressions, stale = conformance.ledger_problems(run, ledger)
    assert regressions == ["a: was passed, now unsupported: LinearizeError: no"]
    assert stale == ["b: was unsupported, now passes", "new: not in the ledger (now unsupported)",
                     "gone: in the ledger, no longer an ONNX case"]
    regressions, _ = conformance.ledger_problems([_result("b", "failed", "max abs err")], ledger)
    assert regressions == ["b: failed (ledger: unsupported): max abs err"]
    # A failure is not recorded: the case keeps its old entry (or has none).
    kept = conformance.ledger_entries([_result("b", "failed", "boom"), _result("x", "failed")],
                                      ledger["cases"])
    assert kept == {"b": ledger["cases"]["b"]}


def test_ledger_file_round_trips(ledger):
    entries = conformance.ledger_entries(
        [_result("z", "passed"), _result("y", "unsupported", "why " * 100)])
    text = conformance.format_ledger(entries, "nm/fp32-16x16")
    data = json.loads(text)
    assert list(data["cases"]) == ["y", "z"] and data["cases"]["z"] == {"op": "Op",
                                                                       "status": "passed"}
    assert len(data["cases"]["y"]["reason"]) <= conformance.LEDGER_REASON_CHARS + 4
    lines = text.splitlines()  # "{", 4 header keys, "cases", one line per case, "}}"
    assert len(lines) == 1 + 4 + 1 + 2 + 1 and lines[-3].startswith('"y": ') and lines[-1] == "}}"
    # The committed ledger is in that form (what `make ledger` writes).
    assert LEDGER.read_text() == conformance.format_ledger(ledger["cases"], ledger["target"],
                                                          ledger["onnx"])


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
