"""ONNX operator conformance: the ONNX backend node test cases on the simulator.

Every case of ``onnx.backend.test.case.node.collect_testcases()`` gets exactly one status:

* ``unsupported`` -- with a reason: an operator outside ``nm_tvm.support.SUPPORTED_OPS``, an
  input other than float32 / int32 / int64 or a non-float32 output, a dynamic input shape,
  or the compiler rejecting the case's attributes (``NotGemmOnlyError`` / ``CodegenError`` /
  ``ModelLoadError``);
* ``passed`` -- it compiled for the target (strict: GEMM-only) and every output of every data
  set matched the expected output: exact cases within ``rtol * max|expected| + atol``;
  cases with approximated operators within that plus the sum of the fitted max errors of the
  compiled model's non-exact PWL tables (``compiled.pwl_tables``; each bound holds over the
  table's fitted input range) and any ``OpSupport.max_abs_err``;
* ``failed`` -- it compiled but a run raised or an output mismatched (shape, value, NaN).

Inputs of operators that need constant operands (``OpSupport.constant_inputs``, e.g. Conv
weights, Clip bounds) are bound as initializers before compiling: the accelerator takes weights
as constants. Nothing is dropped silently: the JSON lists every case with its status and reason.

The ledger (``tests/conformance_ledger.json``, one line per case) records every case's status
(and, for unsupported ones, the reason). ``make test`` runs every case and fails when a status
differs from it (:func:`ledger_problems`): a passing case that no longer passes is a
regression, a case that now passes but is recorded unsupported (or a case added / removed)
means the ledger is out of date; a failed case is never recorded (it fails the test until
fixed). Regenerate it, with ``benchmarks/results/conformance.json``, from one full run:
``make ledger`` (= ``python benchmarks/conformance.py --update-ledger``).
"""
from __future__ import annotations

import importlib
import json
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from nm_tvm import approx, support

RTOL, ATOL = 1e-5, 1e-6  # exact fp32: normwise relative (against max |expected|) + absolute


@dataclass
class CaseResult:
    name: str
    op: str
    status: str  # passed | failed | unsupported
    reason: str = ""
    level: str = ""  # exact | approximate ("" when unsupported before compiling)
    max_abs_err: float | None = None
    tolerance: float | None = None
    frozen_inputs: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _quiet_collect(modules=None):
    """ONNX node test cases: all of them, or only those of the named case modules
    (``onnx/backend/test/case/node/<module>.py``, e.g. ``relu``): much faster."""
    import warnings

    node_pkg = importlib.import_module("onnx.backend.test.case.node")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if modules is None:
            return list(node_pkg.collect_testcases())
        for name in modules:
            importlib.import_module(f"onnx.backend.test.case.node.{name}")
    return list(node_pkg._NodeTestCases)


_SCHEMAS = None


def _schema_names() -> dict[str, str]:
    global _SCHEMAS
    if _SCHEMAS is None:
        _SCHEMAS = {s.name.lower(): s.name for s in onnx.defs.get_all_schemas()
                    if s.domain in ("", "ai.onnx")}
    return _SCHEMAS


def case_op(case) -> str:
    """The operator a case tests: the longest ONNX op name prefixing the case name
    (``test_averagepool_2d`` -> AveragePool), except that a graph of one op type named in the
    case, or not matching that prefix, tests that op (``test_constant_pad`` -> Pad, not
    Constant; ``test_less_equal`` -> LessOrEqual, not Less); else the single op type."""
    key = re.sub(r"[^a-z0-9]", "", case.name.lower().removeprefix("test_"))
    types = {n.op_type for n in case.model.graph.node}
    best = max((low for low in _schema_names() if key.startswith(low)), key=len, default=None)
    only = next(iter(types)) if len(types) == 1 else None
    if (only and not key.endswith("expanded")
            and (only.lower() in key or best is None or _schema_names()[best] not in types)
            and (best is None or _schema_names()[best] != only)):
        # test_constant_pad tests Pad, not Constant; test_less_equal LessOrEqual, not Less
        # (an expanded case: its op)
        return only
    if best:
        return _schema_names()[best]
    return only or "other"


