"""What one ``Codegen="nm"`` composite function means to the codegen: its anchor call and its
epilogue (bias, residual, ReLU or a PWL table), and the dispatch from the anchor op to the
``nm_tvm.target.codegen`` function that generates its program.

Adding an operator the accelerator runs means: a pattern in patterns.py and a branch in
:func:`generate` here (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from nm_tvm.extern_funcs import PWL_FUNC
from nm_tvm.target import codegen as cg
from nm_tvm.target.hardware import HardwareConfig


def _shape(expr) -> tuple:
    return tuple(int(d) for d in expr.ty.shape)


def _const_value(expr) -> np.ndarray:
    return expr.value.numpy()


def _is_const(expr) -> bool:
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


def _channel_bias(bias: np.ndarray, channels: int, layer: str) -> np.ndarray:
    flat = np.asarray(bias, np.float32).reshape(-1)
    if flat.size not in (1, channels):
        raise cg.CodegenError(f"{layer}: bias of shape {bias.shape} is not per output channel")
    return np.broadcast_to(flat, (channels,)).copy()


def _axes(call) -> list[int]:
    """A reduction's axes (None in Relax means all of them)."""
    rank = len(call.args[0].ty.shape)
    return list(range(rank)) if call.attrs.axis is None else [int(v) for v in call.attrs.axis]


def _epilogue(comp: Composite):
    if comp.relu and comp.table is not None:
        raise cg.CodegenError(f"{comp.name}: ReLU and a PWL epilogue")
    return cg.RELU_TABLE if comp.relu else comp.table


def generate(comp: Composite, hw: HardwareConfig, layer_id: int) -> cg.AcceleratorCall:
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
