"""nm_tvm: the NeuralMatrix flow on Apache TVM Relax for one GEMM accelerator.

``nm_tvm.compile(model, target="nm/fp32-16x16")`` -> ``CompiledModel.run(inputs)``;
``nm_tvm.validate(model, ...)`` compares with ONNX Runtime.
"""
from nm_tvm import host_kernels as _host_kernels  # registers nm.pwl_map for host fallback
from nm_tvm import pipeline as _pipeline  # registers the "nm" Relax pipeline
from nm_tvm.runtime import CompiledModel, InputError, compile  # noqa: A004
from nm_tvm.target.tags import DEFAULT_TARGET, register_tags, resolve_target
from nm_tvm.validate import ValidationReport, validate

register_tags()

__all__ = ["CompiledModel", "DEFAULT_TARGET", "InputError", "ValidationReport", "compile",
           "resolve_target", "validate"]
__version__ = "0.1.0"
del _pipeline, _host_kernels