def _freeze_constant_inputs(model: onnx.ModelProto, inputs: list[np.ndarray]):
    """Bind graph inputs feeding constant-operand slots (Conv weights, BatchNorm statistics)
    as initializers. Returns (model, runtime input dict, frozen names)."""
    graph_inputs = [i.name for i in model.graph.input]
    values = dict(zip(graph_inputs, inputs))
    frozen = set()
    for node in model.graph.node:
        entry = support.SUPPORTED_OPS.get(node.op_type)
        for pos in (entry.constant_inputs if entry else ()):
            if pos < len(node.input) and node.input[pos] in values:
                frozen.add(node.input[pos])
    if not frozen:
        return model, values, []
    model = onnx.ModelProto.FromString(model.SerializeToString())
    keep = [i for i in model.graph.input if i.name not in frozen]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    for name in sorted(frozen):
        model.graph.initializer.append(numpy_helper.from_array(values.pop(name), name))
    return model, values, sorted(frozen)


def _as_tensor(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)
    return None


def _precheck(case) -> str | None:
    """Reason to count the case unsupported before compiling (operators, data), or None."""
    model = case.model
    if model is None:
        return "no model in the test case"
    if any(g.op_type in ("If", "Loop", "Scan") for g in model.graph.node):
        return "control flow (If / Loop / Scan)"
    unclaimed = sorted({op for op, _ in support.unsupported_nodes(model)})
    if unclaimed:
        return "operator(s) not in the support table: " + ", ".join(unclaimed)
    if not case.data_sets:
        return "no data sets"
    for inputs, outputs in case.data_sets:
        for value in list(inputs) + list(outputs):
            if _as_tensor(value) is None:
                return f"non-tensor input/output ({type(value).__name__})"
    return None


# Element types DRAM regions hold (target/isa_spec.json, ElemType).
DRAM_DTYPES = tuple(np.dtype(t) for t in ("float32", "int32", "int64", "bool", "uint8", "int8"))


def _postcheck(model, feeds: dict, outputs) -> str | None:
    """After constant operands are frozen: run-time inputs and outputs of the types DRAM
    holds, shapes static."""
    held = ", ".join(str(t) for t in DRAM_DTYPES)
    for name, value in feeds.items():
        if value.dtype not in DRAM_DTYPES:
            return f"input '{name}' is {value.dtype} (DRAM holds {held})"
    for value in outputs:
        if _as_tensor(value).dtype not in DRAM_DTYPES:
            return f"output of type {_as_tensor(value).dtype} (DRAM holds {held})"
    for inp in model.graph.input:
        ttype = inp.type.tensor_type
        if not ttype.HasField("shape") or any(not d.HasField("dim_value")
                                              for d in ttype.shape.dim):
            return f"dynamic or unknown shape of input '{inp.name}'"
    return None


def _tolerance(model, op: str, compiled, inputs: list, expected: np.ndarray,
               output: int = 0) -> tuple[str, float]:
    """(level, absolute tolerance) for output number ``output`` of this case."""
    expected = expected.astype(np.float64) if expected.dtype.kind != "f" else expected
    scale = float(np.nanmax(np.abs(expected))) if expected.size and np.isfinite(
        expected).any() else 0.0
    scale = scale if np.isfinite(scale) else 0.0
    exact_tol = RTOL * scale + ATOL
    if not any(support.level(n.op_type) == support.APPROX for n in model.graph.node):
        return support.EXACT, exact_tol
    finite = np.where(np.isfinite(expected), expected, 0.0)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in model.graph.node[-1].attribute}
    bound = approx.op_error_bound(op, compiled.pwl_tables, [np.asarray(v) for v in inputs],
                                  finite, attrs, output)
    return support.APPROX, max(bound, exact_tol)


def _only_layer_norm_y(model, outputs):
    """LayerNormalization cases also declare the optional Mean / InvStdDev outputs, which TVM's
    importer does not compute (the frontend refuses models that use them): drop them and check
    Y. Returns (model, outputs, note)."""
    if not any(n.op_type == "LayerNormalization" and len(n.output) > 1 for n in model.graph.node):
        return model, outputs, ""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for node in model.graph.node:
        if node.op_type == "LayerNormalization":
            del node.output[1:]
    produced = {o for n in model.graph.node for o in n.output}
    keep = [k for k, o in enumerate(model.graph.output) if o.name in produced]
    kept = [model.graph.output[k] for k in keep]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return model, [[ds[k] for k in keep] for ds in outputs], "Mean/InvStdDev outputs not compared"


