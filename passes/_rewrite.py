"""Apply dataflow-pattern rewrites, keeping the source-model provenance of what they replace.

TVM's ``rewrite_call`` drops the spans of the calls a rewrite creates (it re-normalizes nested
results), and the span is how a layer finds its ONNX node (``nm_tvm.provenance``). This rewriter
does the same job binding by binding: a binding whose value matches the pattern (looking through
earlier bindings, as ``rewrite_call`` does) is replaced by the rewrite's result, emitted inner
call first so that every new call keeps the span of the call it replaces.
"""
from __future__ import annotations

import tvm
from tvm import relax

from nm_tvm.provenance import inherit_span


@relax.expr_functor.mutator
class _PatternRewriter(relax.PyExprMutator):
    def __init__(self, mod, pattern, rewrite, var2val):
        super().__init__(mod)
        self.pattern, self.rewrite, self.var2val = pattern, rewrite, var2val
        # The matcher looks through bindings, so a match (and a rewrite's result) can hold the
        # *value* of an earlier binding: it stands for that binding's variable (rewritten or
        # not), never for a copy of the original call, which would undo an earlier rewrite.
        self.bound = {value: var for var, value in var2val.items()}
        self.current = None

    def visit_var_binding_(self, binding):
        value = binding.value
        self.current = binding.var
        # a variable bound to another is not a match of its own (its producer's binding is)
        matches = (None if isinstance(value, relax.Var)
                   else self.pattern.extract_matched_expr(value, self.var2val))
        if matches is not None:
            new = self.rewrite(value, matches)
            if not new.same_as(value):
                new = inherit_span(new, value.span)
                emit = (self.builder_.emit if isinstance(binding.var, relax.DataflowVar)
                        else self.builder_.emit_output)
                self.set_var_remap(binding.var, emit(self._flatten(new), name_hint=binding.var.name))
                return
        super().visit_var_binding_(binding)

    def _flatten(self, expr):
        """``expr`` with every nested call emitted as a binding of its own (spans kept) and
        every variable mapped to its rewritten one."""
        if isinstance(expr, relax.Var):
            return self.visit_expr(expr)
        var = self.bound.get(expr)
        if var is not None and not var.same_as(self.current):
            return self.visit_expr(var)
        if isinstance(expr, relax.Tuple):
            return relax.Tuple([self._operand(f) for f in expr.fields])
        if not isinstance(expr, relax.Call):
            return expr
        args = [self._operand(a) for a in expr.args]
        return relax.Call(expr.op, args, expr.attrs, expr.ty_args, span=expr.span)

    def _operand(self, expr):
        flat = self._flatten(expr)
        return self.builder_.emit(flat) if isinstance(flat, relax.Call) else flat


def rewrite_keeping_spans(pattern, rewrite, func: relax.Function) -> relax.Function:
    """One pass of ``rewrite(expr, matches)`` over ``func``'s bindings; unused bindings dropped."""
    var2val = relax.analysis.get_var2val(func)
    new = _PatternRewriter(tvm.IRModule(), pattern, rewrite, var2val).visit_expr(func)
    return relax.analysis.remove_all_unused(new)


def rewrite_functions(mod: tvm.IRModule, pattern, rewrite) -> tvm.IRModule:
    for gv, func in list(mod.functions.items()):
        if isinstance(func, relax.Function):
            mod[gv] = rewrite_keeping_spans(pattern, rewrite, func)
    return mod
