"""Calibration probes: make the input of every fitted table an extra output of ``main``, so a
calibration run can observe the range each table really sees (nm_tvm/calibrate.py)."""
from __future__ import annotations

import tvm
from tvm import relax

from nm_tvm.record import ProbeRecord


def expose_probes(mod: tvm.IRModule, probes: list) -> tuple[tvm.IRModule, ProbeRecord]:
    """Append the probed tensors to main's outputs (a flat tuple). Roots are found again by
    position (parameter or binding index), since ToNonDataflow makes new variables; a root the
    scalar fusion re-emitted is found by its (unique) name. A root found neither way is not
    probed: its table keeps its default range."""
    main = mod["main"]
    where, names = {}, {}
    for i, p in enumerate(main.params):
        where[p] = ("param", i)
        names.setdefault(p.name, []).append(("param", i))
    for bi, block in enumerate(main.body.blocks):
        for ji, binding in enumerate(block.bindings):
            where[binding.var] = ("binding", bi, ji)
            names.setdefault(binding.var.name, []).append(("binding", bi, ji))
    found = []
    for inst, root in probes:
        pos = where.get(root)
        if pos is None and len(names.get(getattr(root, "name", None), [])) == 1:
            pos = names[root.name][0]
        if pos is not None:
            found.append((inst, pos))
    mod = relax.transform.ToNonDataflow()(mod)
    main = mod["main"]
    roots = [main.params[pos[1]] if pos[0] == "param"
             else main.body.blocks[pos[1]].bindings[pos[2]].var for _, pos in found]
    ret = main.body.body
    outs = list(ret.fields) if isinstance(ret, relax.Tuple) else [ret]
    result = relax.Tuple(outs + roots)
    body = relax.SeqExpr(main.body.blocks, result)
    ret_ty = relax.TupleType([e.ty for e in outs + roots])
    mod["main"] = relax.Function(main.params, body, ret_ty, attrs=main.attrs)
    mod = relax.transform.Normalize()(mod)
    mod = relax.transform.ConvertToDataflow()(mod)
    return mod, ProbeRecord([inst for inst, _ in found], sum(_leaves(e.ty) for e in outs))


def _leaves(ty) -> int:
    """Tensors in a (nested) tuple type: the VM's outputs are flattened in this order."""
    return sum(_leaves(f) for f in ty.fields) if isinstance(ty, relax.TupleType) else 1
