"""``max`` / ``min`` of a bool tensor (ReduceMax / ReduceMin of a mask: any / all) ->
``astype(max(astype(x, float32)), bool)``.

The accelerator reduces float tensors only, and TVM cannot even legalize a bool max (topi
asks for the smallest bool); on the 0/1 float twin the same reduction is exact. The casts are a
converting LOAD and STORE. Runs before FoldConstant, which legalizes every call it visits.
"""
from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.dpl import is_op, wildcard

from ._rewrite import rewrite_functions

_REDUCE = {"relax.max": relax.op.max, "relax.min": relax.op.min}


def _rule():
    x = wildcard()
    pattern = is_op("relax.max")(x) | is_op("relax.min")(x)

    def rewrite(expr, m):
        if getattr(m[x].ty, "dtype", None) != "bool":
            return expr
        reduced = _REDUCE[expr.op.name](relax.op.astype(m[x], "float32"), expr.attrs.axis,
                                        expr.attrs.keepdims)
        return relax.op.astype(reduced, "bool")

    return pattern, rewrite


@tvm.transform.module_pass(opt_level=0, name="nm.BoolReductionsAsFloat")
class BoolReductionsAsFloat:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, *_rule())
