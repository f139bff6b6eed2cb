"""``astype(broadcast_to(x, shape), f32)`` -> ``broadcast_to(astype(x, f32), shape)``.

Exported sentence-embedding models expand the int64 attention mask to the hidden size and cast
the result to float for mean pooling. A cast is elementwise, so casting before the broadcast is
the same tensor, and leaves a Cast (an integer-reading LOAD) and a float broadcast (a DMA
view): both accelerator layers, where an integer broadcast would stay on the host.
"""
from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.dpl import is_op, wildcard

from ._rewrite import rewrite_functions

_INTEGER = ("int32", "int64")


def _rule():
    x, shape = wildcard(), wildcard()
    pattern = is_op("relax.astype")(is_op("relax.broadcast_to")(x, shape))

    def rewrite(expr, m):
        target = str(expr.attrs.dtype)
        if target != "float32" or getattr(m[x].ty, "dtype", None) not in _INTEGER:
            return expr
        return relax.op.broadcast_to(relax.op.astype(m[x], target), m[shape])

    return pattern, rewrite


@tvm.transform.module_pass(opt_level=0, name="nm.CastBeforeBroadcast")
class CastBeforeBroadcast:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, *_rule())
