"""Inference batch norm with constant statistics -> one multiply and one add, in numpy.

``DecomposeOpsForInference`` followed by ``FoldConstant`` gets the same result by compiling and
running a TIR kernel for every constant sub-expression (about half a minute for MobileNetV2);
the arithmetic here is the same, done once per channel on the host at compile time.
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, is_tuple_get_item, wildcard

from nm_tvm.provenance import inherit_span

from ._rewrite import rewrite_functions


def _rule():
    data = wildcard()
    gamma, beta, mean, var = is_const(), is_const(), is_const(), is_const()
    bn = is_op("relax.nn.batch_norm")(data, gamma, beta, mean, var)
    pattern = is_tuple_get_item(bn, 0)

    def rewrite(expr, m):
        call = m[bn]
        if bool(call.attrs.training):
            return expr
        value = lambda p: m[p].value.numpy().astype(np.float64)
        eps = float(call.attrs.epsilon)
        scale = value(gamma) / np.sqrt(value(var) + eps)
        shift = value(beta) - value(mean) * scale
        rank = len(m[data].ty.shape)
        shape = [1] * rank
        shape[int(call.attrs.axis) % rank] = scale.size
        as_const = lambda v: relax.const(v.reshape(shape).astype(np.float32))
        return inherit_span(relax.op.add(relax.op.multiply(m[data], as_const(scale)),
                                         as_const(shift)), call.span)

    return pattern, rewrite


@tvm.transform.module_pass(opt_level=0, name="nm.SimplifyBatchNorm")
class SimplifyBatchNorm:
    """``batch_norm(x, γ, β, μ, σ²)[0]`` -> ``x * s + t`` with ``s, t`` computed in numpy."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, *_rule())
