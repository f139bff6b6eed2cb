"""``take(data, where(i < 0, i + n, i), axis)`` -> ``take(data, i, axis, mode="wrap")``.

TVM's ONNX importer makes Gather's negative indices count from the end with integer
arithmetic on the index tensor (a compare, an add and a select, all on the host). When ``n``
is the gathered axis's length that is exactly what ``mode="wrap"`` does for every index ONNX
allows ([-n, n)), and what the accelerator's GATHER does natively (it refuses the indices ONNX
calls errors), so the three integer ops go and the lookup is one accelerator layer.
"""
from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from ._rewrite import rewrite_functions


def _int_scalar(expr) -> int | None:
    """The value of an integer constant whose elements are all equal."""
    value = expr.value.numpy().reshape(-1)
    if value.size == 0 or value.dtype.kind not in "iu" or not (value == value[0]).all():
        return None
    return int(value[0])


def _rule():
    data, index, zero, n = wildcard(), wildcard(), is_const(), is_const()
    # int32 indices add the axis length cast from int64 (a cast FoldConstant leaves)
    length_expr = n | is_op("relax.astype")(n)
    wrapped = is_op("relax.where")(is_op("relax.less")(index, zero),
                                   is_op("relax.add")(index, length_expr), index)
    pattern = is_op("relax.take")(data, wrapped)

    def rewrite(expr, m):
        shape = getattr(m[data].ty, "shape", None)
        axis = int(expr.attrs.axis) if expr.attrs.axis is not None else None
        if shape is None or axis is None or _int_scalar(m[zero]) != 0:
            return expr
        axis %= len(shape)
        length = getattr(shape[axis], "value", None)
        if not isinstance(length, int) or _int_scalar(m[n]) != length:
            return expr
        return relax.op.take(m[data], m[index], axis=axis, mode="wrap")

    return pattern, rewrite


@tvm.transform.module_pass(opt_level=0, name="nm.FoldIndexWrap")
class FoldIndexWrap:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, *_rule())