def _compare(sim: np.ndarray, ref: np.ndarray, tol: float) -> tuple[bool, float, str]:
    if sim.shape != ref.shape:
        return False, float("inf"), f"shape {sim.shape} != expected {ref.shape}"
    if sim.dtype != ref.dtype:
        return False, float("inf"), f"dtype {sim.dtype} != expected {ref.dtype}"
    if ref.dtype.kind != "f":  # integers and booleans: exactly
        wrong = int(np.count_nonzero(sim != ref))
        return wrong == 0, float(wrong > 0), "" if not wrong else \
            f"{wrong} of {ref.size} {ref.dtype} elements differ"
    ref_nan, sim_nan = np.isnan(ref), np.isnan(sim)
    if not np.array_equal(ref_nan, sim_nan):
        return False, float("inf"), "NaN pattern differs"
    ref_inf = np.isinf(ref)
    if not np.array_equal(sim[ref_inf], ref[ref_inf]) or np.isinf(sim[~ref_inf]).any():
        return False, float("inf"), "Inf pattern differs"
    finite = ~(ref_nan | ref_inf)
    err = float(np.max(np.abs(sim[finite].astype(np.float64) - ref[finite]))) if finite.any() \
        else 0.0
    return err <= tol, err, "" if err <= tol else f"max abs err {err:.3g} > tolerance {tol:.3g}"


def run_case(case, target="nm/fp32-16x16") -> CaseResult:
    from nm_tvm.frontend import ModelLoadError
    from nm_tvm.target.backend import NotGemmOnlyError
    from nm_tvm.runtime import compile as nm_compile
    from nm_tvm.passes import LinearizeError
    from nm_tvm.target.codegen import CodegenError

    start = time.perf_counter()
    result = CaseResult(case.name, case_op(case), "unsupported")
    reason = _precheck(case)
    if reason:
        result.reason = reason
        return result
    inputs0 = [_as_tensor(v) for v in case.data_sets[0][0]]
    model, expected_sets, note = _only_layer_norm_y(case.model, [o for _, o in case.data_sets])
    model, feeds, result.frozen_inputs = _freeze_constant_inputs(model, inputs0)
    reason = _postcheck(model, feeds, case.data_sets[0][1])
    if reason:
        result.reason = reason
        return result
    approximate = any(support.level(n.op_type) == support.APPROX for n in model.graph.node)
    try:
        compiled = nm_compile(model, target=target, calibration=[feeds] if approximate else None)
    except (NotGemmOnlyError, CodegenError, ModelLoadError, LinearizeError) as err:
        result.reason = f"{type(err).__name__}: {_short(err)}"
        result.seconds = time.perf_counter() - start
        return result
    except Exception as err:  # noqa: BLE001 -- a compiler crash is a failure, recorded
        result.status, result.reason = "failed", f"compile crashed: {type(err).__name__}: " \
                                                 f"{_short(err)}"
        result.seconds = time.perf_counter() - start
        return result
    worst, tol_used, messages = 0.0, None, []
    for (inputs, _), outputs in zip(case.data_sets, expected_sets):
        values = dict(zip([i.name for i in case.model.graph.input], inputs))
        if any(not np.array_equal(_as_tensor(values[n]), _as_tensor(inputs0[k]))
               for k, n in enumerate(i.name for i in case.model.graph.input)
               if n in result.frozen_inputs):
            messages.append("data sets differ in a frozen constant operand (not run)")
            continue
        feeds = {name: _as_tensor(values[name]) for name in compiled.input_names}
        try:
            sims = compiled.run(feeds)
        except Exception as err:  # noqa: BLE001 -- recorded as a failure
            messages.append(f"run raised {type(err).__name__}: {_short(err)}")
            continue
        if len(sims) != len(outputs):
            messages.append(f"{len(sims)} outputs, expected {len(outputs)}")
            continue
        for k, (sim, ref) in enumerate(zip(sims, outputs)):
            ref = _as_tensor(ref)
            result.level, tol = _tolerance(model, result.op, compiled, inputs, ref, k)
            ok, err, msg = _compare(np.asarray(sim), ref, tol)
            worst = max(worst, err)
            tol_used = tol if tol_used is None else min(tol_used, tol)
            if not ok:
                messages.append(f"output {k}: {msg}")
    result.max_abs_err, result.tolerance = worst, tol_used
    result.status = "failed" if messages else "passed"
    result.reason = "; ".join(messages[:3]) or note
    result.seconds = time.perf_counter() - start
    return result


