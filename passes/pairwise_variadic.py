"""Variadic ONNX Max / Min / Sum / Mean -> pairwise ``maximum`` / ``minimum`` / ``add``.

TVM's importer turns ``Max(a, b, c)`` into ``max(stack(broadcast_to(a), ...), axis=0)``: a
stack of broadcast copies reduced over a new axis, which maps onto no accelerator operation.
ONNX defines these operators as elementwise with multidirectional broadcasting, so the pairwise
form ``maximum(maximum(a, b), c)`` (each binary op broadcasting by itself) is the same
function, and every step is an accelerator elementwise layer. Mean adds a scale by 1/n.
"""
from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_op, is_tuple, wildcard

from ._rewrite import rewrite_functions

MAX_INPUTS = 16
_PAIRWISE = {"relax.max": relax.op.maximum, "relax.min": relax.op.minimum,
             "relax.sum": relax.op.add, "relax.mean": relax.op.add}


def _rule(n: int):
    inputs = [wildcard() for _ in range(n)]
    fields = [is_op("relax.broadcast_to")(x, wildcard()) | x for x in inputs]
    stacked = is_op("relax.stack")(is_tuple(fields))
    reduce = functools.reduce(lambda a, b: a | b, (is_op(op)(stacked) for op in _PAIRWISE))

    def rewrite(expr, m):
        stack = m[stacked]
        axes = expr.attrs.axis
        if (int(stack.attrs.axis) != 0 or axes is None or [int(a) for a in axes] != [0]
                or bool(expr.attrs.keepdims)):
            return expr
        result = functools.reduce(_PAIRWISE[expr.op.name], [m[x] for x in inputs])
        if expr.op.name == "relax.mean" and n > 1:
            result = relax.op.multiply(result, relax.const(np.float32(1.0 / n)))
        return result  # one input: the input itself

    return reduce, rewrite


@tvm.transform.module_pass(opt_level=0, name="nm.PairwiseVariadicOps")
class PairwiseVariadicOps:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        for n in range(1, MAX_INPUTS + 1):
            mod = rewrite_functions(mod, *_rule(n))
        return mod
