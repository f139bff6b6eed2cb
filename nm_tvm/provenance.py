"""Which source-model node an expression came from, carried through the passes as a span.

The ONNX importer (``nm_tvm.frontend``) gives every Relax call the span
``Span(SourceName("onnx:<node name>"), ...)``. Spans survive TVM's own passes and
``FuseOpsByPattern`` (they copy calls); the project's rewrites give the calls they create the
span of the call they replace (:func:`inherit_span`). Codegen then names each accelerator layer
after the source nodes of its calls. Spans from other sources (TVMScript locations) are not
source-model names and are ignored.
"""
from __future__ import annotations

import json

import tvm
from tvm import relax

SOURCE_PREFIX = "onnx:"


def source_span(node_name: str) -> tvm.ir.Span:
    return tvm.ir.Span(tvm.ir.SourceName(SOURCE_PREFIX + node_name), 0, 0, 0, 0)


def span_node(span) -> str | None:
    """The source-model node name a span records, if it is one of ours."""
    name = span.source_name.name if span is not None else ""
    return name[len(SOURCE_PREFIX):] if name.startswith(SOURCE_PREFIX) else None


def source_node(expr) -> str | None:
    """The source-model node name recorded on ``expr``, if any."""
    return span_node(getattr(expr, "span", None))


def inherit_span(expr, span):
    """``expr`` with ``span`` on every call in it that has no source name yet.

    Stops at variables, constants and calls that already carry a source name, so an operand
    produced by another node keeps its own.
    """
    if span_node(span) is None:
        return expr
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([inherit_span(f, span) for f in expr.fields])
    if not isinstance(expr, relax.Call) or source_node(expr) is not None:
        return expr
    args = [inherit_span(a, span) for a in expr.args]
    return relax.Call(expr.op, args, expr.attrs, expr.ty_args, span=span)


def respan_bindings(func: relax.Function, span_of) -> relax.Function:
    """``func`` with the call of each binding re-spanned to ``span_of(binding)`` (None: kept).
    Variables are kept, so the rest of the function needs no rewriting."""
    blocks = []
    for block in func.body.blocks:
        bindings = []
        for binding in block.bindings:
            span = span_of(binding)
            value = binding.value
            if span is not None and isinstance(value, relax.Call):
                value = relax.Call(value.op, value.args, value.attrs, value.ty_args, span=span)
                binding = relax.VarBinding(binding.var, value)
            bindings.append(binding)
        blocks.append(type(block)(bindings))
    return relax.Function(func.params, relax.SeqExpr(blocks, func.body.body), func.ret_ty,
                          func.is_pure, func.attrs)


# A call of an accelerator composite carries its layer's name and all fused source nodes:
# composite functions themselves are shared between identical layers (TVM deduplicates them).
LAYER_PREFIX = "nm.layer:"


def layer_span(name: str | None, nodes: list[str]) -> tvm.ir.Span:
    payload = json.dumps({"name": name, "nodes": nodes})
    return tvm.ir.Span(tvm.ir.SourceName(LAYER_PREFIX + payload), 0, 0, 0, 0)


def layer_source(expr) -> tuple[str | None, list[str]]:
    """(layer name, source nodes) recorded on a composite call; (None, []) when none is."""
    span = getattr(expr, "span", None)
    name = span.source_name.name if span is not None else ""
    if not name.startswith(LAYER_PREFIX):
        return None, []
    payload = json.loads(name[len(LAYER_PREFIX):])
    return payload["name"], payload["nodes"]
