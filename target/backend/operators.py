"""The operators the accelerator runs, one entry each: the Relax call that anchors the layer,
the check a match must pass, and the lowering that reads the composite and calls the codegen
function generating its program.

Adding an operator is one ``@accelerator_op`` entry here (plus, when no codegen function fits,
one ``*_program`` function in ``nm_tvm.target.codegen``); the ONNX claim goes in
``nm_tvm/support.py`` so that the conformance ledger runs its node cases. Entries are in
priority order: ``FuseOpsByPattern`` gives earlier patterns priority, and GEMM anchors come first
so that they absorb their bias, residual and ReLU (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from tvm.relax.dpl import is_const, is_op, wildcard
from tvm.relax.transform import FusionPattern

from nm_tvm.extern_funcs import PWL_FUNC
from nm_tvm.resize_matrices import nearest_source_index, strided_axis_map
from nm_tvm.target import codegen as cg
from nm_tvm.target.hardware import HardwareConfig

from .composite import (Composite, axes_of, channel_bias, const_value, epilogue_table,
                        is_const_expr, is_pwl_call, operand, shape_of)
from .patterns import (CODEGEN, all_static, epilogue_operands_fit, gemm_patterns, pwl_pattern,
                       simple_patterns, static_tensor)

Lowering = Callable[[Composite, HardwareConfig, int], cg.AcceleratorCall]


@dataclass(frozen=True)
class AcceleratorOp:
    """One operator: ``relax_op`` anchors a layer named ``nm.<name>[_epilogue]``."""

    name: str
    relax_op: str
    lower: Lowering
    patterns: tuple[FusionPattern, ...]


OPERATORS: list[AcceleratorOp] = []


def accelerator_op(name: str, relax_op: str, check, *, arity: int = 1, epilogues: bool = False,
                   gemm_anchor=None, pattern=None):
    """Register the decorated lowering for ``relax_op``. The pattern is the op applied to
    ``arity`` wildcards (also followed by a ReLU or a PWL table when ``epilogues``), a GEMM
    anchor with every bias / residual / ReLU epilogue (``gemm_anchor``: builds the anchor
    pattern), or a given ``pattern``."""
    def register(lower: Lowering) -> Lowering:
        if gemm_anchor is not None:
            pats = gemm_patterns(name, gemm_anchor, check)
        elif pattern is not None:
            pats = [FusionPattern(f"{CODEGEN}.{name}", pattern, {"anchor": pattern}, check)]
        else:
            pats = simple_patterns(name, relax_op, check, arity, epilogues)
        OPERATORS.append(AcceleratorOp(name, relax_op, lower, tuple(pats)))
        return lower
    return register


def pattern_table() -> list[FusionPattern]:
    """All accelerator patterns, highest priority first."""
    return [p for op in OPERATORS for p in op.patterns]


def lower_composite(comp: Composite, hw: HardwareConfig, layer_id: int) -> cg.AcceleratorCall:
    """The program of one composite, from the lowering of its anchor's operator."""
    anchor = PWL_FUNC if is_pwl_call(comp.anchor) else comp.anchor.op.name
    for op in OPERATORS:
        if op.relax_op == anchor:
            return op.lower(comp, hw, layer_id)
    raise cg.CodegenError(f"{comp.name}: no codegen for {anchor}")


def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


# ----------------------------------------------------------------------------- GEMM anchors
def _nchw_conv_check(kernel_layout: str):
    """The match check of a convolution anchor: NCHW data, the given kernel layout (OIHW for
    conv2d, IOHW for conv2d_transpose), operands the epilogue can take."""
    def check(context) -> bool:
        attrs = context.annotated_expr["anchor"].attrs
        return (all_static(context) and attrs.data_layout == "NCHW"
                and attrs.kernel_layout == kernel_layout and attrs.out_layout == "NCHW"
                and epilogue_operands_fit(context, 1))
    return check


_check_conv = _nchw_conv_check("OIHW")


@accelerator_op("conv2d", "relax.nn.conv2d", _check_conv,
                gemm_anchor=lambda: is_op("relax.nn.conv2d")(wildcard(), is_const()))
def _lower_conv2d(comp, hw, layer_id):
    a = comp.anchor
    w = const_value(a.args[1])
    attrs = cg.Conv2dAttrs(_ints(a.attrs.strides), _ints(a.attrs.padding), _ints(a.attrs.dilation))
    bias = channel_bias(comp.bias, w.shape[0], comp.name) if comp.bias is not None else None
    return cg.conv2d_program(hw, layer_id, shape_of(a.args[0]), w, attrs, bias, comp.residual,
                             comp.relu, groups=int(a.attrs.groups))


