"""What one ``Codegen="nm"`` composite function holds: its anchor call and its epilogue
(bias, residual, ReLU or a PWL table), and the readers the operators' lowerings share
(``nm_tvm.target.backend.operators``)."""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from nm_tvm.extern_funcs import PWL_FUNC
from nm_tvm.target import codegen as cg


def shape_of(expr) -> tuple:
    return tuple(int(d) for d in expr.ty.shape)


def const_value(expr) -> np.ndarray:
    return expr.value.numpy()


def is_const_expr(expr) -> bool:
    return isinstance(expr, tvm.ir.Constant)


class Composite:
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
            elif is_pwl_call(call):
                self.table = const_value(call.args[1].fields[1])
            elif op == "relax.add":
                other = call.args[1] if call.args[0].same_as(prev) else call.args[0]
                if "_bias" in self.name and self.bias is None:  # the pattern's bias add
                    self.bias = const_value(other)
                elif is_const_expr(other):  # a constant residual (loaded as D)
                    self.residual = const_value(other)
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


def is_pwl_call(call) -> bool:
    """An ``nm.pwl_map`` call. Inside a composite FuseOpsByPattern has lifted the extern
    function into a parameter, and pwl_map is the only packed call the patterns admit."""
    if call.op.name != "relax.call_dps_packed":
        return False
    func = call.args[0]
    return isinstance(func, relax.Var) or str(getattr(func, "global_symbol", "")) == PWL_FUNC


def channel_bias(bias: np.ndarray, channels: int, layer: str) -> np.ndarray:
    flat = np.asarray(bias, np.float32).reshape(-1)
    if flat.size not in (1, channels):
        raise cg.CodegenError(f"{layer}: bias of shape {bias.shape} is not per output channel")
    return np.broadcast_to(flat, (channels,)).copy()


def axes_of(call) -> list[int]:
    """A reduction's axes (None in Relax means all of them)."""
    rank = len(call.args[0].ty.shape)
    return list(range(rank)) if call.attrs.axis is None else [int(v) for v in call.attrs.axis]


def epilogue_table(comp: Composite):
    if comp.relu and comp.table is not None:
        raise cg.CodegenError(f"{comp.name}: ReLU and a PWL epilogue")
    return cg.RELU_TABLE if comp.relu else comp.table


def operand(comp: Composite, expr):
    """A composite operand as the codegen takes it: a constant's array, else its parameter."""
    return const_value(expr) if is_const_expr(expr) else cg.Param(comp.param_index(expr))
