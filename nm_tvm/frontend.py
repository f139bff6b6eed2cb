"""Import models: ONNX files or protos (via TVM's ONNX frontend) or Relax IRModules."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import tvm
from tvm import relax


class ModelLoadError(ValueError):
    """The model cannot be read or imported; the message says why and where."""


class ImporterError(ModelLoadError):
    """TVM's ONNX importer failed (often on an operator it or the accelerator cannot take)."""


@dataclass
class ImportedModel:
    mod: tvm.IRModule
    input_names: list[str]
    input_shapes: dict[str, tuple]
    input_dtypes: dict[str, str]
    output_names: list[str]
    onnx_model: onnx.ModelProto | None = None
    # Inputs given values at compile time (folded into the graph; no longer inputs).
    fixed_inputs: dict[str, np.ndarray] = field(default_factory=dict)


# Graph input types the accelerator's DRAM holds (integer tensors: token ids, masks, counts).
_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64",
                onnx.TensorProto.INT32: "int32", onnx.TensorProto.BOOL: "bool",
                onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}


def load_onnx(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"model file '{path}' does not exist")
    try:
        proto = onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError and friends
        raise ModelLoadError(f"'{path}' is not a readable ONNX model ({err})") from None
    if not proto.graph.node:
        raise ModelLoadError(f"'{path}' has no graph nodes (not an ONNX model?)")
    return proto


def _graph_inputs(proto: onnx.ModelProto) -> list:
    initializers = {init.name for init in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


def _check_layer_norm_outputs(proto: onnx.ModelProto) -> None:
    """TVM's importer returns zeros for LayerNormalization's optional Mean / InvStdDev
    outputs: refuse models that use them rather than return wrong numbers."""
    used = {o.name for o in proto.graph.output}
    for node in proto.graph.node:
        used.update(node.input)
    for i, node in enumerate(proto.graph.node):
        if node.op_type == "LayerNormalization" and any(o and o in used for o in node.output[1:]):
            raise ModelLoadError(
                f"LayerNormalization node '{node.name or f'#{i}'}' uses its Mean/InvStdDev "
                "outputs, which TVM's ONNX importer does not compute; only output Y is supported")


def _check_batch_norm_inference(proto: onnx.ModelProto) -> None:
    """A BatchNormalization in training mode normalizes with the batch's own statistics;
    the flow folds BatchNorm as inference (running statistics): refuse it rather than
    return wrong numbers."""
    for i, node in enumerate(proto.graph.node):
        if node.op_type == "BatchNormalization" and any(
                a.name == "training_mode" and a.i for a in node.attribute):
            raise ModelLoadError(
                f"BatchNormalization node '{node.name or f'#{i}'}' has training_mode=1; only "
                "inference mode (running mean / variance) is supported")


def _check_conv_transpose_pads(proto) -> None:
    """ONNX says a ConvTranspose's ``output_shape`` overrides its ``pads``, while its reference
    implementation uses both: refuse the two together, naming the node."""
    for node in proto.graph.node:
        names = {a.name for a in node.attribute}
        if node.op_type == "ConvTranspose" and {"output_shape", "pads"} <= names:
            raise ModelLoadError(
                f"ConvTranspose node '{node.name or node.output[0]}': both output_shape and "
                "pads are given (ONNX ignores pads then and its reference uses them; give one)")


def _fixed_input_values(proto: onnx.ModelProto, input_values: dict) -> dict[str, np.ndarray]:
    """``input_values`` as arrays of each input's declared element type and shape (checked)."""
    inputs = {i.name: i for i in _graph_inputs(proto)}
    fixed = {}
    for name, value in input_values.items():
        if name not in inputs:
            raise ModelLoadError(f"input_values names unknown input '{name}'; model inputs are "
                                 f"{list(inputs)}")
        ttype = inputs[name].type.tensor_type
        if ttype.elem_type not in _ONNX_DTYPES:
            raise ModelLoadError(f"input '{name}' has ONNX element type "
                                 f"{onnx.TensorProto.DataType.Name(ttype.elem_type)}")
        array = np.asarray(value)
        cast = array.astype(_ONNX_DTYPES[ttype.elem_type])
        if not np.array_equal(cast, array):
            raise ModelLoadError(f"input_values['{name}'] = {value!r} does not fit the input's "
                                 f"type {_ONNX_DTYPES[ttype.elem_type]}")
        dims = ttype.shape.dim
        if len(dims) != cast.ndim or any(d.HasField("dim_value") and d.dim_value != n
                                         for d, n in zip(dims, cast.shape)):
            declared = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                        for d in dims]
            raise ModelLoadError(f"input_values['{name}'] has shape {list(cast.shape)}; the "
                                 f"input is declared {declared}")
        fixed[name] = cast
    return fixed