_check_conv_transpose = _nchw_conv_check("IOHW")


@accelerator_op("conv2d_transpose", "relax.nn.conv2d_transpose", _check_conv_transpose,
                gemm_anchor=lambda: is_op("relax.nn.conv2d_transpose")(wildcard(), is_const()))
def _lower_conv2d_transpose(comp, hw, layer_id):
    """ConvTranspose: a sub-pixel conv2d + a depth-to-space DMA view (codegen docstring)."""
    a = comp.anchor
    w = const_value(a.args[1])
    groups = int(a.attrs.groups)
    attrs = cg.ConvTranspose2dAttrs(_ints(a.attrs.strides), _ints(a.attrs.padding),
                                    _ints(a.attrs.dilation), _ints(a.attrs.output_padding))
    bias = (channel_bias(comp.bias, w.shape[1] * groups, comp.name)
            if comp.bias is not None else None)
    return cg.conv2d_transpose_program(hw, layer_id, shape_of(a.args[0]), w, attrs, bias,
                                       comp.residual, comp.relu, groups=groups)


def _check_conv1d(context) -> bool:
    attrs = context.annotated_expr["anchor"].attrs
    return (all_static(context) and attrs.data_layout == "NCW"
            and attrs.kernel_layout == "OIW" and attrs.out_layout == "NCW"
            and epilogue_operands_fit(context, 1))


@accelerator_op("conv1d", "relax.nn.conv1d", _check_conv1d,
                gemm_anchor=lambda: is_op("relax.nn.conv1d")(wildcard(), is_const()))
def _lower_conv1d(comp, hw, layer_id):
    """1-D Conv (audio front ends, STFT as a strided conv): the 2-D program over a height-1
    image (same bytes in and out)."""
    a = comp.anchor
    w = const_value(a.args[1])[:, :, None, :]
    (s,), (p0, p1), (d,) = (_ints(a.attrs.strides), _ints(a.attrs.padding),
                            _ints(a.attrs.dilation))
    attrs = cg.Conv2dAttrs((1, s), (0, p0, 0, p1), (1, d))
    n, c, length = shape_of(a.args[0])
    bias = channel_bias(comp.bias, w.shape[0], comp.name) if comp.bias is not None else None
    call = cg.conv2d_program(hw, layer_id, (n, c, 1, length), w, attrs, bias, comp.residual,
                             comp.relu, groups=int(a.attrs.groups))
    return replace(call, out_shape=shape_of(a))


def _check_conv1d_transpose(context) -> bool:
    attrs = context.annotated_expr["anchor"].attrs
    return (all_static(context) and attrs.data_layout == "NCW"
            and attrs.kernel_layout == "IOW" and attrs.out_layout == "NCW"
            and epilogue_operands_fit(context, 1))


@accelerator_op("conv1d_transpose", "relax.nn.conv1d_transpose", _check_conv1d_transpose,
                gemm_anchor=lambda: is_op("relax.nn.conv1d_transpose")(wildcard(), is_const()))
def _lower_conv1d_transpose(comp, hw, layer_id):
    """1-D ConvTranspose: the 2-D program over a height-1 image (same bytes in and out)."""
    a = comp.anchor
    w = const_value(a.args[1])[:, :, None, :]
    groups = int(a.attrs.groups)
    (s,), (p0, p1), (d,) = (_ints(a.attrs.strides), _ints(a.attrs.padding),
                            _ints(a.attrs.dilation))
    attrs = cg.ConvTranspose2dAttrs((1, s), (0, p0, 0, p1), (1, d),
                                    (0,) + _ints(a.attrs.output_padding))
    n, c, length = shape_of(a.args[0])
    bias = (channel_bias(comp.bias, w.shape[1] * groups, comp.name)
            if comp.bias is not None else None)
    call = cg.conv2d_transpose_program(hw, layer_id, (n, c, 1, length), w, attrs, bias,
                                       comp.residual, comp.relu, groups=groups)
    return replace(call, out_shape=shape_of(a))


def _check_matmul(context) -> bool:
    return all_static(context) and epilogue_operands_fit(context, -1)


@accelerator_op("matmul", "relax.matmul", _check_matmul,
                gemm_anchor=lambda: is_op("relax.matmul")(wildcard(), wildcard()))
