"""Fold an ONNX graph's shape arithmetic to constants once its input shapes are static.

Exported models compute Reshape targets and Slice bounds at run time (Shape -> Gather ->
Concat -> Reshape). TVM's importer needs those as constants, so nodes whose inputs are all
known -- initializers, Constants, and Shape of a tensor whose shape inference made static --
are evaluated here with ONNX's reference evaluator and replaced by initializers. Only small
tensors are folded (shape arithmetic, not weights), so the model's compute is untouched;
constants that are only rearranged (Unsqueeze, Transpose, Slice, ... of a weight) fold at any
size. An If
whose condition folds is replaced by the branch it takes (exporters guard shape cases and
configuration inputs such as a sample rate with If); inputs given values at compile time
(:func:`with_input_values`) fold like initializers.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

MAX_FOLDED_ELEMENTS = 4096
# Nodes whose presence makes folding worth trying (the rest only fold from these or constants).
_FOLD_SOURCES = {"Shape", "Size", "If"}
# Ops that only move or relabel elements: on constants they fold at any size (weights
# rearranged by the exporter, e.g. an LSTM's W as Unsqueeze of a Constant), since no
# arithmetic of the model is done ahead of time.
_MOVEMENT_OPS = {"Constant", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten",
                 "Transpose", "Slice", "Concat", "Split", "Gather"}


def _static_shapes(proto: onnx.ModelProto) -> dict[str, tuple]:
    inferred = shape_inference.infer_shapes(proto)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + \
            list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    return shapes


def with_static_inputs(proto: onnx.ModelProto, input_shapes: dict) -> onnx.ModelProto:
    """A copy whose graph inputs declare the given static shapes."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    for inp in proto.graph.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            del dims[:]
            for v in input_shapes[inp.name]:
                dims.add().dim_value = int(v)
    return proto


def with_input_values(proto: onnx.ModelProto, values: dict) -> onnx.ModelProto:
    """A copy in which the named graph inputs are initializers holding ``values`` (each cast
    to the input's declared element type): configuration inputs, such as a sample rate that
    selects an If branch, become constants the folding can use."""
    if not values:
        return proto
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    inputs = {i.name: i for i in proto.graph.input}
    for name, value in values.items():
        ttype = inputs[name].type.tensor_type
        array = np.asarray(value, helper.tensor_dtype_to_np_dtype(ttype.elem_type))
        proto.graph.initializer.append(numpy_helper.from_array(array, name))
    keep = [i for i in proto.graph.input if i.name not in values]
    del proto.graph.input[:]
    proto.graph.input.extend(keep)
    return proto