def import_onnx(model, input_shapes: dict | None = None,
                input_values: dict | None = None) -> ImportedModel:
    """ONNX -> Relax with static shapes and weights as constants. ``input_values`` fixes
    inputs at compile time (configuration such as a sample rate): they become constants, fold
    with the shape arithmetic (an If they select is replaced by its branch), and are no longer
    inputs of the compiled model."""
    from nm_tvm.onnx_fold import with_input_values

    proto = load_onnx(model)
    fixed = _fixed_input_values(proto, dict(input_values or {}))
    proto = with_input_values(proto, fixed)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise ModelLoadError(f"ONNX model is invalid: {err}") from None
    _check_layer_norm_outputs(proto)
    _check_batch_norm_inference(proto)
    _check_conv_transpose_pads(proto)
    input_shapes = dict(input_shapes or {})
    shapes, dtypes = {}, {}
    for inp in _graph_inputs(proto):
        ttype = inp.type.tensor_type
        if ttype.elem_type not in _ONNX_DTYPES:
            raise ModelLoadError(
                f"input '{inp.name}' has ONNX element type "
                f"{onnx.TensorProto.DataType.Name(ttype.elem_type)}; supported input types are "
                "FLOAT, INT64, INT32, BOOL, UINT8 and INT8")
        dtypes[inp.name] = _ONNX_DTYPES[ttype.elem_type]
        if inp.name in input_shapes:
            shapes[inp.name] = tuple(int(v) for v in input_shapes.pop(inp.name))
            continue
        dims = []
        for d in ttype.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(d.dim_value)
            elif d.HasField("dim_value") and d.dim_value == 0:
                raise ModelLoadError(f"input '{inp.name}' is empty (a dimension of size 0); "
                                     "empty tensors are not supported")
            else:
                raise ModelLoadError(
                    f"input '{inp.name}' has a dynamic dimension '{d.dim_param or '?'}'; "
                    f"give its shape, e.g. input_shapes={{'{inp.name}': (1, ...)}}")
        shapes[inp.name] = tuple(dims)
    if input_shapes:
        raise ModelLoadError(f"input_shapes names unknown input(s) {sorted(input_shapes)}; "
                             f"model inputs are {list(shapes)}")
    from nm_tvm.onnx_fold import (constant_values_as_tensors, explicit_auto_pad,
                                  explicit_conv_transpose_pads, fold_shape_computations,
                                  with_static_inputs)
    from nm_tvm.unroll_recurrent import UnrollError, unroll_recurrent

    try:
        proto = fold_shape_computations(constant_values_as_tensors(
            with_static_inputs(proto, shapes)))
        _check_no_runtime_if(proto)
        proto = explicit_conv_transpose_pads(explicit_auto_pad(unroll_recurrent(proto)))
        mod = _from_onnx_with_sources(proto, shapes)
    except UnrollError as err:  # a recurrent node's form: the message names the node
        raise ModelLoadError(str(err)) from None
    except ModelLoadError:  # refused by one of our conversions, naming the node
        raise
    except Exception as err:
        raise ImporterError(f"TVM's ONNX importer failed: {err}") from None
    _check_static_shapes(mod)
    return ImportedModel(mod, list(shapes), shapes, dtypes,
                         [o.name for o in proto.graph.output], proto, fixed)


