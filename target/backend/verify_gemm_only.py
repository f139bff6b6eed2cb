"""Check that every compute op runs on the accelerator; list (or reject) what does not.

Allowed on the host: the accelerator calls themselves and pure metadata ops (reshape and its
relatives, which the VM turns into views without touching data). Anything else is compute that
escaped the accelerator; strict mode makes that a compile error naming each op and binding.
"""
from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax

from nm_tvm.provenance import source_node
from nm_tvm.record import CompileRecord

from nm_tvm.extern_funcs import RUN_FUNC

VIEW_OPS = {"relax.reshape", "relax.flatten", "relax.squeeze", "relax.expand_dims"}


@tvm_ffi.register_error
class NotGemmOnlyError(ValueError):
    """Compute left on the host in strict mode (registered so it crosses the FFI intact)."""


def host_ops(mod: tvm.IRModule) -> list[tuple[str, str]]:
    """(where, op name) of every compute op outside the accelerator; where is the source
    model's node when the op came from one, else the Relax binding."""
    found: list[tuple[str, str]] = []
    for _gv, func in mod.functions.items():
        if not isinstance(func, relax.Function) or (func.attrs and "Codegen" in func.attrs):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if not isinstance(value, relax.Call):
                    continue
                op = value.op
                if isinstance(op, tvm.ir.Op):
                    if op.name == "relax.call_dps_packed" and str(value.args[0].global_symbol) == RUN_FUNC:
                        continue
                    if op.name in VIEW_OPS:
                        continue
                    name = op.name
                    if op.name in ("relax.call_tir", "relax.call_dps_packed"):
                        name = f"{op.name}({value.args[0]})"
                    found.append((_where(binding), name))
                else:
                    found.append((_where(binding), f"call to {op}"))
    return found


def _where(binding) -> str:
    node = source_node(binding.value)
    return f"node '{node}'" if node is not None else f"binding '{binding.var.name}'"


@tvm.transform.module_pass(opt_level=0, name="nm.VerifyGemmOnly")
class VerifyGemmOnly:
    """Record host ops in ``record.host_ops`` (the caller's record, or the pass's own); raise
    in strict mode."""

    def __init__(self, strict: bool = True, record: CompileRecord | None = None):
        self.strict = strict
        self.record = record if record is not None else CompileRecord()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        leftover = host_ops(mod)
        if leftover and self.strict:
            listing = ", ".join(f"{op} ({where})" for where, op in leftover)
            raise NotGemmOnlyError(
                f"{len(leftover)} operator(s) are not supported by the accelerator: {listing}. "
                "Pass strict=False to run them on the host CPU instead.")
        self.record.host_ops = [f"{where}:{op}" for where, op in leftover]
        return mod