def _lower_matmul(comp, hw, layer_id):
    a = comp.anchor
    b_shape = shape_of(a.args[1])
    weight = const_value(a.args[1]) if is_const_expr(a.args[1]) else None
    n = b_shape[-1] if len(b_shape) > 1 else 1
    bias = channel_bias(comp.bias, n, comp.name) if comp.bias is not None else None
    # operands by parameter: A may be a constant, and x @ x has one parameter
    rhs = None if weight is not None else cg.Param(comp.param_index(a.args[1]))
    return cg.matmul_program(hw, layer_id, shape_of(a.args[0]), b_shape, weight, bias,
                             comp.residual, comp.relu, a_operand=operand(comp, a.args[0]),
                             b_param=rhs)


# ----------------------------------------------------------------------------- pools, reductions
def _check_avg_pool(context) -> bool:
    attrs = context.annotated_expr["anchor"].attrs
    return (all_static(context) and attrs.layout == "NCHW" and not attrs.ceil_mode
            and all(int(p) == 0 for p in attrs.padding))


@accelerator_op("avg_pool2d", "relax.nn.avg_pool2d", _check_avg_pool)
def _lower_avg_pool2d(comp, hw, layer_id):
    a = comp.anchor
    return cg.avg_pool2d_program(hw, layer_id, shape_of(a.args[0]), _ints(a.attrs.pool_size),
                                 _ints(a.attrs.strides), _ints(a.attrs.dilation))


def _check_max_pool(context) -> bool:
    attrs = context.annotated_expr["anchor"].attrs
    return all_static(context) and attrs.layout == "NCHW" and not attrs.ceil_mode


@accelerator_op("max_pool2d", "relax.nn.max_pool2d", _check_max_pool)
def _lower_max_pool2d(comp, hw, layer_id):
    a = comp.anchor
    return cg.max_pool2d_program(hw, layer_id, shape_of(a.args[0]), _ints(a.attrs.pool_size),
                                 _ints(a.attrs.strides), _ints(a.attrs.padding),
                                 _ints(a.attrs.dilation))


def _check_trailing_reduction(context) -> bool:
    """Reductions over trailing axes (Linearize moves other axes last); no axis = all."""
    call = context.annotated_expr["anchor"]
    rank = len(call.args[0].ty.shape)
    if call.attrs.axis is None:
        return all_static(context)
    axes = sorted(int(a) % rank for a in call.attrs.axis)
    return all_static(context) and axes == list(range(rank - len(axes), rank))


@accelerator_op("mean", "relax.mean", _check_trailing_reduction)
def _lower_mean(comp, hw, layer_id):
    a = comp.anchor
    return cg.mean_program(hw, layer_id, shape_of(a.args[0]), axes_of(a), bool(a.attrs.keepdims))


@accelerator_op("sum", "relax.sum", _check_trailing_reduction)
def _lower_sum(comp, hw, layer_id):
    a = comp.anchor
    return cg.mean_program(hw, layer_id, shape_of(a.args[0]), axes_of(a), bool(a.attrs.keepdims),
                           average=False)


@accelerator_op("max", "relax.max", _check_trailing_reduction)
def _lower_max(comp, hw, layer_id):
    a = comp.anchor
    return cg.reduce_max_program(hw, layer_id, shape_of(a.args[0]), axes_of(a),
                                 bool(a.attrs.keepdims))


@accelerator_op("prod", "relax.prod", _check_trailing_reduction)
def _lower_prod(comp, hw, layer_id):
    a = comp.anchor
    return cg.reduce_prod_program(hw, layer_id, shape_of(a.args[0]), axes_of(a),
                                  bool(a.attrs.keepdims))


# ----------------------------------------------------------------------------- elementwise
def _check_binary(context) -> bool:
    """Any numpy broadcast between tensors and constants (the codegen expands by DMA)."""
    call = context.annotated_expr["anchor"]
    return all_static(context) and all(getattr(a.ty, "dtype", None) == "float32"
                                       for a in call.args)


def _lower_binary(comp, hw, layer_id):
    a = comp.anchor
    op = a.op.name.split(".")[-1]
    ops = [(operand(comp, x), shape_of(x)) for x in a.args]
    if op in ("add", "multiply", "maximum") and is_const_expr(a.args[0]):
        ops.reverse()  # commutative: keep the tensor first
    return cg.elementwise_program(hw, layer_id, shape_of(a), op, ops, epilogue_table(comp))


for _op in ("add", "subtract", "multiply", "maximum", "minimum"):
    accelerator_op(_op, f"relax.{_op}", _check_binary, arity=2, epilogues=True)(_lower_binary)