def _check_no_runtime_if(proto: onnx.ModelProto) -> None:
    """An If left after folding has a condition computed at run time: the accelerator runs one
    static program, so refuse it, naming the node and the graph inputs the condition reads
    (an input fixed with ``input_values`` folds the condition)."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    inputs = {i.name for i in proto.graph.input}
    for node in proto.graph.node:
        if node.op_type != "If":
            continue
        sources, stack, seen = set(), [node.input[0]], set()
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in inputs:
                sources.add(name)
            elif name in producer:
                stack.extend(x for x in producer[name].input if x)
        hint = (f"; it depends on input(s) {sorted(sources)}: fix them at compile time with "
                f"input_values={{'{sorted(sources)[0]}': ...}}" if sources else "")
        raise ModelLoadError(
            f"If node '{node.name or node.output[0]}' has a condition computed at run time"
            f"{hint} (an If with a constant condition is replaced by its branch)")


def _check_static_shapes(mod: tvm.IRModule) -> None:
    """Every tensor of the imported graph must have a static shape: one computed from run-time
    values (a Range whose bounds are not constants, a data-dependent NonZero) cannot be mapped
    to fixed DRAM regions, and TVM's legalization crashes on some of them later. Refuse the
    first such node by name, here."""
    from nm_tvm.provenance import source_node

    for func in mod.functions.values():
        if not isinstance(func, relax.Function):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                ty = binding.var.ty
                if not hasattr(ty, "dtype"):  # tuples, shapes, objects
                    continue
                try:  # a shape bound to a variable (not an expression) cannot be listed
                    dims = list(ty.shape) if getattr(ty, "shape", None) is not None else None
                except TypeError:
                    dims = None
                if dims is not None and all(isinstance(getattr(d, "value", None), int)
                                            for d in dims):
                    continue
                value = binding.value
                node = (source_node(value) if isinstance(value, relax.Call) else None) \
                    or binding.var.name
                shown = "unknown" if dims is None else f"({', '.join(str(d) for d in dims)})"
                raise ModelLoadError(
                    f"node '{node}' produces a tensor of shape {shown} that depends on run-time "
                    "values; only static shapes are supported (shape arithmetic on constants "
                    "and input shapes is folded, data-dependent shapes are not)")


# ONNX Pad modes -> relax.nn.pad's (the backend reads them back as np.pad's edge / reflect / wrap)
_PAD_MODES = {"constant": "constant", "edge": "replicate", "reflect": "reflect",
              "wrap": "circular"}


def _pad(inputs, attrs):
    """ONNX Pad (opset >= 11) with constant, non-negative pads (and constant value and axes)
    as ``relax.nn.pad``, in any mode (constant, edge, reflect, wrap): TVM imports it as a
    call_tir of topi.pad or mirror_pad, which no pattern can match. Other forms return None
    and keep TVM's import."""
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    data = inputs[0]
    pads = inputs[1] if len(inputs) > 1 else None
    value = inputs[2] if len(inputs) > 2 else None
    axes = inputs[3] if len(inputs) > 3 else None
    rank = len(getattr(data.ty, "shape", None) or [])
    if (mode not in _PAD_MODES or not rank or not isinstance(pads, tvm.ir.Constant)
            or (value is not None and not isinstance(value, tvm.ir.Constant))
            or (axes is not None and not isinstance(axes, tvm.ir.Constant))):
        return None
    pads = [int(p) for p in pads.value.numpy().reshape(-1)]
    chosen = (list(range(rank)) if axes is None
              else [int(a) % rank for a in axes.value.numpy().reshape(-1)])
    if len(pads) != 2 * len(chosen) or any(p < 0 for p in pads):
        return None  # negative pads crop: TVM's import handles them
    width = [0] * (2 * rank)
    for i, axis in enumerate(chosen):
        width[2 * axis], width[2 * axis + 1] = pads[i], pads[len(chosen) + i]
    fill = 0.0 if value is None else float(value.value.numpy().reshape(-1)[0])
    return relax.op.nn.pad(data, width, _PAD_MODES[mode], fill)


def _expand_is_identity(data, shape) -> bool:
    """Whether Expand to the constant ``shape`` leaves ``data``'s static shape as it is (an
    identity TVM would still import as a broadcast, which integer tensors cannot take)."""
    dims = getattr(data.ty, "shape", None)
    if dims is None or not all(isinstance(getattr(d, "value", None), int) for d in dims):
        return False
    dims = tuple(int(d) for d in dims)
    try:
        return np.broadcast_shapes(dims, tuple(int(v) for v in shape.value.numpy())) == dims
    except ValueError:
        return False


