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

from nm_tvm.provenance import layer_source
from nm_tvm.record import CompileRecord

from .linearize import PWL_FUNC
from nm_tvm.target import codegen as cg
from nm_tvm.target.hardware import HardwareConfig
from nm_tvm.target.isa import Program

RUN_FUNC = "nm_accel.run"

# Passes run behind the FFI: register the codegen's error class so that a layer that cannot be
# mapped arrives in Python as CodegenError (not a bare RuntimeError).
tvm_ffi.register_error(cg.CodegenError)


def _shape(expr) -> tuple:
    return tuple(int(d) for d in expr.ty.shape)


def _const_value(expr) -> np.ndarray:
    return expr.value.numpy()


def _is_const(expr) -> bool:
    return isinstance(expr, tvm.ir.Constant)


class _Composite:
    """The chain inside one composite function: anchor call, then bias / residual / relu."""

    def __init__(self, func: relax.Function):
        self.name = str(func.attrs["Composite"])
        self.params = list(func.params)
        calls = [b.value for blk in func.body.blocks for b in blk.bindings]
        bound = [b.var for blk in func.body.blocks for b in blk.bindings]
        self.anchor = calls[0]
        self.bias = None
        self.residual = None
        self.relu = False
        self.table = None  # a PWL epilogue (nm.pwl_map)
        prev = bound[0]
        for var, call in zip(bound[1:], calls[1:]):
            op = call.op.name
            if op == "relax.nn.relu":
                self.relu = True
            elif _is_pwl(call):
                self.table = _const_value(call.args[1].fields[1])
            elif op == "relax.add":
                other = call.args[1] if call.args[0].same_as(prev) else call.args[0]
                if "_bias" in self.name and self.bias is None:  # the pattern's bias add
                    self.bias = _const_value(other)
                elif _is_const(other):  # a constant residual (loaded as D)
                    self.residual = _const_value(other)
                else:
                    self.residual = cg.Param(self.param_index(other))
            else:
                raise cg.CodegenError(f"{self.name}: unexpected op {op} in composite")
            prev = var

    def param_index(self, expr) -> int:
        for i, p in enumerate(self.params):
            if p.same_as(expr):
                return i
        raise cg.CodegenError(f"{self.name}: operand {expr} is not a parameter of the composite")


def _is_pwl(call) -> bool:
    """An ``nm.pwl_map`` call. Inside a composite FuseOpsByPattern has lifted the extern
    function into a parameter, and pwl_map is the only packed call the patterns admit."""
    if call.op.name != "relax.call_dps_packed":
        return False
    func = call.args[0]
    return isinstance(func, relax.Var) or str(getattr(func, "global_symbol", "")) == PWL_FUNC


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


def _channel_bias(bias: np.ndarray, channels: int, layer: str) -> np.ndarray:
    flat = np.asarray(bias, np.float32).reshape(-1)
    if flat.size not in (1, channels):
        raise cg.CodegenError(f"{layer}: bias of shape {bias.shape} is not per output channel")
    return np.broadcast_to(flat, (channels,)).copy()


def _axes(call) -> list[int]:
    """A reduction's axes (None in Relax means all of them)."""
    rank = len(call.args[0].ty.shape)
    return list(range(rank)) if call.attrs.axis is None else [int(v) for v in call.attrs.axis]


def _epilogue(comp: _Composite):
    if comp.relu and comp.table is not None:
        raise cg.CodegenError(f"{comp.name}: ReLU and a PWL epilogue")
    return cg.RELU_TABLE if comp.relu else comp.table


