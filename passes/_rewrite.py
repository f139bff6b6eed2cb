"""Apply one dataflow-pattern rewrite to every Relax function of a module."""
from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.dpl import rewrite_call


def rewrite_functions(mod: tvm.IRModule, pattern, rewrite) -> tvm.IRModule:
    for gv, func in list(mod.functions.items()):
        if isinstance(func, relax.Function):
            mod[gv] = rewrite_call(pattern, rewrite, func)
    return mod