def _gather_slices(bb, inputs, attrs):
    """ONNX Gather from a computed tensor at constant indices (``state[0]``, picking frames)
    as strided slices along the axis, one per run of evenly spaced indices, concatenated and
    reshaped to Gather's shape: DMA views, where TVM's ``take`` would need the table as a
    constant. Other forms return None and keep TVM's import."""
    data, indices = inputs[0], inputs[1]
    shape = getattr(data.ty, "shape", None)
    if (isinstance(data, tvm.ir.Constant) or not isinstance(indices, tvm.ir.Constant)
            or shape is None or not all(isinstance(getattr(d, "value", None), int)
                                        for d in shape)):
        return None
    shape = [int(d) for d in shape]
    axis = int(attrs.get("axis", 0)) % len(shape)
    idx = indices.value.numpy().astype(np.int64)
    n = shape[axis]
    if idx.size == 0 or np.any(idx < -n) or np.any(idx >= n):
        return None  # out of range: TVM's import (and ONNX) decide
    flat = np.where(idx < 0, idx + n, idx).reshape(-1)
    pieces, i = [], 0
    while i < len(flat):
        j, step = i, 1
        if i + 1 < len(flat) and flat[i + 1] > flat[i]:
            step = int(flat[i + 1] - flat[i])
            while j + 1 < len(flat) and flat[j + 1] - flat[j] == step:
                j += 1
        piece = relax.op.strided_slice(data, [axis], [int(flat[i])], [int(flat[j]) + 1], [step])
        pieces.append(bb.emit(piece) if len(flat) > 1 else piece)
        i = j + 1
    y = pieces[0] if len(pieces) == 1 else bb.emit(relax.op.concat(pieces, axis))
    out_shape = shape[:axis] + list(idx.shape) + shape[axis + 1:]
    if out_shape != shape[:axis] + [len(flat)] + shape[axis + 1:]:
        y = relax.op.reshape(bb.emit(y) if isinstance(y, relax.Call) else y, out_shape)
    return y


def _instance_norm(_node, inputs, attrs):
    """InstanceNormalization = group norm with one channel per group: one decomposition
    (passes/linearize.py) for both, where TVM's import gives instance norm a variance op."""
    x, scale, bias = inputs[:3]
    rank = len(x.ty.shape)
    return relax.op.nn.group_norm(x, scale, bias, int(x.ty.shape[1]), channel_axis=1,
                                  axes=list(range(2, rank)),
                                  epsilon=float(attrs.get("epsilon", 1e-5)))


def _lp_normalization(node: onnx.NodeProto, inputs, attrs):
    """LpNormalization (TVM has no import): ``x * rsqrt(sum x^2)`` for p = 2, ``x / sum |x|``
    for p = 1 (ONNX allows only these), the sums over ``axis`` kept as a size-1 axis. A zero
    vector's norm is replaced by 1 (``+ prod(x == 0)``, 1 only there), so its output is 0
    as ONNX says and no table has to cover the pole at 0."""
    x = inputs[0]
    p, axis = int(attrs.get("p", 2)), int(attrs.get("axis", -1))
    if p not in (1, 2):
        raise ModelLoadError(f"LpNormalization node '{node.name}': p = {p}; ONNX defines p = 1 "
                             "and 2")
    zero = relax.op.astype(relax.op.equal(x, relax.const(0.0, "float32")), "float32")
    all_zero = relax.op.prod(zero, axis=[axis], keepdims=True)
    if p == 2:
        squares = relax.op.sum(relax.op.multiply(x, x), axis=[axis], keepdims=True)
        return relax.op.multiply(x, relax.op.rsqrt(relax.op.add(squares, all_zero)))
    norm = relax.op.sum(relax.op.abs(x), axis=[axis], keepdims=True)
    return relax.op.divide(x, relax.op.add(norm, all_zero))


def _celu(_node, inputs, attrs):
    """Celu (TVM has no import) as ONNX defines it: ``max(0, x) + min(0, alpha * (exp(x /
    alpha) - 1))``, elementwise ops of x that Linearize fuses into one table."""
    x = inputs[0]
    alpha = relax.const(float(attrs.get("alpha", 1.0)), "float32")
    zero, one = relax.const(0.0, "float32"), relax.const(1.0, "float32")
    negative = relax.op.multiply(alpha, relax.op.subtract(
        relax.op.exp(relax.op.divide(x, alpha)), one))
    return relax.op.add(relax.op.nn.relu(x), relax.op.minimum(negative, zero))