def _check_where(context) -> bool:
    """``where(c, x, y)``: a static bool condition, float32 branches, any broadcast."""
    call = context.annotated_expr["anchor"]
    return static_tensor(call.args[0], ("bool",)) and static_tensor(call) and \
        all(getattr(a.ty, "dtype", None) == "float32" for a in call.args[1:])


@accelerator_op("where", "relax.where", _check_where,
                pattern=is_op("relax.where")(wildcard(), wildcard(), wildcard()))
def _lower_where(comp, hw, layer_id):
    a = comp.anchor
    ops = [(operand(comp, v), shape_of(v), str(v.ty.dtype)) for v in a.args]
    return cg.elementwise_program(hw, layer_id, shape_of(a), "where", ops)


def _lower_table(comp, hw, layer_id):
    """ReLU or an ``nm.pwl_map`` table alone: one PWL pass over the tensor."""
    a = comp.anchor
    relu = not is_pwl_call(a)
    x = a.args[0] if relu else a.args[1].fields[0]
    table = cg.RELU_TABLE if relu else const_value(a.args[1].fields[1])
    if comp.table is not None or comp.relu:
        raise cg.CodegenError(f"{comp.name}: two PWL epilogues")
    return cg.elementwise_program(hw, layer_id, shape_of(a), None,
                                  [(cg.Param(comp.param_index(x)), shape_of(x))], table)


accelerator_op("relu", "relax.nn.relu", all_static)(_lower_table)
accelerator_op("pwl", PWL_FUNC, all_static, pattern=pwl_pattern(wildcard()))(_lower_table)


# ----------------------------------------------------------------------------- data movement
@accelerator_op("permute_dims", "relax.permute_dims", all_static)
def _lower_permute_dims(comp, hw, layer_id):
    a = comp.anchor
    rank = len(shape_of(a.args[0]))
    axes = [int(v) for v in a.attrs.axes] if a.attrs.axes is not None else list(range(rank))[::-1]
    return cg.transpose_program(hw, layer_id, shape_of(a.args[0]), axes)


def _check_slice(context) -> bool:
    """Constant bounds and positive steps (a strided DMA view)."""
    call = context.annotated_expr["anchor"]
    try:
        steps = [int(v) for v in call.args[4]]
    except (TypeError, ValueError, AttributeError):
        return False
    return all_static(context) and all(st > 0 for st in steps)


@accelerator_op("strided_slice", "relax.strided_slice", _check_slice,
                pattern=is_op("relax.strided_slice")(*[wildcard() for _ in range(5)]))
def _lower_strided_slice(comp, hw, layer_id):
    a = comp.anchor
    shape = shape_of(a.args[0])
    begin, end, step = [0] * len(shape), list(shape), [1] * len(shape)
    for ax, b, e, st in zip(*[[int(v) for v in arg] for arg in a.args[1:5]]):
        dim = shape[ax]
        clamp = lambda v: min(max(v + dim if v < 0 else v, 0), dim)
        begin[ax], end[ax], step[ax] = clamp(b), clamp(e), st
    return cg.strided_slice_program(hw, layer_id, shape, begin, end, step)


@accelerator_op("concat", "relax.concat", all_static)
def _lower_concat(comp, hw, layer_id):
    a = comp.anchor
    operands = [(operand(comp, f), shape_of(f)) for f in a.args[0].fields]
    return cg.concat_program(hw, layer_id, operands, int(a.attrs.axis))


@accelerator_op("broadcast_to", "relax.broadcast_to", all_static,
                pattern=is_op("relax.broadcast_to")(wildcard(), wildcard()))
def _lower_broadcast_to(comp, hw, layer_id):
    a = comp.anchor
    return cg.broadcast_program(hw, layer_id, shape_of(a.args[0]), shape_of(a))


@accelerator_op("tile", "relax.tile", all_static)
def _lower_tile(comp, hw, layer_id):
    a = comp.anchor
    return cg.tile_program(hw, layer_id, shape_of(a.args[0]), _ints(a.attrs.repeats))