def fold_shape_computations(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every node computable from constants and static shapes by initializers, and
    every If whose condition is so computed by the branch it takes.

    Repeated until nothing more folds (an inlined branch's own nodes fold the next round): a Reshape whose target was just folded gives shape
    inference a static output, whose Shape then folds in the next round (PaddleOCR's
    exports chain several such Reshapes)."""
    if proto.graph.node and not _worth_folding(proto):
        return proto
    while True:
        folded = _fold_once(proto)
        if folded is proto:
            return proto
        proto = folded


def _worth_folding(proto: onnx.ModelProto) -> bool:
    """A node that reads shapes or selects a branch, or one computed from constants only."""
    const = {i.name for i in proto.graph.initializer} | {""}
    for node in proto.graph.node:
        if node.op_type in _FOLD_SOURCES:
            return True
        if node.op_type == "Constant":
            const.update(node.output)
        elif node.input and all(x in const for x in node.input):
            return True
    return False


def _fold_once(proto: onnx.ModelProto) -> onnx.ModelProto:
    """One folding round on the shapes inference gives now; ``proto`` itself if none folds."""
    from onnx.reference import ReferenceEvaluator

    shapes = _static_shapes(proto)
    known = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    folded_nodes, taken = [], {}  # taken: If node's index -> the branch its condition selects
    folded = set()  # indices of folded nodes
    for index, node in enumerate(proto.graph.node):
        if node.op_type == "If" and node.domain in ("", "ai.onnx") and node.input[0] in known:
            branch = "then_branch" if bool(np.asarray(known[node.input[0]]).reshape(-1)[0]) \
                else "else_branch"
            taken[index] = next(a.g for a in node.attribute if a.name == branch)
            continue
        if node.op_type == "Size" and node.input[0] in shapes:
            known[node.output[0]] = np.array(np.prod(shapes[node.input[0]], dtype=np.int64))
            folded_nodes.append(node)
            folded.add(index)
            continue
        if node.domain not in ("", "ai.onnx") or any(
                a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                for a in node.attribute):
            continue
        if node.op_type == "Shape" and node.input[0] in shapes:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            shape = np.array(shapes[node.input[0]], np.int64)
            known[node.output[0]] = shape[attrs.get("start", 0):attrs.get("end", None)]
            folded_nodes.append(node)
            folded.add(index)
            continue
        if node.op_type == "Constant" or (node.input and all(
                (x == "" or x in known) for x in node.input)):
            movement = node.op_type in _MOVEMENT_OPS
            if not movement and any(x and known[x].size > MAX_FOLDED_ELEMENTS
                                    for x in node.input):
                continue
            inputs = [x for x in node.input if x]
            graph = helper.make_graph(
                [node], "fold", [helper.make_tensor_value_info(x, onnx.TensorProto.UNDEFINED, None)
                                 for x in inputs],
                [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                 for o in node.output])
            model = helper.make_model(graph, opset_imports=list(proto.opset_import),
                                      ir_version=proto.ir_version)
            try:
                values = ReferenceEvaluator(model).run(None, {x: known[x] for x in inputs})
            except Exception:  # noqa: BLE001 -- left for TVM's importer to handle or reject
                continue
            if not movement and any(np.asarray(v).size > MAX_FOLDED_ELEMENTS for v in values):
                continue
            for name, value in zip(node.output, values):
                known[name] = np.asarray(value)
            folded_nodes.append(node)
            folded.add(index)
    if not folded_nodes and not taken:
        return proto
    out = onnx.ModelProto.FromString(proto.SerializeToString())
    keep = []
    for index, node in enumerate(out.graph.node):
        if index in taken:
            keep += _inlined_branch(out.graph, node, taken[index])
        elif index not in folded:
            keep.append(node)
    produced = {o for n in folded_nodes for o in n.output}
    consumed = {x for n in keep for x in n.input} | {o.name for o in out.graph.output}
    consumed |= {x for n in keep for g in _subgraphs(n) for x in _outer_references(g)}
    del out.graph.node[:]
    out.graph.node.extend(keep)
    for name in sorted(produced & consumed):
        out.graph.initializer.append(numpy_helper.from_array(known[name], name))
    return out


# Constant's one-value attributes and the tensor each stands for (ONNX Constant-12).
_CONSTANT_ATTRS = {"value_float": np.float32, "value_floats": np.float32,
                   "value_int": np.int64, "value_ints": np.int64}


def constant_values_as_tensors(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Constant nodes given by ``value_float(s)`` / ``value_int(s)`` -> the same constant as a
    ``value`` tensor (a scalar, or 1-D for the plural forms), the only form TVM's importer
    reads; ONNX's function expansions (Selu, Shrink, ... ``_expanded``) use them."""
    def one_value_attr(node):
        if node.op_type != "Constant" or len(node.attribute) != 1:
            return None
        return node.attribute[0] if node.attribute[0].name in _CONSTANT_ATTRS else None

    if not any(one_value_attr(n) for n in proto.graph.node):
        return proto
    out = onnx.ModelProto.FromString(proto.SerializeToString())
    for node in out.graph.node:
        attr = one_value_attr(node)
        if attr is None:
            continue
        value = np.asarray(helper.get_attribute_value(attr), _CONSTANT_ATTRS[attr.name])
        del node.attribute[:]
        node.attribute.extend([helper.make_attribute("value", numpy_helper.from_array(value))])
    return out


def _subgraphs(node: onnx.NodeProto) -> list:
    return [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH] + \
        [g for a in node.attribute if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs]


def _outer_references(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph (or one nested in it) reads from enclosing scopes."""
    local = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    refs = set()
    for node in graph.node:
        refs |= {x for x in node.input if x and x not in local}
        for sub in _subgraphs(node):
            refs |= _outer_references(sub) - local
        local |= set(node.output)
    refs |= {o.name for o in graph.output if o.name not in local}
    return refs


def _rename(nodes, mapping: dict) -> None:
    """Rename ``mapping``'s keys wherever ``nodes`` (and subgraphs nested in them) use them."""
    for node in nodes:
        node.input[:] = [mapping.get(x, x) for x in node.input]
        node.output[:] = [mapping.get(x, x) for x in node.output]
        for sub in _subgraphs(node):
            _rename(sub.node, mapping)
            for out in sub.output:
                out.name = mapping.get(out.name, out.name)


def _inlined_branch(graph: onnx.GraphProto, node: onnx.NodeProto, branch: onnx.GraphProto):
    """The nodes that replace If ``node`` by ``branch``: its nodes (its initializers moved into
    ``graph``), then an Identity from each branch output to the If's output. A branch name that
    the enclosing graph already uses is renamed so that names stay unique."""
    branch = onnx.GraphProto.FromString(branch.SerializeToString())
    used = {i.name for i in graph.input} | {i.name for i in graph.initializer} | \
        {x for n in graph.node for x in list(n.input) + list(n.output)}
    defined = [i.name for i in branch.initializer] + [o for n in branch.node for o in n.output]
    mapping = {}
    for name in defined:
        if name in used:
            k = 0
            while f"{name}__{node.name}_{k}" in used:
                k += 1
            mapping[name] = f"{name}__{node.name}_{k}"
    _rename(branch.node, mapping)
    for init in branch.initializer:
        init.name = mapping.get(init.name, init.name)
        graph.initializer.append(init)
    nodes = list(branch.node)
    for src, dst in zip(branch.output, node.output):
        if dst:
            nodes.append(helper.make_node("Identity", [mapping.get(src.name, src.name)], [dst],
                                          name=f"{node.name or dst}/{src.name}"))
    return nodes


def explicit_auto_pad(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``auto_pad=SAME_UPPER/SAME_LOWER`` -> explicit ``pads`` (ONNX's own formula), so TVM's
    importer emits the padding inside the conv / pool rather than as a separate pad kernel."""
    targets = [n for n in proto.graph.node if n.op_type in ("Conv", "MaxPool", "AveragePool")
               and any(a.name == "auto_pad" and a.s in (b"SAME_UPPER", b"SAME_LOWER")
                       for a in n.attribute)]
    if not targets:
        return proto
    shapes = _static_shapes(proto)
    inits = {i.name: tuple(i.dims) for i in proto.graph.initializer}
    out = onnx.ModelProto.FromString(proto.SerializeToString())
    for node in out.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("auto_pad", b"")
        if node.op_type not in ("Conv", "MaxPool", "AveragePool") or mode not in (
                b"SAME_UPPER", b"SAME_LOWER") or node.input[0] not in shapes:
            continue
        spatial = shapes[node.input[0]][2:]
        kernel = attrs.get("kernel_shape") or inits.get(node.input[1], (0, 0))[2:]
        if len(kernel) != len(spatial):
            continue
        strides = attrs.get("strides", [1] * len(spatial))
        dilations = attrs.get("dilations", [1] * len(spatial))
        begin, end = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            begin.append(small if mode == b"SAME_UPPER" else large)
            end.append(large if mode == b"SAME_UPPER" else small)
        keep = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
        del node.attribute[:]
        node.attribute.extend(keep + [helper.make_attribute("pads", begin + end)])
    return out


_CT_PAD_ATTRS = ("auto_pad", "output_shape", "output_padding", "pads")


def conv_transpose_pads(node, x_shape, kernel) -> list[int] | None:
    """A ConvTranspose node's padding as explicit ``pads`` (begin..., end...) with
    ``output_padding`` folded into the end pads (which may then be negative: extra rows and
    columns at the end): from ``output_shape`` or ``auto_pad=SAME_*`` by ONNX's formula
    (``total = stride*(in-1) + output_padding + (k-1)*dilation + 1 - out``; SAME_UPPER puts
    ``total // 2`` first, other modes ``total - total // 2``), else the given ``pads``. None
    when the spatial rank is unknown."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    spatial = list(x_shape[2:])
    if len(kernel) != len(spatial):
        return None
    n = len(spatial)
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    out_pad = list(attrs.get("output_padding", [0] * n))
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if "output_shape" in attrs or mode in ("SAME_UPPER", "SAME_LOWER"):
        target = (list(attrs["output_shape"])[-n:] if "output_shape" in attrs
                  else [size * s for size, s in zip(spatial, strides)])
        begin, end = [], []
        for size, k, s, d, op, out in zip(spatial, kernel, strides, dilations, out_pad, target):
            total = s * (size - 1) + op + (k - 1) * d + 1 - out
            small, large = total // 2, total - total // 2
            begin.append(small if mode == "SAME_UPPER" else large)
            end.append(large if mode == "SAME_UPPER" else small)
    elif mode == "VALID":
        begin, end = [0] * n, [0] * n
    else:
        pads = list(attrs.get("pads", [0] * 2 * n))
        begin, end = pads[:n], pads[n:]
    return begin + [e - op for e, op in zip(end, out_pad)]


def explicit_conv_transpose_pads(proto: onnx.ModelProto) -> onnx.ModelProto:
    """ConvTranspose ``output_shape`` / ``auto_pad`` / ``output_padding`` -> explicit ``pads``
    (:func:`conv_transpose_pads`). TVM's importer ignores ``output_shape`` and takes
    ``output_padding`` only below the stride (ONNX allows it below the dilation too); padding
    alone says the same and TVM's conv2d_transpose takes negative end pads."""
    targets = [n for n in proto.graph.node if n.op_type == "ConvTranspose"
               and any(a.name in _CT_PAD_ATTRS[:3] for a in n.attribute)]
    if not targets:
        return proto
    shapes = _static_shapes(proto)
    inits = {i.name: tuple(i.dims) for i in proto.graph.initializer}
    out = onnx.ModelProto.FromString(proto.SerializeToString())
    for node in out.graph.node:
        if (node.op_type != "ConvTranspose" or node.input[0] not in shapes
                or not any(a.name in _CT_PAD_ATTRS[:3] for a in node.attribute)):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attrs.get("kernel_shape") or inits.get(node.input[1], (0, 0))[2:])
        pads = conv_transpose_pads(node, shapes[node.input[0]], kernel)
        if pads is None:
            continue
        keep = [a for a in node.attribute if a.name not in _CT_PAD_ATTRS]
        del node.attribute[:]
        node.attribute.extend(keep + [helper.make_attribute("pads", pads)])
    return out