def _short(err, limit=300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def run_cases(cases, target="nm/fp32-16x16", progress=False) -> list[CaseResult]:
    out = []
    for i, case in enumerate(cases):
        res = run_case(case, target)
        out.append(res)
        if progress and res.status != "unsupported":
            print(f"[{i + 1}/{len(cases)}] {res.status:8s} {res.name} {res.reason[:120]}",
                  file=sys.stderr, flush=True)
    return out


def summarize(results: list[CaseResult]) -> dict:
    per_op: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        per_op[r.op][r.status] += 1
    totals = Counter(r.status for r in results)
    return {"total": len(results), "passed": totals["passed"], "failed": totals["failed"],
            "unsupported": totals["unsupported"],
            "per_op": {op: {k: c[k] for k in ("passed", "failed", "unsupported")}
                       for op, c in sorted(per_op.items())}}


def report(results: list[CaseResult], target: str) -> dict:
    import tvm

    return {"target": target, "onnx": onnx.__version__, "tvm": tvm.__version__,
            "tolerance": {"rtol_vs_max_abs_expected": RTOL, "atol": ATOL,
                          "approximate": "plus the sum of the fitted max_err of the compiled "
                                         "model's non-exact PWL tables"},
            "support_table": support.table_rows(), "summary": summarize(results),
            "cases": [asdict(r) for r in results]}


def format_table(summary: dict, only_claimed: bool = True) -> str:
    """Per-operator counts as a Markdown table (operators of the support table, then others
    with a passed / failed case)."""
    rows = ["| operator | passed | failed | unsupported |", "|---|---:|---:|---:|"]
    for op, c in summary["per_op"].items():
        if only_claimed and op not in support.SUPPORTED_OPS and not (c["passed"] or c["failed"]):
            continue
        rows.append(f"| {op} | {c['passed']} | {c['failed']} | {c['unsupported']} |")
    rows.append(f"| **all {summary['total']} cases** | {summary['passed']} | {summary['failed']} "
                f"| {summary['unsupported']} |")
    return "\n".join(rows)


# ------------------------------------------------------------------ the per-case status ledger
LEDGER_COMMAND = "make ledger (= python benchmarks/conformance.py --update-ledger)"
LEDGER_REASON_CHARS = 120  # reasons are kept for readers; only statuses are compared


def ledger_entries(results: list[CaseResult],
                   previous: dict[str, dict] | None = None) -> dict[str, dict]:
    """name -> {"op", "status"[, "reason"]} (in that order) for every case. A failed case is a
    bug to fix, not a status to record: it keeps its entry of ``previous`` (the old ledger's
    cases), or gets none, so the ledger test goes on reporting it until it is fixed."""
    entries = {}
    for r in sorted(results, key=lambda r: r.name):
        if r.status == "failed":
            if previous and r.name in previous:
                entries[r.name] = previous[r.name]
            continue
        entry = {"op": r.op, "status": r.status}
        if r.status == "unsupported":
            entry["reason"] = _short(r.reason, LEDGER_REASON_CHARS)
        entries[r.name] = entry
    return entries


def format_ledger(entries: dict[str, dict], target: str, onnx_version: str | None = None) -> str:
    """The ledger file: a JSON object, a few header keys, then one sorted line per case."""
    head = {"update": LEDGER_COMMAND, "target": target, "onnx": onnx_version or onnx.__version__,
            "counts": dict(sorted(Counter(e["status"] for e in entries.values()).items()))}
    lines = [f"{json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    cases = [f"{json.dumps(name)}: {json.dumps(entries[name])}"
             for name in sorted(entries)]
    return "{\n" + "\n".join(lines) + '\n"cases": {\n' + ",\n".join(cases) + "\n}}\n"


def load_ledger(path) -> dict:
    from pathlib import Path

    return json.loads(Path(path).read_text())


def ledger_problems(results: list[CaseResult], ledger: dict) -> tuple[list[str], list[str]]:
    """(regressions, stale) of a full run against the ledger.

    regressions: a failed case, or a case the ledger records as passed that did not pass
    (names the case, its old status and its new reason). stale: the ledger is out of date -- a
    case recorded unsupported now passes, or a case is new / gone. Changed reasons of
    unsupported cases are neither."""
    recorded = ledger["cases"]
    regressions, stale = [], []
    for r in results:
        old = recorded.get(r.name, {}).get("status")
        if r.status == "failed":
            regressions.append(f"{r.name}: failed (ledger: {old or 'not listed'}): {r.reason}")
        elif old is None:
            stale.append(f"{r.name}: not in the ledger (now {r.status})")
        elif old == "passed" and r.status != "passed":
            regressions.append(f"{r.name}: was passed, now {r.status}: {r.reason}")
        elif old != "passed" and r.status == "passed":
            stale.append(f"{r.name}: was {old}, now passes")
    seen = {r.name for r in results}
    stale += [f"{name}: in the ledger, no longer an ONNX case" for name in sorted(recorded)
              if name not in seen]
    return regressions, stale
