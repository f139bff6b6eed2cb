"""Fold per-output-channel scale and shift constants into the preceding conv2d or matmul.

After ``DecomposeOpsForInference`` an inference BatchNorm is a chain of subtract / divide /
multiply / add with per-channel constants. Folding the chain into the weights and one bias leaves
``conv2d + bias`` (or ``matmul + bias``), which the accelerator runs as one GEMM with a bias
initialisation instead of four vector passes. The rules below are applied to a fixed point.
"""
from __future__ import annotations

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from ._rewrite import rewrite_keeping_spans


def _const(expr) -> np.ndarray:
    return expr.value.numpy()


def _channel_vector(value: np.ndarray, out_rank: int, channel_axis: int, channels: int):
    """``value`` as a length-``channels`` vector if it broadcasts along the channel axis only."""
    if value.ndim > out_rank:
        return None
    shape = (1,) * (out_rank - value.ndim) + value.shape
    axis = channel_axis % out_rank
    if any(d != 1 for i, d in enumerate(shape) if i != axis):
        return None
    if shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(-1), (channels,)).astype(np.float32)


def _anchor_info(call):
    """(channel axis, channel count, weight constant, scaling fn) of a foldable anchor, else None."""
    out_shape = [int(d) for d in call.ty.shape]
    if call.op.name == "relax.nn.conv2d":
        attrs = call.attrs
        if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or attrs.out_layout != "NCHW":
            return None
        weight = _const(call.args[1])
        return 1, out_shape[1], weight, lambda w, s: w * s[:, None, None, None]
    if call.op.name == "relax.matmul":
        weight = _const(call.args[1])
        if weight.ndim != 2:
            return None
        return -1, out_shape[-1], weight, lambda w, s: w * s[None, :]
    return None


def _rebuild_anchor(call, new_weight: np.ndarray):
    return relax.Call(call.op, [call.args[0], relax.const(new_weight.astype(np.float32))],
                      call.attrs, call.ty_args, span=call.span)


def _bias_const(vec: np.ndarray, call) -> relax.Constant:
    rank = len(call.ty.shape)
    shape = [1] * rank
    axis = 1 if call.op.name == "relax.nn.conv2d" else rank - 1
    shape[axis] = vec.size
    return relax.const(vec.reshape(shape).astype(np.float32))


def _patterns():
    data, weight = wildcard(), is_const()
    anchor = is_op("relax.nn.conv2d")(data, weight) | is_op("relax.matmul")(data, weight)
    bias = is_const()
    biased = is_op("relax.add")(anchor, bias)
    operand = is_const()
    return anchor, bias, biased, operand


def _shared(matches, exprs, uses: dict) -> bool:
    """Whether a matched intermediate result has another user: folding into it would then
    compute the GEMM twice (once folded, once for the other user)."""
    return any(uses.get(matches[e], 0) > 1 for e in exprs if e in matches)


def _make_rewriter(op_name: str, uses: dict):
    """Rewriter for ``op_name(anchor [+ bias], constant)``."""
    anchor, bias, biased, operand = _patterns()
    pattern = is_op(op_name)(biased | anchor, operand)

    def rewrite(expr, matches):
        call = matches[anchor]
        info = _anchor_info(call)
        if info is None or _shared(matches, (anchor, biased), uses):
            return expr
        axis, channels, weight, scale_weight = info
        rank = len(call.ty.shape)
        vec = _channel_vector(_const(matches[operand]), rank, axis, channels)
        if vec is None:
            return expr
        b = (_channel_vector(_const(matches[bias]), rank, axis, channels)
             if bias in matches else np.zeros(channels, np.float32))
        if b is None:
            return expr
        if op_name in ("relax.multiply", "relax.divide"):
            s = vec if op_name == "relax.multiply" else 1.0 / vec
            new_anchor = _rebuild_anchor(call, scale_weight(weight, s))
            new_bias = b * s
        else:  # add / subtract: only the bias changes
            new_anchor = call
            new_bias = b + vec if op_name == "relax.add" else b - vec
        if bias not in matches and op_name in ("relax.multiply", "relax.divide"):
            return new_anchor
        return relax.op.add(new_anchor, _bias_const(new_bias, call))

    return pattern, rewrite


def _value_uses(func: relax.Function) -> dict:
    """Bound value -> how many times its variable is used (as an argument or an output)."""
    count: dict = {}

    def visit(expr):
        if isinstance(expr, relax.Var):
            count[expr] = count.get(expr, 0) + 1

    for block in func.body.blocks:
        for binding in block.bindings:
            relax.analysis.post_order_visit(binding.value, visit)
    relax.analysis.post_order_visit(func.body.body, visit)
    return {b.value: count.get(b.var, 0) for block in func.body.blocks for b in block.bindings}


_RULE_OPS = ("relax.multiply", "relax.divide", "relax.subtract")


@tvm.transform.module_pass(opt_level=0, name="nm.FoldScaleShift")
class FoldScaleShift:
    """Fold ``(conv2d|matmul)(x, W) [+ b]`` followed by per-channel ``* / - +`` constants."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        uses: dict = {}  # bound value -> number of uses of its variable, for the current round
        rules = [_make_rewriter(op, uses) for op in _RULE_OPS]
        rules.append(self._add_rule(uses))
        for gv, func in list(mod.functions.items()):
            if not isinstance(func, relax.Function) or "Codegen" in (func.attrs or {}):
                continue
            for _ in range(64):  # each round folds one op per chain; chains are short
                before = func
                uses.clear()
                uses.update(_value_uses(func))
                for pattern, fn in rules:
                    func = rewrite_keeping_spans(pattern, fn, func)
                if tvm_ffi.structural_equal(before, func):
                    break
            mod[gv] = func
        return mod

    @staticmethod
    def _add_rule(uses: dict):
        """``(anchor + b1) + b2`` -> ``anchor + (b1 + b2)``."""
        anchor, bias, biased, operand = _patterns()
        pattern = is_op("relax.add")(biased, operand)

        def rewrite(expr, matches):
            call = matches[anchor]
            info = _anchor_info(call)
            if info is None or _shared(matches, (anchor, biased), uses):
                return expr
            axis, channels, _, _ = info
            rank = len(call.ty.shape)
            b1 = _channel_vector(_const(matches[bias]), rank, axis, channels)
            b2 = _channel_vector(_const(matches[operand]), rank, axis, channels)
            if b1 is None or b2 is None:
                return expr
            return relax.op.add(call, _bias_const(b1 + b2, call))

        return pattern, rewrite
