"""Codegen driver: replace every ``Codegen="nm"`` composite call with an accelerator call.

Each composite becomes ``R.call_dps_packed("nm_accel.run", [program, operands...])``: the
program (int64 constant) and the layer's weights travel inside the executable as constants, so
an exported library is self-contained, and the Relax VM calls the C++ simulator directly.
The layer table (names, kinds, analytic MACs) goes into the pass's compile record
(``nm_tvm.record.CompileRecord.layers``).
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from nm_tvm.extern_funcs import RUN_FUNC
from nm_tvm.provenance import layer_source
from nm_tvm.record import CompileRecord
from nm_tvm.target import codegen as cg
from nm_tvm.target.hardware import HardwareConfig
from nm_tvm.target.isa import Program

from .composite import Composite
from .operators import lower_composite

# Passes run behind the FFI: register the codegen's error class so that a layer that cannot be
# mapped arrives in Python as CodegenError (not a bare RuntimeError).
tvm_ffi.register_error(cg.CodegenError)


def _unique_names(layers: list[dict]) -> None:
    """Number the layers that share a source node (a decomposed softmax is several layers);
    ``node`` keeps the shared name, for reports per source node."""
    counts = Counter(layer["name"] for layer in layers)
    seen: Counter = Counter()
    for layer in layers:
        base = layer["node"] = layer["name"]
        if counts[base] > 1:
            layer["name"] = f"{base}/{seen[base]}"
            seen[base] += 1


def _composite_of(outer: relax.Function) -> relax.Function:
    """The ``Composite`` function wrapped by an ``annotate_codegen`` outer function."""
    for block in outer.body.blocks:
        for binding in block.bindings:
            if isinstance(binding.value, relax.Function):
                return binding.value
    raise cg.CodegenError(f"no composite function inside {outer}")


def _dram_use(acc: cg.AcceleratorCall, program: Program) -> tuple[int, int]:
    """(constant bytes, other region bytes: activations and scratch) of one layer's program
    (``program``: ``acc.program`` decoded)."""
    consts = sum(int(np.asarray(op).nbytes) for op in acc.operands if not isinstance(op, cg.Param))
    return consts, sum(r.size for r in program.regions) - consts


@tvm_ffi.register_error
class DramCapacityError(cg.CodegenError):
    """The whole model does not fit the target's DRAM (registered: crosses the FFI intact)."""


def check_total_dram(layers: list[dict], hw: HardwareConfig) -> None:
    """All layers' weights stay resident in DRAM next to the largest layer's activations: a
    model whose total does not fit the target's DRAM is rejected (each layer alone may fit)."""
    weights = sum(layer["dram_const_bytes"] for layer in layers)
    peak = max((layer["dram_activation_bytes"] for layer in layers), default=0)
    if weights + peak > hw.dram_bytes:
        mib = 2.0 ** 20
        raise DramCapacityError(
            f"the model needs at least {(weights + peak) / mib:.4g} MiB of DRAM (weights and "
            f"tables of all {len(layers)} layers {weights / mib:.4g} MiB + the largest layer's "
            f"activations {peak / mib:.4g} MiB) but target '{hw.name}' has {hw.dram_mib} MiB "
            "(memories.dram_mib)")


@tvm.transform.module_pass(opt_level=0, name="nm.LowerToAccelerator")
class LowerToAccelerator:
    """Generate a program per accelerator composite and call the simulator from the VM; the
    layer table goes to ``record.layers`` (the caller's record, or the pass's own)."""

    def __init__(self, hw: HardwareConfig, record: CompileRecord | None = None):
        self.hw = hw
        self.record = record if record is not None else CompileRecord()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        layers: list[dict] = []
        hw = self.hw

        @relax.expr_functor.mutator
        class Rewriter(relax.PyExprMutator):
            def visit_var_binding_(self, binding):
                value = binding.value
                if isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar):
                    func = mod[value.op]
                    if isinstance(func, relax.Function) and func.attrs and "Codegen" in func.attrs:
                        new_value = self._lower(binding.var, value, func)
                        self.set_var_remap(binding.var, self.builder_.emit(
                            new_value, name_hint=binding.var.name))
                        return
                super().visit_var_binding_(binding)

            def _lower(self, var, call, outer):
                comp = Composite(_composite_of(outer))
                layer_id = len(layers)
                kind = comp.name.split('.', 1)[1]
                name, nodes = layer_source(call)
                name = name or f"{layer_id:02d}_{kind}"
                try:
                    acc = lower_composite(comp, hw, layer_id)
                except cg.CodegenError as err:
                    raise cg.CodegenError(f"layer '{name}': {err}") from None
                args = [relax.const(acc.program, "int64")]
                for operand in acc.operands:
                    if isinstance(operand, cg.Param):
                        args.append(self.visit_expr(call.args[operand.index]))
                    else:
                        args.append(relax.const(np.ascontiguousarray(operand, np.float32)))
                program = Program.decode(acc.program)
                consts, activations = _dram_use(acc, program)
                layers.append({"id": layer_id, "name": name, "kind": comp.name,
                               "source_nodes": nodes,
                               "macs": int(acc.macs), "out_shape": list(acc.out_shape),
                               "instructions": len(program.instructions),
                               "dram_const_bytes": consts, "dram_activation_bytes": activations,
                               **acc.notes})
                return relax.call_dps_packed(RUN_FUNC, relax.Tuple(args),
                                             relax.TensorType(acc.out_shape, acc.out_dtype))

        rewriter = Rewriter(mod)
        lowered = tvm.IRModule({}, attrs=mod.attrs)
        for gv, func in mod.functions.items():
            if not isinstance(func, relax.Function):
                lowered[gv] = func
            elif not (func.attrs and "Codegen" in func.attrs):  # composites are now programs
                lowered[gv] = rewriter.visit_expr(func)
        lowered = relax.transform.DeadCodeElimination()(lowered)
        _unique_names(layers)
        check_total_dram(layers, hw)
        self.record.layers = layers
        return lowered