def _shrink(_node, inputs, attrs):
    """Shrink as ONNX's reference computes it, ``x + bias`` below ``-lambd``, else ``x - bias``
    above ``lambd``, else 0, written as steps times lines: ``(x + b) [x < -l] + (x - b)
    [x > l] (1 - [x < -l])``, which Linearize fuses into one exact table (TVM's import is
    two selects, a zeros tensor and their sum)."""
    x = inputs[0]
    lambd, bias = float(attrs.get("lambd", 0.5)), float(attrs.get("bias", 0.0))

    def step(compare, k):
        return relax.op.astype(compare(x, relax.const(k, "float32")), "float32")

    below, above = step(relax.op.less, -lambd), step(relax.op.greater, lambd)
    only_above = relax.op.multiply(above, relax.op.subtract(relax.const(1.0, "float32"), below))
    b = relax.const(bias, "float32")
    return relax.op.add(relax.op.multiply(relax.op.add(x, b), below),
                        relax.op.multiply(relax.op.subtract(x, b), only_above))


# ONNX operators converted here, (node, inputs, attrs) -> Relax expression (TVM's import has
# none, or one the accelerator runs worse).
_OWN_CONVERSIONS = {"InstanceNormalization": _instance_norm,
                    "LpNormalization": _lp_normalization, "Celu": _celu, "Shrink": _shrink}


def _resize_constants(node: onnx.NodeProto, inputs) -> list:
    """A Resize / Upsample node's inputs as arrays (roi, scales, sizes; None where absent):
    its matrices are built at import, so every input but the data must be a constant."""
    values = [None]
    for pos in range(1, len(node.input)):
        expr = inputs[pos]
        if expr is None:
            values.append(None)
        elif isinstance(expr, tvm.ir.Constant):
            values.append(expr.value.numpy())
        elif isinstance(expr, relax.ShapeExpr) and all(hasattr(v, "value") for v in expr.values):
            values.append(np.array([int(v.value) for v in expr.values], np.int64))
        else:
            raise ModelLoadError(
                f"{node.op_type} node '{node.name}': input '{node.input[pos]}' is computed at "
                "run time; roi, scales and sizes must be constants (the interpolation matrices "
                "are built at compile time)")
    return values


def _nearest_view(resize, attrs: dict) -> tuple[str, str] | None:
    """(coordinate mode, rounding) for a resize2d the backend runs as one DMA view: a 4-D
    Resize of H / W whose ONNX matrices pick one input each (nearest, or linear at integer
    coordinates) along integer repeats or strides, given resize2d attributes that read the
    same index maps (TVM maps coordinates by the sizes, ONNX by the scales): the node's own
    if so, else asymmetric / floor. None: the GEMM path."""
    from nm_tvm.resize_matrices import nearest_source_index, strided_axis_map

    indices = resize.nearest_indices()
    if indices is None or len(resize.in_shape) != 4 or not set(indices) <= {2, 3}:
        return None
    lengths = [(resize.in_shape[a], resize.out_shape[a]) for a in (2, 3)]
    if any(n_out % n_in and n_in % n_out for n_in, n_out in lengths):
        return None  # the backend takes integer length ratios only
    maps = [indices.get(a, np.arange(resize.in_shape[a])) for a in (2, 3)]
    if any(strided_axis_map(index) is None for index in maps):
        return None
    own = (attrs.get("coordinate_transformation_mode", "half_pixel"),
           attrs.get("nearest_mode", "round_prefer_floor"))
    for mode, rounding in (own, ("asymmetric", "floor")):
        if mode == "align_corners" and any(n_out == 1 for _, n_out in lengths):
            continue  # TVM's resize2d divides by the output size - 1
        if all(np.array_equal(nearest_source_index(n_in, n_out, mode, rounding), index)
               for (n_in, n_out), index in zip(lengths, maps)):
            return mode, rounding
    return None


