"""Group accelerator-supported subgraphs into composite functions tagged ``Codegen="nm"``.

``FuseOpsByPattern`` shares one function between structurally equal groups (two layer norms of
one shape become calls of one function), so the function cannot say which source-model nodes a
layer came from. Each pattern's check therefore records the group it accepts; the groups,
ordered by where their root was bound, are the composite calls in binding order, and each call
gets a span naming its layer and source nodes (``nm_tvm.provenance.layer_span``).
"""
from __future__ import annotations

import re

import tvm
from tvm import relax
from tvm.relax.transform import FusionPattern

from nm_tvm.provenance import layer_span, respan_bindings, source_node

from .operators import pattern_table

_AUTO_VAR_NAME = re.compile(r"^(lv|gv)\d*(_\d+)?$")


def _recording(pattern: FusionPattern, groups: list) -> FusionPattern:
    """``pattern`` whose check also records each accepted group:
    (root variable, pattern name, anchor call, matched calls, anchor variable)."""

    def check(context) -> bool:
        if pattern.check is not None and not pattern.check(context):
            return False
        anchor = context.annotated_expr["anchor"]
        bound = context.value_to_bound_var
        calls = [v for v in context.matched_bindings.values() if isinstance(v, relax.Call)]
        groups.append((bound[context.matched_expr], pattern.name, anchor, calls,
                       bound.get(anchor)))
        return True

    return FusionPattern(pattern.name, pattern.pattern, pattern.annotation_patterns, check)


def _layer_source(anchor, calls, anchor_var, order) -> tuple[str | None, list[str]]:
    """ONNX models: the anchor's node names the layer; Relax models: the anchor's variable
    (unless it is an automatic ``lv``/``gv`` name)."""
    nodes = [source_node(anchor)] + [source_node(c) for c in sorted(calls, key=order)]
    nodes = list(dict.fromkeys(n for n in nodes if n is not None))
    name = nodes[0] if nodes else None
    if name is None and anchor_var is not None and not _AUTO_VAR_NAME.match(anchor_var.name):
        name = anchor_var.name
    return name, nodes


def _composite_kind(mod: tvm.IRModule, call) -> str | None:
    if not (isinstance(call, relax.Call) and isinstance(call.op, relax.GlobalVar)):
        return None
    outer = mod[call.op]
    if not (isinstance(outer, relax.Function) and outer.attrs and "Codegen" in outer.attrs):
        return None
    for binding in outer.body.blocks[0].bindings:
        if isinstance(binding.value, relax.Function):
            return str(binding.value.attrs["Composite"])
    return None


@tvm.transform.module_pass(opt_level=0, name="nm.PartitionForAccelerator")
class PartitionForAccelerator:
    """FuseOpsByPattern over the nm pattern table; composite calls carry their layer's source."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        # No alias bindings (``t = lv``, left e.g. by Linearize's Pow -> multiply): a pattern
        # matches through them, but FuseOpsByPattern's grouping does not (cyclic dependency).
        mod = relax.transform.CanonicalizeBindings()(mod)
        groups: list = []
        table = [_recording(p, groups) for p in pattern_table()]
        where: dict = {}  # binding variable or value -> (function name, binding index)
        for gv, func in mod.functions.items():
            if isinstance(func, relax.Function):
                bindings = [b for block in func.body.blocks for b in block.bindings]
                where.update((b.var, (gv.name_hint, i)) for i, b in enumerate(bindings))
                where.update((b.value, (gv.name_hint, i)) for i, b in enumerate(bindings))
        position = lambda e: where.get(e, ("", -1))
        partitioned = relax.transform.FuseOpsByPattern(table, bind_constants=True,
                                                       annotate_codegen=True)(mod)
        by_function: dict = {}  # function name -> [(pattern name, layer span)] in binding order
        for root, kind, anchor, calls, anchor_var in sorted(groups, key=lambda g: position(g[0])):
            source = _layer_source(anchor, calls, anchor_var, lambda e: position(e)[1])
            by_function.setdefault(position(root)[0], []).append((kind, layer_span(*source)))
        for gv, func in list(partitioned.functions.items()):
            if not isinstance(func, relax.Function) or (func.attrs and "Codegen" in func.attrs):
                continue
            expected = by_function.get(gv.name_hint, [])
            sites = [b for block in func.body.blocks for b in block.bindings
                     if _composite_kind(partitioned, b.value) is not None]
            if [_composite_kind(partitioned, b.value) for b in sites] != [k for k, _ in expected]:
                continue  # not the order assumed above: layers keep their fallback names
            spans = {b.var: span for b, (_, span) in zip(sites, expected)}
            partitioned[gv] = respan_bindings(func, lambda b: spans.get(b.var))
        return relax.transform.Normalize()(partitioned)
