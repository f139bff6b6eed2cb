"""Pattern building for the accelerator's operators (``nm_tvm.target.backend.operators``):
what one accelerator layer may hold, and the ``FusionPattern`` shapes its entries use.

A GEMM anchor (conv2d, matmul) absorbs a constant bias, a residual tensor and a ReLU, so the
whole chain runs as one LOOP_GEMM with the bias and residual initialising the accumulator and
ReLU as its PWL epilogue; other operators may be followed by a ReLU or a PWL table. Every
pattern's tensors are float32 of static shape (integer index / cast inputs are the
exceptions their operators check with ``static_tensor``), and no intermediate escapes the
chain.
"""
from __future__ import annotations

from itertools import product

from tvm import relax
from tvm.relax.dpl import is_call_dps_packed, is_const, is_op, wildcard
from tvm.relax.transform import FusionPattern

from nm_tvm.extern_funcs import PWL_FUNC

CODEGEN = "nm"


def static_tensor(expr, dtypes=("float32",)) -> bool:
    """A tensor of one of ``dtypes`` and static, non-empty shape (an empty tensor has no DRAM
    region)."""
    ty = expr.ty
    shape = getattr(ty, "shape", None)
    if getattr(ty, "dtype", None) not in dtypes or shape is None:
        return False
    dims = [getattr(d, "value", None) for d in shape]
    return all(isinstance(d, int) and d > 0 for d in dims)


def _static_f32(expr) -> bool:
    return static_tensor(expr)


def all_static(context) -> bool:
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


def epilogue_operands_fit(context, channel_axis: int) -> bool:
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


def gemm_patterns(kind: str, make_anchor, check) -> list[FusionPattern]:
    """``nm.<kind>[_bias][_residual][_relu]``: the anchor with every epilogue combination,
    longest first (a longer match wins)."""
    out = []
    for bias, residual, relu in sorted(product((True, False), repeat=3), key=lambda t: -sum(t)):
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


def pwl_pattern(inner):
    """``nm.pwl_map(inner, table)`` with a constant table."""
    return is_call_dps_packed(PWL_FUNC, [inner, is_const()])


def simple_patterns(name: str, op: str, check, arity: int = 1,
                    epilogues: bool = False) -> list[FusionPattern]:
    """``op`` over ``arity`` operands; with ``epilogues`` also followed by a ReLU
    (``nm.<name>_relu``) or a PWL table (``nm.<name>_pwl``), which match first."""
    anchor = is_op(op)(*[wildcard() for _ in range(arity)])
    pats = []
    if epilogues:
        pats.append(FusionPattern(f"{CODEGEN}.{name}_relu", is_op("relax.nn.relu")(anchor),
                                  {"anchor": anchor}, check))
        pats.append(FusionPattern(f"{CODEGEN}.{name}_pwl", pwl_pattern(anchor),
                                  {"anchor": anchor}, check))
    pats.append(FusionPattern(f"{CODEGEN}.{name}", anchor, {"anchor": anchor}, check))
    return pats