def _resize_gemms(bb, x, resize):
    """One matmul with a constant interpolation matrix per resized axis (the order with the
    fewest MACs), reshaped so that it contracts that axis: ``rows @ A^T`` when the axis is
    innermost (one GEMM over every row), else ``A @ slab`` with A broadcast over the leading
    axes; then tf_crop_and_resize's constant extrapolation term."""
    def reshaped(y, shape):
        if [int(d) for d in y.ty.shape] == list(shape):
            return y
        return bb.emit(relax.op.reshape(y, shape))

    y, shape = x, list(resize.in_shape)
    for axis in resize.axis_order():
        matrix = resize.matrices[axis].astype(np.float32)
        n_out, n_in = matrix.shape
        pre, post = int(np.prod(shape[:axis])), int(np.prod(shape[axis + 1:]))
        if post == 1:
            product = relax.op.matmul(reshaped(y, (pre, n_in)), relax.const(matrix.T.copy()))
        else:
            slab = (n_in, post) if pre == 1 else (pre, n_in, post)
            product = relax.op.matmul(relax.const(matrix), reshaped(y, slab))
        shape[axis] = n_out
        y = bb.emit(product)
    y = reshaped(y, shape)
    if resize.bias is not None:
        y = relax.op.add(y, relax.const(resize.bias.astype(np.float32)))
    return y


def _convert_resize(bb, node: onnx.NodeProto, opset: int, inputs):
    """ONNX Resize / Upsample in every mode ONNX's reference defines: an integer-ratio nearest
    one as resize2d (one DMA view in the backend), any other as GEMMs with the constant
    matrices of ``nm_tvm.resize_matrices``. None: a form TVM's import keeps
    (tf_half_pixel_for_nn, which the reference lacks)."""
    from nm_tvm.resize_matrices import (ResizeFormError, attribute_values, resize_operands,
                                        separable_resize)

    x = inputs[0]
    if getattr(x.ty, "dtype", None) != "float32":
        raise ModelLoadError(f"{node.op_type} node '{node.name}': input of type "
                             f"{getattr(x.ty, 'dtype', '?')}; Resize takes float32")
    constants = _resize_constants(node, inputs)
    try:
        attrs = attribute_values(resize_operands(node, opset, constants)[0])
        if attrs.get("coordinate_transformation_mode") == "tf_half_pixel_for_nn":
            return None
        resize = separable_resize(node, opset, [int(d) for d in x.ty.shape], constants)
    except ResizeFormError as err:
        raise ModelLoadError(str(err)) from None
    if not resize.matrices and resize.bias is None:
        return x  # the identity
    view = _nearest_view(resize, attrs)
    if view is not None:
        return relax.op.image.resize2d(
            x, size=relax.ShapeExpr(list(resize.out_shape[2:])), roi=[0.0] * 4,
            layout="NCHW", method="nearest_neighbor", coordinate_transformation_mode=view[0],
            rounding_method=view[1])
    return _resize_gemms(bb, x, resize)


