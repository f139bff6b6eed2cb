"""Compare simulator outputs with ONNX Runtime (and, optionally, with the rounding bound)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nm_tvm import frontend
from nm_tvm.error_bound import rounding_error_bound
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


@dataclass
class ValidationReport:
    target: str
    outputs: list[OutputComparison] = field(default_factory=list)
    stats: object = None

    @property
    def max_rel_err(self) -> float:
        return max(o.max_rel_err for o in self.outputs)

    def rows(self) -> list[dict]:
        return [{"output": o.name, "max_abs_err": o.max_abs_err, "max_rel_err": o.max_rel_err,
                 "cosine": o.cosine, "within_bound": o.within_bound} for o in self.outputs]


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
             with_bound: bool = False, seed: int = 0) -> ValidationReport:
    """Compile for ``target``, run on the simulator and in ONNX Runtime, compare every output."""
    compiled = nm_compile(model, target=target, input_shapes=input_shapes)
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
    return report
