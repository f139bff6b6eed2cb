"""nm_tvm: the NeuralMatrix flow on Apache TVM Relax for one GEMM accelerator.

``nm_tvm.compile(model, target="nm/fp32-16x16")`` -> ``CompiledModel.run(inputs)``;
``nm_tvm.validate(model, ...)`` compares with ONNX Runtime.

TVM is imported on first use of the API, not by ``import nm_tvm``: the CLI's ``--version``,
``--help`` and ``targets`` do not need it (importing TVM takes about a second).
"""
__all__ = ["CompiledModel", "DEFAULT_TARGET", "InputError", "ValidationReport", "compile",
           "resolve_target", "validate"]
__version__ = "0.1.0"


def _load_api() -> dict:
    from nm_tvm import host_kernels  # noqa: F401 -- registers nm.pwl_map for host fallback
    from nm_tvm import pipeline  # noqa: F401 -- registers the "nm" Relax pipeline
    from nm_tvm.runtime import CompiledModel, InputError, compile  # noqa: A004
    from nm_tvm.target.tags import DEFAULT_TARGET, register_tags, resolve_target
    from nm_tvm.validate import ValidationReport, validate

    register_tags()
    return {"CompiledModel": CompiledModel, "DEFAULT_TARGET": DEFAULT_TARGET,
            "InputError": InputError, "ValidationReport": ValidationReport, "compile": compile,
            "resolve_target": resolve_target, "validate": validate}


def __getattr__(name: str):
    if name in __all__:
        api = _load_api()
        globals().update(api)
        return api[name]
    raise AttributeError(f"module 'nm_tvm' has no attribute '{name}'")
