"""The accelerator's pattern table: which Relax subgraphs become one accelerator layer.

Each entry is ``(name, pattern, annotations, check)`` for ``FuseOpsByPattern``. GEMM anchors
(conv2d, matmul) absorb a constant bias, a residual tensor and a ReLU, so the whole chain runs
as one LOOP_GEMM with the bias and residual initialising the accumulator and ReLU as its PWL
epilogue. Ordered longest first: FuseOpsByPattern gives earlier patterns priority.
"""
from __future__ import annotations

from itertools import product

from tvm import relax

from tvm.relax.dpl import is_call_dps_packed, is_const, is_op, wildcard
from tvm.relax.transform import FusionPattern

from nm_tvm.extern_funcs import PWL_FUNC

CODEGEN = "nm"


def _static_f32(expr) -> bool:
    """A float32 tensor of static, non-empty shape (an empty tensor has no DRAM region)."""
    ty = expr.ty
    shape = getattr(ty, "shape", None)
    if getattr(ty, "dtype", None) != "float32" or shape is None:
        return False
    dims = [getattr(d, "value", None) for d in shape]
    return all(isinstance(d, int) and d > 0 for d in dims)


def _all_static(context) -> bool:
    """Static float32 shapes, and no intermediate of the chain used outside it (a composite
    has one output: an escaping intermediate would make it a tuple)."""
    exprs = [context.annotated_expr[k] for k in context.annotated_expr]
    if not all(_static_f32(e) for e in exprs if hasattr(e, "ty") and hasattr(e.ty, "dtype")):
        return False
    root = context.matched_expr
    for expr in exprs:
        if expr.same_as(root):
            continue
        var = context.value_to_bound_var.get(expr)
        if var is None:
            continue
        if len(context.var_usages.get(var, [])) > 1 or not isinstance(var, relax.DataflowVar):
            return False  # used by another binding, or an output of the dataflow block
    return True


def _shape(expr) -> list[int]:
    return [int(d) for d in expr.ty.shape]


def _is_chain(context, expr, chain) -> bool:
    """``expr`` is the chain so far: the call itself or the variable bound to it."""
    bound = context.value_to_bound_var.get(chain)
    return expr.same_as(chain) or (bound is not None and expr.same_as(bound))


def _other_operand(context, add_call, chain):
    """The operand of ``add_call`` that is not the chain so far."""
    a, b = add_call.args
    return b if _is_chain(context, a, chain) else a


def _epilogue_operands_fit(context, channel_axis: int) -> bool:
    """The bias must be a per-output-channel constant (it initialises the accumulator rows
    by broadcast) and the residual a tensor of exactly the output's shape (loaded as D)."""
    anchor = context.annotated_expr["anchor"]
    out = _shape(anchor)
    chain = anchor
    if "bias" in context.annotated_expr:
        bias_call = context.annotated_expr["bias"]
        shape = _shape(_other_operand(context, bias_call, chain))
        padded = [1] * (len(out) - len(shape)) + shape
        axis = channel_axis % len(out)
        if len(shape) > len(out) or any(d != 1 for i, d in enumerate(padded) if i != axis):
            return False
        chain = bias_call
    if "residual" in context.annotated_expr:
        res_call = context.annotated_expr["residual"]
        other = _other_operand(context, res_call, chain)
        if _shape(other) != out or _is_chain(context, other, chain):
            return False  # (y + y has no residual operand: an elementwise add does it)
    return True


def _check_conv(context) -> bool:
    attrs = context.annotated_expr["anchor"].attrs
    return (_all_static(context) and attrs.data_layout == "NCHW"
            and attrs.kernel_layout == "OIHW" and attrs.out_layout == "NCHW"
            and _epilogue_operands_fit(context, 1))


def _check_matmul(context) -> bool:
    return _all_static(context) and _epilogue_operands_fit(context, -1)


def _check_avg_pool(context) -> bool:
    attrs = context.annotated_expr["anchor"].attrs
    return (_all_static(context) and attrs.layout == "NCHW" and not attrs.ceil_mode
            and all(int(p) == 0 for p in attrs.padding))


def _check_max_pool(context) -> bool:
    attrs = context.annotated_expr["anchor"].attrs
    return _all_static(context) and attrs.layout == "NCHW" and not attrs.ceil_mode


def _check_slice(context) -> bool:
    """Constant bounds and positive steps (a strided DMA view)."""
    call = context.annotated_expr["anchor"]
    try:
        steps = [int(v) for v in call.args[4]]
    except (TypeError, ValueError, AttributeError):
        return False
    return _all_static(context) and all(st > 0 for st in steps)


def _check_mean(context) -> bool:
    """Reductions over trailing axes (Linearize moves other axes last); no axis = all."""
    call = context.annotated_expr["anchor"]
    rank = len(call.args[0].ty.shape)
    if call.attrs.axis is None:
        return _all_static(context)
    axes = sorted(int(a) % rank for a in call.attrs.axis)
    return _all_static(context) and axes == list(range(rank - len(axes), rank))


def _check_binary(context) -> bool:
    """Any numpy broadcast between tensors and constants (the codegen expands by DMA)."""
    call = context.annotated_expr["anchor"]
    return _all_static(context) and all(getattr(a.ty, "dtype", None) == "float32"
                                        for a in call.args)


def _check_reduce_trailing(context) -> bool:
    return _check_mean(context)


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


def _pwl(inner):
    return is_call_dps_packed(PWL_FUNC, [inner, is_const()])


def _simple(name, op, check, epilogues=False):
    anchor = is_op(op)(*[wildcard() for _ in range(2 if op in _BINARY else 1)])
    pats = []
    if epilogues:
        pats.append(FusionPattern(f"{CODEGEN}.{name}_relu", is_op("relax.nn.relu")(anchor),
                                  {"anchor": anchor}, check))
        pats.append(FusionPattern(f"{CODEGEN}.{name}_pwl", _pwl(anchor), {"anchor": anchor},
                                  check))
    pats.append(FusionPattern(f"{CODEGEN}.{name}", anchor, {"anchor": anchor}, check))
    return pats


_BINARY = ("relax.add", "relax.subtract", "relax.multiply", "relax.maximum", "relax.minimum")


def pattern_table() -> list[FusionPattern]:
    """All accelerator patterns, highest priority first."""
    table = _gemm_patterns()
    table += _simple("avg_pool2d", "relax.nn.avg_pool2d", _check_avg_pool)
    table += _simple("max_pool2d", "relax.nn.max_pool2d", _check_max_pool)
    table += _simple("mean", "relax.mean", _check_mean)
    table += _simple("sum", "relax.sum", _check_reduce_trailing)
    table += _simple("max", "relax.max", _check_reduce_trailing)
    for op in _BINARY:
        table += _simple(op.split(".")[1], op, _check_binary, epilogues=True)
    table += _simple("relu", "relax.nn.relu", _all_static)
    pwl = _pwl(wildcard())
    table.append(FusionPattern(f"{CODEGEN}.pwl", pwl, {"anchor": pwl}, _all_static))
    table += _simple("permute_dims", "relax.permute_dims", _all_static)
    sliced = is_op("relax.strided_slice")(wildcard(), *[wildcard() for _ in range(4)])
    table.append(FusionPattern(f"{CODEGEN}.strided_slice", sliced, {"anchor": sliced},
                               _check_slice))
    table += _simple("concat", "relax.concat", _all_static)
    return table
