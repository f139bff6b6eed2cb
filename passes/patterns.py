"""The accelerator's pattern table: which Relax subgraphs become one accelerator layer.

Each entry is ``(name, pattern, annotations, check)`` for ``FuseOpsByPattern``. GEMM anchors
(conv2d, matmul) absorb a constant bias, a residual tensor and a ReLU, so the whole chain runs
as one LOOP_GEMM with the bias and residual initialising the accumulator and ReLU as its PWL
epilogue. Ordered longest first: FuseOpsByPattern gives earlier patterns priority.
"""
from __future__ import annotations

from itertools import product

import tvm

from tvm.relax.dpl import is_const, is_op, wildcard
from tvm.relax.transform import FusionPattern

CODEGEN = "nm"


def _static_f32(expr) -> bool:
    ty = expr.ty
    shape = getattr(ty, "shape", None)
    if getattr(ty, "dtype", None) != "float32" or shape is None:
        return False
    return all(isinstance(getattr(d, "value", None), int) for d in shape)


def _all_static(context) -> bool:
    exprs = [context.annotated_expr[k] for k in context.annotated_expr]
    return all(_static_f32(e) for e in exprs if hasattr(e, "ty") and hasattr(e.ty, "dtype"))


def _check_conv(context) -> bool:
    attrs = context.annotated_expr["anchor"].attrs
    return (_all_static(context) and int(attrs.groups) == 1 and attrs.data_layout == "NCHW"
            and attrs.kernel_layout == "OIHW" and attrs.out_layout == "NCHW")


def _check_matmul(context) -> bool:
    return _all_static(context)


def _check_avg_pool(context) -> bool:
    attrs = context.annotated_expr["anchor"].attrs
    return (_all_static(context) and attrs.layout == "NCHW" and not attrs.ceil_mode
            and all(int(p) == 0 for p in attrs.padding))


def _check_mean(context) -> bool:
    call = context.annotated_expr["anchor"]
    rank = len(call.args[0].ty.shape)
    axes = sorted(int(a) % rank for a in call.attrs.axis) if call.attrs.axis is not None else None
    return (_all_static(context) and axes is not None
            and axes == list(range(rank - len(axes), rank)))


def _check_binary(context) -> bool:
    call = context.annotated_expr["anchor"]
    a, b = call.args
    same = [int(d) for d in a.ty.shape] == [int(d) for d in b.ty.shape]
    return _all_static(context) and (same or isinstance(b, tvm.ir.Constant))


def _gemm_patterns():
    out = []
    anchors = {
        "conv2d": (lambda: is_op("relax.nn.conv2d")(wildcard(), is_const()), _check_conv),
        "matmul": (lambda: is_op("relax.matmul")(wildcard(), wildcard()), _check_matmul),
    }
    for kind, (make_anchor, check) in anchors.items():
        for bias, residual, relu in sorted(product((True, False), repeat=3),
                                           key=lambda t: -sum(t)):
            anchor = make_anchor()
            annotations = {"anchor": anchor}
            pat = anchor
            if bias:
                annotations["bias"] = pat = is_op("relax.add")(pat, is_const())
            if residual:
                annotations["residual"] = pat = is_op("relax.add")(pat, wildcard())
            if relu:
                annotations["relu"] = pat = is_op("relax.nn.relu")(pat)
            suffix = "".join(s for s, on in (("_bias", bias), ("_residual", residual),
                                             ("_relu", relu)) if on)
            out.append(FusionPattern(f"{CODEGEN}.{kind}{suffix}", pat, annotations, check))
    return out


def _simple(name, op, check, relu_variant=False):
    anchor = is_op(op)(*[wildcard() for _ in range(2 if op in _BINARY else 1)])
    pats = []
    if relu_variant:
        pats.append(FusionPattern(f"{CODEGEN}.{name}_relu", is_op("relax.nn.relu")(anchor),
                                  {"anchor": anchor}, check))
    pats.append(FusionPattern(f"{CODEGEN}.{name}", anchor, {"anchor": anchor}, check))
    return pats


_BINARY = ("relax.add", "relax.multiply", "relax.maximum")


def pattern_table() -> list[FusionPattern]:
    """All accelerator patterns, highest priority first."""
    table = _gemm_patterns()
    table += _simple("avg_pool2d", "relax.nn.avg_pool2d", _check_avg_pool)
    table += _simple("mean", "relax.mean", _check_mean)
    for name, op in (("add", "relax.add"), ("multiply", "relax.multiply"),
                     ("maximum", "relax.maximum")):
        table += _simple(name, op, _check_binary, relu_variant=True)
    table += _simple("relu", "relax.nn.relu", _all_static)
    table += _simple("permute_dims", "relax.permute_dims", _all_static)
    return table
