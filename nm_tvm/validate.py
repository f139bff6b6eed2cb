"""Compare simulator outputs with ONNX Runtime, and bound the error rounding may cause."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from nm_tvm import frontend
from nm_tvm.passes import Canonicalize
from nm_tvm.target.hardware import HardwareConfig

UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "bfloat16": 2.0 ** -8}
GEMM_KINDS = ("conv2d", "matmul", "avg_pool2d", "mean")


@dataclass
class OutputComparison:
    name: str
    max_abs_err: float
    max_rel_err: float  # max |sim - ref| / max |ref| (normwise: robust where ref crosses zero)
    cosine: float
    bound: float | None = None  # max of the elementwise rounding bound, when computed
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


def onnx_runtime_outputs(proto, inputs: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def _abs_constants(mod: tvm.IRModule) -> tvm.IRModule:
    @relax.expr_functor.mutator
    class AbsConst(relax.PyExprMutator):
        def visit_constant_(self, const):
            return relax.const(np.abs(const.value.numpy()))

    out = tvm.IRModule({})
    mutator = AbsConst(mod)
    for gv, func in mod.functions.items():
        out[gv] = mutator.visit_expr(func) if isinstance(func, relax.Function) else func
    return out


def rounding_error_bound(model, inputs: dict, hw: HardwareConfig,
                         input_shapes: dict | None = None) -> list[np.ndarray]:
    """Elementwise bound on |simulated - exact| from operand rounding, per output.

    For networks of GEMMs (conv, matmul, pooling), additions and ReLU: with operands rounded to
    the target's operand type (unit roundoff u) and fp32 accumulation over at most K terms, one
    GEMM layer turns an input error bound ``c * A_in`` into ``((1 + t) * c + t) * A_out`` with
    ``t = (1 + u)^2 * (1 + gamma_K) - 1`` and ``A`` the *absolute network*: the same network with
    |weights|, |biases| and |inputs| (ReLU is then the identity). After L GEMM layers the bound
    is ``((1 + t)^L - 1) * A_L``; the reference's own fp32 error adds ``gamma_K * A_L``.
    ``A_L`` is evaluated on the fp32 simulator (all terms are non-negative, so its own rounding
    is negligible next to the bound).
    """
    from nm_tvm.runtime import compile as nm_compile
    from nm_tvm.target.hardware import load_preset

    imported = frontend.import_model(model, input_shapes)
    abs_mod = _abs_constants(Canonicalize()(imported.mod))
    reference_hw = load_preset("fp32-16x16")
    compiled = nm_compile(abs_mod, target=reference_hw)
    abs_inputs = {compiled.input_names[i]: np.abs(inputs[name])
                  for i, name in enumerate(imported.input_names)}
    absolute = compiled.run(abs_inputs)
    gemms = [layer for layer in compiled.layers
             if layer["kind"].split(".", 1)[1].startswith(GEMM_KINDS)]
    k_max = max([_layer_k(layer) for layer in gemms] + [1])
    u = UNIT_ROUNDOFF[hw.operand_dtype]
    gamma = (k_max + 2) * 2.0 ** -24 / (1 - (k_max + 2) * 2.0 ** -24)
    t = (1 + u) ** 2 * (1 + gamma) - 1
    factor = (1 + t) ** len(gemms) - 1 + gamma
    return [factor * a for a in absolute]


def _layer_k(layer: dict) -> int:
    """Reduction length of a GEMM layer, from its MACs and output size."""
    out = int(np.prod(layer["out_shape"]))
    return max(1, layer["macs"] // max(1, out))


def validate(model, inputs: dict | None = None, target=None, input_shapes: dict | None = None,
             with_bound: bool = False, seed: int = 0) -> ValidationReport:
    """Compile for ``target``, run on the simulator and in ONNX Runtime, compare every output."""
    from nm_tvm.runtime import compile as nm_compile

    compiled = nm_compile(model, target=target, input_shapes=input_shapes)
    imported = frontend.import_model(model, input_shapes)
    if imported.onnx_model is None:
        raise ValueError("validate() needs an ONNX model (ONNX Runtime is the reference)")
    if inputs is None:
        inputs = frontend.random_inputs(imported, seed)
    sim = compiled.run(inputs)
    ref = onnx_runtime_outputs(imported.onnx_model, inputs)
    report = ValidationReport(compiled.hw.name, stats=compiled.stats)
    bounds = rounding_error_bound(model, inputs, compiled.hw, input_shapes) if with_bound else None
    for i, name in enumerate(imported.output_names):
        cmp_ = compare(name, sim[i], ref[i])
        if bounds is not None:
            cmp_.bound = float(bounds[i].max())
            cmp_.within_bound = bool(np.all(np.abs(sim[i] - ref[i]) <= bounds[i]))
        report.outputs.append(cmp_)
    return report
