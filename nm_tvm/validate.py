"""Compare simulator outputs with ONNX Runtime, pass / fail against a derived tolerance.

Each output passes when ``max |sim - ref| <= rtol * max |ref| + pwl_bound``: ``rtol`` covers
operand rounding (fp32 1e-5, bf16 5e-2 unless given), ``pwl_bound`` the fitted tables' error
propagated to the output (:func:`nm_tvm.pwl_error_bound.pwl_error_bound`). So a model passes
when its approximations behave as fitted and fails when they do not; tables whose inputs left
their fitted range are listed (``out_of_range``), since the bound does not cover them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nm_tvm import frontend
from nm_tvm.error_bound import rounding_error_bound
from nm_tvm.pwl_error_bound import out_of_range, pwl_error_bound
from nm_tvm.reference import onnx_runtime_outputs
from nm_tvm.runtime import compile as nm_compile


@dataclass
class OutputComparison:
    name: str
    max_abs_err: float
    max_rel_err: float  # max |sim - ref| / max |ref| (normwise: robust where ref crosses zero)
    cosine: float
    bound: float | None = None  # max of the elementwise rounding bound (error_bound.py)
    within_bound: bool | None = None  # every element inside its bound
    tolerance: float | None = None  # absolute: rtol * max|ref| + the PWL bound
    passed: bool | None = None


@dataclass
class ValidationReport:
    target: str
    outputs: list[OutputComparison] = field(default_factory=list)
    stats: object = None
    out_of_range: list[dict] = field(default_factory=list)  # tables fed outside their range

    @property
    def max_rel_err(self) -> float:
        return max(o.max_rel_err for o in self.outputs)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def rows(self) -> list[dict]:
        return [{"output": o.name, "max_abs_err": o.max_abs_err, "max_rel_err": o.max_rel_err,
                 "cosine": o.cosine, "tolerance": o.tolerance, "passed": o.passed,
                 "within_bound": o.within_bound} for o in self.outputs]


def default_rtol(operand_dtype: str) -> float:
    """Normwise rounding tolerance of the operand dtype."""
    return 1e-5 if operand_dtype == "float32" else 5e-2


def judge(compiled, inputs: dict, comparisons: list[OutputComparison], refs: list[np.ndarray],
          rtol: float | None = None) -> list[dict]:
    """Fill each comparison's tolerance and verdict; returns the out-of-range tables."""
    rtol = default_rtol(compiled.hw.operand_dtype) if rtol is None else rtol
    bounds = pwl_error_bound(compiled, inputs)
    for c, ref, pwl in zip(comparisons, refs, bounds):
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        c.tolerance = rtol * scale + pwl
        c.passed = c.max_abs_err <= c.tolerance
    return out_of_range(compiled, inputs)


def compare(name: str, sim: np.ndarray, ref: np.ndarray) -> OutputComparison:
    if sim.shape != ref.shape:
        raise ValueError(f"output '{name}': simulator shape {sim.shape} != reference {ref.shape}")
    diff = np.abs(sim.astype(np.float64) - ref.astype(np.float64))
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    a, b = sim.reshape(-1).astype(np.float64), ref.reshape(-1).astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
    max_abs = float(diff.max()) if diff.size else 0.0
    return OutputComparison(name, max_abs, max_abs / scale if scale > 0 else max_abs, cosine)


def validate(model, inputs: dict | None = None, target=None, input_shapes: dict | None = None,
             with_bound: bool = False, seed: int = 0, rtol: float | None = None,
             calibration=None) -> ValidationReport:
    """Compile for ``target``, run on the simulator and in ONNX Runtime, compare every output
    and judge it against the derived tolerance (module doc); ``report.passed``."""
    compiled = nm_compile(model, target=target, input_shapes=input_shapes,
                          calibration=calibration)
    imported = frontend.import_model(model, input_shapes)
    if imported.onnx_model is None:
        raise ValueError("validate() needs an ONNX model (ONNX Runtime is the reference)")
    if inputs is None:
        inputs = frontend.random_inputs(imported, seed)
    sim = compiled.run(inputs)
    ref = onnx_runtime_outputs(imported.onnx_model, inputs)
    report = ValidationReport(compiled.hw.name, stats=compiled.stats)
    bounds = (rounding_error_bound(imported.onnx_model, inputs, compiled.hw.operand_dtype)
              if with_bound else None)
    for i, name in enumerate(imported.output_names):
        cmp_ = compare(name, sim[i], ref[i])
        if bounds is not None:
            cmp_.bound = float(bounds[i].max())
            cmp_.within_bound = bool(np.all(np.abs(sim[i] - ref[i]) <= bounds[i]))
        report.outputs.append(cmp_)
    report.out_of_range = judge(compiled, inputs, report.outputs, ref, rtol)
    return report
