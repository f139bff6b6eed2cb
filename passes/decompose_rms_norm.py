"""RMS norm -> ``x * rsqrt(mean(x * x) + eps) * gamma`` in Relax ops, before TVM's own
decomposition: ``DecomposeOpsForInference`` legalizes ``rms_norm`` itself and crashes when
the norm spans every axis. Linearize then maps the means to GEMMs and ``rsqrt(v + eps)``
to one PWL table like any other scalar chain."""
from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.dpl import is_op, wildcard

from ._rewrite import rewrite_functions


def _rule():
    data, gamma = wildcard(), wildcard()
    pattern = is_op("relax.nn.rms_norm")(data, gamma)

    def rewrite(expr, m):
        x = m[data]
        axes = [int(a) for a in expr.attrs.axes]
        eps = relax.const(float(expr.attrs.epsilon), "float32")
        v = relax.op.mean(relax.op.multiply(x, x), axis=axes, keepdims=True)
        return relax.op.multiply(relax.op.multiply(x, relax.op.rsqrt(relax.op.add(v, eps))),
                                 m[gamma])

    return pattern, rewrite


@tvm.transform.module_pass(opt_level=0, name="nm.DecomposeRMSNorm")
class DecomposeRMSNorm:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, *_rule())