def generate(comp: _Composite, hw: HardwareConfig, layer_id: int) -> cg.AcceleratorCall:
    """Dispatch one composite to its codegen function."""
    a = comp.anchor
    op = a.op.name
    if op == "relax.nn.conv2d":
        w = _const_value(a.args[1])
        attrs = cg.Conv2dAttrs(tuple(int(v) for v in a.attrs.strides),
                               tuple(int(v) for v in a.attrs.padding),
                               tuple(int(v) for v in a.attrs.dilation))
        bias = _channel_bias(comp.bias, w.shape[0], comp.name) if comp.bias is not None else None
        return cg.conv2d_program(hw, layer_id, _shape(a.args[0]), w, attrs, bias,
                                 comp.residual, comp.relu, groups=int(a.attrs.groups))
    if op == "relax.matmul":
        b_shape = _shape(a.args[1])
        weight = _const_value(a.args[1]) if _is_const(a.args[1]) else None
        n = b_shape[-1] if len(b_shape) > 1 else 1
        bias = _channel_bias(comp.bias, n, comp.name) if comp.bias is not None else None
        # operands by parameter: A may be a constant, and x @ x has one parameter
        lhs = (_const_value(a.args[0]) if _is_const(a.args[0])
               else cg.Param(comp.param_index(a.args[0])))
        rhs = None if weight is not None else cg.Param(comp.param_index(a.args[1]))
        return cg.matmul_program(hw, layer_id, _shape(a.args[0]), b_shape, weight, bias,
                                 comp.residual, comp.relu, a_operand=lhs, b_param=rhs)
    if op == "relax.nn.avg_pool2d":
        return cg.avg_pool2d_program(hw, layer_id, _shape(a.args[0]),
                                     tuple(int(v) for v in a.attrs.pool_size),
                                     tuple(int(v) for v in a.attrs.strides),
                                     tuple(int(v) for v in a.attrs.dilation))
    if op == "relax.nn.max_pool2d":
        return cg.max_pool2d_program(hw, layer_id, _shape(a.args[0]),
                                     tuple(int(v) for v in a.attrs.pool_size),
                                     tuple(int(v) for v in a.attrs.strides),
                                     tuple(int(v) for v in a.attrs.padding),
                                     tuple(int(v) for v in a.attrs.dilation))
    if op == "relax.mean":
        return cg.mean_program(hw, layer_id, _shape(a.args[0]), _axes(a), bool(a.attrs.keepdims))
    if op in ("relax.add", "relax.subtract", "relax.multiply", "relax.maximum", "relax.minimum"):
        ops = [(_const_value(x) if _is_const(x) else cg.Param(comp.param_index(x)), _shape(x))
               for x in a.args]
        if op in ("relax.add", "relax.multiply", "relax.maximum") and _is_const(a.args[0]):
            ops.reverse()  # commutative: keep the tensor first
        return cg.elementwise_program(hw, layer_id, _shape(a), op.split(".")[-1], ops,
                                      _epilogue(comp))
    if op == "relax.nn.relu" or _is_pwl(a):
        x = a.args[0] if op == "relax.nn.relu" else a.args[1].fields[0]
        table = cg.RELU_TABLE if op == "relax.nn.relu" else _const_value(a.args[1].fields[1])
        if comp.table is not None or comp.relu:
            raise cg.CodegenError(f"{comp.name}: two PWL epilogues")
        return cg.elementwise_program(hw, layer_id, _shape(a), None,
                                      [(cg.Param(comp.param_index(x)), _shape(x))], table)
    if op == "relax.max":
        return cg.reduce_max_program(hw, layer_id, _shape(a.args[0]), _axes(a),
                                     bool(a.attrs.keepdims))
    if op == "relax.sum":
        return cg.mean_program(hw, layer_id, _shape(a.args[0]), _axes(a),
                               bool(a.attrs.keepdims), average=False)
    if op == "relax.concat":
        operands = [(_const_value(f) if _is_const(f) else cg.Param(comp.param_index(f)), _shape(f))
                    for f in a.args[0].fields]
        return cg.concat_program(hw, layer_id, operands, int(a.attrs.axis))
    if op == "relax.strided_slice":
        shape = _shape(a.args[0])
        begin, end, step = [0] * len(shape), list(shape), [1] * len(shape)
        for ax, b, e, st in zip(*[[int(v) for v in arg] for arg in a.args[1:5]]):
            dim = shape[ax]
            clamp = lambda v: min(max(v + dim if v < 0 else v, 0), dim)
            begin[ax], end[ax], step[ax] = clamp(b), clamp(e), st
        return cg.strided_slice_program(hw, layer_id, shape, begin, end, step)
    if op == "relax.permute_dims":
        rank = len(_shape(a.args[0]))
        axes = ([int(v) for v in a.attrs.axes] if a.attrs.axes is not None
                else list(reversed(range(rank))))
        return cg.transpose_program(hw, layer_id, _shape(a.args[0]), axes)
    raise cg.CodegenError(f"{comp.name}: no codegen for {op}")


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
                comp = _Composite(_composite_of(outer))
                layer_id = len(layers)
                kind = comp.name.split('.', 1)[1]
                name, nodes = layer_source(call)
                name = name or f"{layer_id:02d}_{kind}"
                try:
                    acc = generate(comp, hw, layer_id)
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
                                             relax.TensorType(acc.out_shape, "float32"))

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