def _from_onnx_with_sources(proto: onnx.ModelProto, shapes: dict) -> tvm.IRModule:
    """TVM's ONNX import, with every call's span naming the ONNX node it came from
    (``nm_tvm.provenance``) so that reports can name layers as the source model does.
    A node without a name is named after its first output tensor."""
    from tvm.relax.frontend.onnx.onnx_frontend import ONNXGraphImporter

    from nm_tvm.provenance import respan_bindings, source_span

    class SourceNamingImporter(ONNXGraphImporter):
        def __init__(self):
            super().__init__(shapes, "float32", keep_params_in_input=False, sanitize=True)
            self.node_of: dict = {}  # var that ends a node's conversion -> node name

        def _convert_operator(self, op_name, inputs, attrs, opset):
            if op_name == "Tile" and isinstance(inputs[1], tvm.ir.Constant):
                # TVM imports a constant-repeats Tile as a call_tir of topi.tile, which no
                # pattern can match; relax.tile is the same operator (it legalizes to topi.tile)
                reps = [int(r) for r in inputs[1].value.numpy().reshape(-1)]
                return self._own(relax.op.tile(inputs[0], reps), attrs["tvm_custom"]["name"])
            if op_name == "Cast" and getattr(inputs[0].ty, "dtype", None) == "float32" and \
                    _ONNX_DTYPES.get(attrs.get("to")) not in (None, "float32"):
                # TVM imports float -> integer casts as NaN / range fix-ups around an astype;
                # ONNX leaves those cases undefined and the STORE refuses them by name.
                return self._own(relax.op.astype(inputs[0], _ONNX_DTYPES[attrs["to"]]),
                                 attrs["tvm_custom"]["name"])
            if op_name == "Expand" and isinstance(inputs[1], tvm.ir.Constant) and \
                    _expand_is_identity(inputs[0], inputs[1]):
                return inputs[0]  # jax2tf's BroadcastTo to the input's own shape
            if op_name == "Gather":
                sliced = _gather_slices(self.bb, inputs, attrs)
                if sliced is not None:
                    return self._own(sliced, attrs["tvm_custom"]["name"])
            if op_name == "Pad":
                padded = _pad(inputs, attrs)
                if padded is not None:
                    return self._own(padded, attrs["tvm_custom"]["name"])
            if op_name in _OWN_CONVERSIONS:
                name = attrs["tvm_custom"]["name"]
                return self._own(_OWN_CONVERSIONS[op_name](nodes[name], inputs, attrs), name)
            if op_name in ("Resize", "Upsample"):
                name = attrs["tvm_custom"]["name"]
                resized = _convert_resize(self.bb, nodes[name], opset, inputs)
                if resized is not None:
                    return self._own(resized, name)
            result = super()._convert_operator(op_name, inputs, attrs, opset)
            node = attrs["tvm_custom"]["name"]
            if isinstance(result, relax.Tuple):  # several outputs (LayerNormalization, Split)
                return relax.Tuple([self._own(field, node) for field in result.fields])
            return self._own(result, node)

        def _check_for_unsupported_ops(self, graph):
            rest = onnx.GraphProto()
            rest.node.extend(n for n in graph.node if n.op_type not in _OWN_CONVERSIONS)
            super()._check_for_unsupported_ops(rest)

        def _own(self, result, node):
            if isinstance(result, relax.Call):  # bind it here so that its binding is the node's
                result = self.bb.emit(result, name_hint=node)
            if isinstance(result, relax.Var):  # Identity & co. return their input: not theirs
                self.node_of.setdefault(result, node)
            return result

    graph = onnx.GraphProto()
    graph.CopyFrom(proto.graph)
    for node in graph.node:
        if not node.name:
            node.name = node.output[0]
    nodes = {node.name: node for node in graph.node}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    importer = SourceNamingImporter()
    mod = importer.from_onnx(graph, opset)
    # Bindings are emitted node by node: those before a node's final binding are its own.
    owner, pending = {}, []
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            pending.append(binding.var)
            node = importer.node_of.get(binding.var)
            if node is not None:
                owner.update((var, node) for var in pending)
                pending = []
    mod["main"] = respan_bindings(
        mod["main"], lambda b: source_span(owner[b.var]) if b.var in owner else None)
    return relax.transform.Normalize()(mod)


def import_relax(mod: tvm.IRModule) -> ImportedModel:
    """A Relax IRModule whose ``main`` takes static-shape float32 tensors."""
    if "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        raise ModelLoadError("the IRModule has no 'main' function")
    main = mod["main"]
    shapes, dtypes = {}, {}
    for param in main.params:
        ty = param.ty
        if not isinstance(ty, relax.TensorType) or ty.shape is None:
            raise ModelLoadError(f"parameter '{param.name}' of main is not a tensor with a shape")
        try:
            shapes[param.name] = tuple(int(d) for d in ty.shape)
        except (TypeError, ValueError):
            raise ModelLoadError(f"parameter '{param.name}' has a symbolic shape") from None
        dtypes[param.name] = str(ty.dtype)
    ret = main.ret_ty
    n_out = len(ret.fields) if isinstance(ret, relax.TupleType) else 1
    return ImportedModel(mod, list(shapes), shapes, dtypes, [f"output_{i}" for i in range(n_out)])


def import_model(model, input_shapes: dict | None = None,
                 input_values: dict | None = None) -> ImportedModel:
    if isinstance(model, tvm.IRModule):
        if input_values:
            raise ModelLoadError("input_values applies to ONNX models only")
        return import_relax(model)
    return import_onnx(model, input_shapes, input_values)


def random_inputs(imported: ImportedModel, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(imported.input_shapes[name]).astype(np.float32)
            for name in imported.input_names}