def _resize_axis_maps(call) -> list[tuple[int, int, int]] | None:
    """The DMA view's (up, down, offset) per axis, as resize2d's attributes read (the ONNX
    frontend emits resize2d only where this reading equals ONNX's own index maps)."""
    attrs = call.attrs
    if (attrs.layout != "NCHW" or attrs.method != "nearest_neighbor"
            or any(float(v) for v in attrs.roi)):
        return None
    x_shape, out_shape = shape_of(call.args[0]), shape_of(call)
    maps = [(1, 1, 0), (1, 1, 0)]
    for n_in, n_out in zip(x_shape[2:], out_shape[2:]):
        if n_out % n_in and n_in % n_out:
            return None  # TVM maps coordinates by n_in / n_out, ONNX by the scales input
        index = nearest_source_index(n_in, n_out, str(attrs.coordinate_transformation_mode),
                                     str(attrs.rounding_method))
        axis = strided_axis_map(index) if index is not None else None
        if axis is None:
            return None
        maps.append(axis)
    return maps


def _check_resize(context) -> bool:
    """Nearest-neighbour Resize whose per-axis index map is an integer repeat or stride (the
    common upsampling of detectors and decoders); the ONNX frontend turns every other Resize
    into matmuls, and a resize2d of a Relax module that is neither stays on the host, named by
    the GEMM-only check."""
    return all_static(context) and _resize_axis_maps(context.annotated_expr["anchor"]) is not None


@accelerator_op("resize2d", "relax.image.resize2d", _check_resize,
                pattern=is_op("relax.image.resize2d")(wildcard(), wildcard()))
def _lower_resize2d(comp, hw, layer_id):
    a = comp.anchor
    maps = _resize_axis_maps(a)
    if maps is None:
        raise cg.CodegenError(f"{comp.name}: Resize is not a nearest integer repeat or stride")
    return cg.resample_program(hw, layer_id, shape_of(a.args[0]), shape_of(a), maps)


def _check_pad(context) -> bool:
    """Constant, replicate, reflect or circular padding of a static float32 tensor
    (non-negative widths; a border mode needs a non-empty input)."""
    pad = context.annotated_expr["anchor"]
    mode = str(pad.attrs.pad_mode)
    return (all_static(context) and (mode == "constant" or mode in cg.PAD_MODES)
            and all(int(w) >= 0 for w in pad.attrs.pad_width)
            and (mode == "constant" or all(d > 0 for d in shape_of(pad.args[0]))))


@accelerator_op("pad", "relax.nn.pad", _check_pad, pattern=is_op("relax.nn.pad")(wildcard()))
def _lower_pad(comp, hw, layer_id):
    a = comp.anchor
    return cg.pad_program(hw, layer_id, shape_of(a.args[0]), _ints(a.attrs.pad_width),
                          float(a.attrs.pad_value), str(a.attrs.pad_mode))


# ------------------------------------------------------------------ integer tensors
INDEX_DTYPES = ("int32", "int64")


def _check_gather(context) -> bool:
    """``take`` of a constant float32 table along one axis by an int32 / int64 index tensor
    (on axis 0 an embedding lookup), wrapping negative indices (mode "wrap", or "fast" where
    the importer promises them in range)."""
    take = context.annotated_expr["anchor"]
    table, index = take.args
    return (static_tensor(table) and static_tensor(index, INDEX_DTYPES) and static_tensor(take)
            and take.attrs.axis is not None and str(take.attrs.mode) in ("wrap", "fast"))


@accelerator_op("gather", "relax.take", _check_gather,
                pattern=is_op("relax.take")(is_const(), wildcard()))
def _lower_gather(comp, hw, layer_id):
    a = comp.anchor
    table, index = a.args
    return cg.gather_program(hw, layer_id, const_value(table), shape_of(index),
                             str(index.ty.dtype), int(a.attrs.axis))


INTEGER_DTYPES = ("int32", "int64", "bool", "uint8", "int8")


def _check_cast(context) -> bool:
    """Casts the DMA converts exactly through fp32: integer / bool to float32 and back, and
    to or from bool (int -> int casts of int64 values above 2^24 would round: left on the
    host, named)."""
    cast = context.annotated_expr["anchor"]
    src, dst = str(cast.args[0].ty.dtype), str(cast.ty.dtype)
    exact = (src == "float32" and dst in INTEGER_DTYPES) or \
        (src in INTEGER_DTYPES and (dst == "float32" or "bool" in (src, dst)))
    return exact and src != dst and static_tensor(cast.args[0], (src,)) and \
        static_tensor(cast, (dst,))


@accelerator_op("cast", "relax.astype", _check_cast,
                pattern=is_op("relax.astype")(wildcard()))
def _lower_cast(comp, hw, layer_id):
    x = comp.anchor.args[0]
    return cg.cast_program(hw, layer_id, shape_of(x), str(x.ty.dtype), str(comp.anchor.ty.dtype))
