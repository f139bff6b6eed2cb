"""The table of ONNX operators the flow claims to run on the accelerator.

ONE table, read by the frontend's unsupported-operator check (``nm_tvm.frontend``), by the
conformance runner (``nm_tvm.conformance``, ``benchmarks/conformance.py``) and by the docs. Add
an operator here when a pass / codegen path for it lands; the conformance suite then tests it
against the ONNX backend node cases automatically.

``level`` is ``"exact"`` (linear work: must match ONNX Runtime to floating-point tolerance for
the operand dtype) or ``"approximate"`` (a fitted piecewise-linear table: must stay within
``max_abs_err``, the bound the table was fitted to, over the fitted input range). ``note`` says
which attributes / forms are supported; other forms are rejected by the compiler (counted
"unsupported" by the conformance runner, never silently dropped).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpSupport:
    level: str  # "exact" | "approximate"
    note: str
    max_abs_err: float | None = None  # approximate ops: fitted bound (absolute, per element)
    # Input positions the accelerator needs as constants (weights): the conformance runner
    # binds graph inputs in these slots as initializers.
    constant_inputs: tuple[int, ...] = ()


EXACT, APPROX = "exact", "approximate"

SUPPORTED_OPS: dict[str, OpSupport] = {
    "Conv": OpSupport(EXACT, "1-D and 2-D (1-D as the 2-D program on one row), any groups "
                             "(depthwise too), constant weights; any stride / padding / "
                             "dilation",
                      constant_inputs=(1, 2)),
    "ConvTranspose": OpSupport(EXACT, "1-D and 2-D, constant weights, any stride / pads / dilations "
                                      "/ groups / output_padding / output_shape / auto_pad: a "
                                      "sub-pixel conv (one GEMM for kernel = stride) and a "
                                      "depth-to-space DMA view", constant_inputs=(1, 2)),
    "Gemm": OpSupport(EXACT, "alpha/beta/transA/transB; constant or activation operands"),
    "MatMul": OpSupport(EXACT, "batched, broadcast; constant or activation operands"),
    "Add": OpSupport(EXACT, "same shape, or one constant operand (broadcast)"),
    "Mul": OpSupport(EXACT, "same shape, or one constant operand (broadcast)"),
    "Max": OpSupport(EXACT, "any number of inputs, any broadcast: pairwise VEC max "
                            "(passes/pairwise_variadic.py)"),
    "Sum": OpSupport(EXACT, "any number of inputs, any broadcast: pairwise adds"),
    "Mean": OpSupport(EXACT, "any number of inputs, any broadcast: pairwise adds, scale 1/n"),
    "Relu": OpSupport(EXACT, "2-segment PWL (exact)"),
    "BatchNormalization": OpSupport(EXACT, "inference mode; folded into the preceding "
                                           "Conv / MatMul (or a per-channel scale+shift)",
                                    constant_inputs=(1, 2, 3, 4)),
    "AveragePool": OpSupport(EXACT, "2-D, ceil_mode=0; padded: a depthwise conv with 1/k^2 "
                                    "weights (then a per-position rescale unless "
                                    "count_include_pad)"),
    "GlobalAveragePool": OpSupport(EXACT, "2-D (NCHW)"),
    "Flatten": OpSupport(EXACT, "view"),
    "Reshape": OpSupport(EXACT, "view; constant shape", constant_inputs=(1,)),
    "Transpose": OpSupport(EXACT, "DMA data movement"),
    "Squeeze": OpSupport(EXACT, "view; constant axes", constant_inputs=(1,)),
    "Unsqueeze": OpSupport(EXACT, "view; constant axes", constant_inputs=(1,)),
    "Identity": OpSupport(EXACT, "removed by the importer"),
    # Linearized (passes/linearize.py): one PWL table per fused scalar function; the bound a
    # compiled model must meet is the table's fitted max_err (compiled.pwl_tables) inside its
    # range [lo, hi] (defaults [-8, 8], positive-domain functions [2^-10, 64]).
    "Sub": OpSupport(EXACT, "any broadcast; a - b = a + neg(b) (exact negation table)"),
    "Min": OpSupport(EXACT, "any number of inputs, any broadcast; min(a, b) = -max(-a, -b)"),
    "Abs": OpSupport(EXACT, "exact PWL"),
    "Neg": OpSupport(EXACT, "exact PWL"),
    "Clip": OpSupport(EXACT, "constant min/max (min > max gives max, as ONNX): exact "
                             "3-segment PWL", constant_inputs=(1, 2)),
    "LeakyRelu": OpSupport(EXACT, "exact 2-segment PWL"),
    "PRelu": OpSupport(EXACT, "relu(x) + alpha * (x - relu(x)), alpha broadcast by DMA"),
    "RMSNormalization": OpSupport(APPROX, "trailing axes: mean of squares as a GEMM, PWL "
                                          "rsqrt(v+eps)"),
    "HardSigmoid": OpSupport(EXACT, "exact 3-segment PWL"),
    "Sigmoid": OpSupport(APPROX, "PWL"),
    "Tanh": OpSupport(APPROX, "PWL"),
    "Erf": OpSupport(APPROX, "PWL"),
    "Exp": OpSupport(APPROX, "PWL on [-8, 8] unless calibrated; softmax's exp on [-16, 0]"),
    "Log": OpSupport(APPROX, "PWL on the positive range"),
    "Sqrt": OpSupport(APPROX, "PWL on the positive range"),
    "Reciprocal": OpSupport(APPROX, "PWL on the positive range"),
    "Div": OpSupport(APPROX, "by a constant: exact multiply; by a tensor: PWL reciprocal"),
    "Pow": OpSupport(APPROX, "scalar constant exponent; 2, 3, 4 as exact multiplies, else PWL",
                     constant_inputs=(1,)),
    "Gelu": OpSupport(APPROX, "erf and tanh forms, and the x*0.5*(1+erf(x/sqrt2)) decomposition"),
    "HardSwish": OpSupport(APPROX, "one PWL of the whole x*clip(x+3,0,6)/6 function"),
    "Softplus": OpSupport(APPROX, "one PWL"),
    "Mish": OpSupport(APPROX, "one PWL"),
    "Softsign": OpSupport(APPROX, "one PWL of x / (1 + |x|)"),
    "Elu": OpSupport(APPROX, "one PWL (relu(x) + g(x) fused)"),
    "Selu": OpSupport(APPROX, "one PWL of the whole function (as Elu)"),
    "Celu": OpSupport(APPROX, "one PWL of max(0, x) + min(0, alpha * (exp(x / alpha) - 1))"),
    "ThresholdedRelu": OpSupport(EXACT, "one exact table: the step x > alpha times x (NaN "
                                        "stays NaN, ONNX gives 0)"),
    "Sign": OpSupport(EXACT, "one exact 3-segment step table"),
    "Shrink": OpSupport(EXACT, "one exact table: (x + bias) [x < -lambd] + (x - bias) [x > "
                               "lambd] (NaN stays NaN, ONNX gives 0)"),
    "Sin": OpSupport(APPROX, "PWL on [-8, 8] unless calibrated; not periodic: inputs outside "
                             "the fitted range get the table's outer segments, not sin"),
    "Cos": OpSupport(APPROX, "as Sin"),
    "Softmax": OpSupport(APPROX, "max, PWL exp, sum as GEMM, PWL reciprocal, scale (other "
                                  "axes moved last by a DMA transpose)"),
    "LogSoftmax": OpSupport(APPROX, "max, sum as GEMM, PWL log (any axis, as Softmax)"),
    "LayerNormalization": OpSupport(APPROX, "trailing axes: means as GEMMs, PWL rsqrt(v+eps)"),
    "GroupNormalization": OpSupport(APPROX, "opset 21: a layer norm of each group of channels "
                                            "(a view), means as GEMMs, PWL rsqrt(v+eps), "
                                            "per-channel scale and shift"),
    "InstanceNormalization": OpSupport(APPROX, "GroupNormalization with one channel per group"),
    "MeanVarianceNormalization": OpSupport(APPROX, "any axes: means of x and x^2 as GEMMs, one "
                                                   "PWL 1/sqrt(E[x^2] - E[x]^2) (no epsilon: a "
                                                   "constant slice, NaN in ONNX, gets finite "
                                                   "values)"),
    "LpNormalization": OpSupport(APPROX, "any axis; p = 2: x * PWL rsqrt(sum x^2), p = 1: x * "
                                         "PWL reciprocal(sum |x|), sums as GEMMs; a zero vector "
                                         "gives 0, as ONNX"),
    "Concat": OpSupport(EXACT, "DMA copies into the output's slabs"),
    "Slice": OpSupport(EXACT, "constant bounds, positive steps: one strided DMA view",
                       constant_inputs=(1, 2, 3, 4)),
    "Split": OpSupport(EXACT, "any axis, constant split sizes or num_outputs: one strided "
                              "DMA slice per output", constant_inputs=(1,)),
    "Expand": OpSupport(EXACT, "constant shape (numpy broadcast): one broadcast DMA view; "
                               "to the input's own shape: removed",
                        constant_inputs=(1,)),
    "Tile": OpSupport(EXACT, "constant repeats: one DMA view (repeats as stride-0 axes)",
                      constant_inputs=(1,)),
    "Resize": OpSupport(EXACT, "every mode / coordinate_transformation_mode / nearest_mode / "
                               "antialias / exclude_outside / axes / keep_aspect_ratio_policy "
                               "of ONNX's reference, constant roi / scales / sizes: one GEMM per "
                               "resized axis with a constant interpolation matrix (ONNX's "
                               "reference on an identity basis), tf_crop_and_resize's "
                               "extrapolation as a constant add; nearest 2-D integer repeats / "
                               "strides as one DMA view. Nearest GEMMs (0/1 matrices) are exact "
                               "in fp32; on bf16 targets the GEMM path rounds the input (and "
                               "weights that bf16 cannot hold) like any GEMM operand; an Inf / "
                               "NaN input makes the GEMM's outputs along its axes NaN (0 * Inf)",
                        constant_inputs=(1, 2, 3)),
    "Upsample": OpSupport(EXACT, "nearest / linear, constant scales >= 1: Resize with asymmetric "
                                 "coordinates (nearest rounding down, as ONNX Runtime)",
                          constant_inputs=(1,)),
    "Gather": OpSupport(EXACT, "constant table (an embedding), int32 / int64 indices, any "
                               "axis, negative indices from the end: one GATHER (indexed row "
                               "DMA) per block; a computed tensor at constant indices: "
                               "strided DMA slices", constant_inputs=(0,)),
    "Pad": OpSupport(EXACT, "constant non-negative pads / value / axes; mode=constant: the "
                            "border as broadcast DMA views of the value, the input copied "
                            "into place; edge / reflect / wrap (ONNX's reference, np.pad, also "
                            "past the axis length): runs of evenly spaced source indices as "
                            "strided DMA views (reflect one index per run)",
                     constant_inputs=(1, 2, 3)),
    # Unrolled before import (nm_tvm/unroll_recurrent.py) into MatMul / Add / Mul / Slice /
    # Concat and the gate activations' tables (sigmoid / tanh are PWL: approximate)
    "LSTM": OpSupport(APPROX, "unrolled over the static sequence: the input projection one "
                              "GEMM for all steps and directions, h R^T per step; forward / "
                              "reverse / bidirectional, layout 0 / 1, optional B / initial_h / "
                              "initial_c / P, any subset of Y / Y_h / Y_c, clip, input_forget, "
                              "activations Sigmoid / Tanh / Relu / HardSigmoid / LeakyRelu / Elu "
                              "/ Softsign / Softplus / Affine / ScaledTanh; constant W / R / B / "
                              "P; sequence_lens only as a constant equal to the sequence length",
                      constant_inputs=(1, 2, 3, 4, 7)),
    "GRU": OpSupport(APPROX, "unrolled as LSTM (same directions, layouts, outputs, clip and "
                             "activations), linear_before_reset 0 and 1; constant W / R / B",
                     constant_inputs=(1, 2, 3, 4)),
    "RNN": OpSupport(APPROX, "unrolled as LSTM (same directions, layouts, outputs, clip and "
                             "activations); constant W / R / B", constant_inputs=(1, 2, 3, 4)),
    "Cast": OpSupport(EXACT, "int32 / int64 / int8 / uint8 / bool to FLOAT by the LOAD DMA, "
                             "FLOAT to those by the STORE DMA (truncation toward zero; out of "
                             "range an error), to and from BOOL; to the same type: removed"),
    "Equal": OpSupport(EXACT, "any dtypes, any broadcast: an exact step table of a - b "
                              "(passes/masks_as_float.py); masks are float 0/1 on chip"),
    "Less": OpSupport(EXACT, "as Equal"),
    "LessOrEqual": OpSupport(EXACT, "as Equal"),
    "Greater": OpSupport(EXACT, "as Equal"),
    "GreaterOrEqual": OpSupport(EXACT, "as Equal"),
    "Not": OpSupport(EXACT, "1 - m on a 0/1 mask"),
    "And": OpSupport(EXACT, "m1 * m2 on 0/1 masks"),
    "Or": OpSupport(EXACT, "max(m1, m2) on 0/1 masks"),
    "Xor": OpSupport(EXACT, "m1 != m2 on 0/1 masks"),
    "Where": OpSupport(EXACT, "float32 branches, any broadcast: one VEC select on the 0/1 "
                              "mask (exact, NaN and infinities included); two constant "
                              "branches: an exact step table"),
    "CastLike": OpSupport(EXACT, "as Cast; to the tensor's own type: removed"),
    "MaxPool": OpSupport(EXACT, "2-D, ceil_mode=0: VEC max over window views (-inf padding "
                                "by DMA into scratch)"),
    "ReduceMax": OpSupport(EXACT, "VEC max tree (other axes moved last by a DMA transpose); "
                                  "bool (any) on the 0/1 mask", constant_inputs=(1,)),
    "ReduceMin": OpSupport(EXACT, "-max(-x): exact negation tables around ReduceMax's tree; "
                                  "bool (all) on the 0/1 mask", constant_inputs=(1,)),
    "GlobalMaxPool": OpSupport(EXACT, "ReduceMax over the spatial axes (NCHW...)"),
    "ReduceProd": OpSupport(EXACT, "VEC multiply tree in the fp32 accumulator (other axes moved "
                                   "last by a DMA transpose)", constant_inputs=(1,)),
    "ReduceSum": OpSupport(EXACT, "GEMM with a ones column (other axes moved last by a DMA "
                                  "transpose)", constant_inputs=(1,)),
    "ReduceMean": OpSupport(EXACT, "GEMM with a 1/L column (other axes moved last by a DMA "
                                   "transpose)", constant_inputs=(1,)),
    "ReduceSumSquare": OpSupport(EXACT, "x * x (VEC), then ReduceSum's GEMM", constant_inputs=(1,)),
    "ReduceL1": OpSupport(EXACT, "|x| (exact table), then ReduceSum's GEMM", constant_inputs=(1,)),
    "ReduceL2": OpSupport(APPROX, "ReduceSumSquare, then PWL sqrt on the positive range",
                          constant_inputs=(1,)),
    "ReduceLogSum": OpSupport(APPROX, "ReduceSum's GEMM, then PWL log on the positive range",
                              constant_inputs=(1,)),
    "ReduceLogSumExp": OpSupport(APPROX, "max + log(sum(exp(x - max))): LogSoftmax's pieces "
                                         "(VEC max tree, PWL exp on [-16, 0], GEMM sum, PWL log "
                                         "on [1, L] unless calibrated)", constant_inputs=(1,)),
}

# Suggestions shown when an operator is *not* in SUPPORTED_OPS (what to rewrite it into).
ALTERNATIVES: dict[str, str] = {
    "CumSum": "MatMul with a constant triangular ones matrix, or strict=False",
}


def level(op_type: str) -> str | None:
    entry = SUPPORTED_OPS.get(op_type)
    return entry.level if entry else None


def is_supported(op_type: str, domain: str = "") -> bool:
    return domain in ("", "ai.onnx") and op_type in SUPPORTED_OPS


def supported_summary() -> str:
    """One line listing the claimed operators (used in error messages)."""
    return ", ".join(f"{op}{'~' if s.level == APPROX else ''}" for op, s in SUPPORTED_OPS.items())


def describe_unsupported(op_type: str) -> str:
    hint = ALTERNATIVES.get(op_type)
    return f"{op_type} (try: {hint})" if hint else op_type


def table_rows() -> list[dict]:
    """The table as plain rows (for docs and the conformance JSON)."""
    return [{"op": op, "level": s.level, "note": s.note, "max_abs_err": s.max_abs_err}
            for op, s in SUPPORTED_OPS.items()]


# ------------------------------------------------------------------ ONNX-level operator check
# Ops that only compute shapes / constants: when all their inputs are constant (initializers,
# Constant nodes, Shape of a static tensor) the importer folds them away.
_SHAPE_OPS = {"Constant", "Shape", "Size", "ConstantOfShape"}


def unsupported_nodes(proto) -> list[tuple[str, str]]:
    """``(op_type, node name)`` of every ONNX node that is not claimed in SUPPORTED_OPS and is
    not folded to a constant at import (all of its inputs constant). Pure ONNX: no TVM."""
    graph = proto.graph
    const = {init.name for init in graph.initializer} | {""}
    found = []
    for i, node in enumerate(graph.node):
        folded = node.op_type in _SHAPE_OPS or all(x in const for x in node.input)
        if folded and node.domain in ("", "ai.onnx"):
            const.update(node.output)
            continue
        if not is_supported(node.op_type, node.domain):
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            found.append((op, node.name or f"#{i} ({node.op_type})"))
    return found


def unsupported_message(nodes: list[tuple[str, str]], max_names: int = 5) -> str:
    """Names each unsupported op type with its node(s), suggests alternatives, lists support."""
    by_op: dict[str, list[str]] = {}
    for op, name in nodes:
        by_op.setdefault(op, []).append(name)
    parts = []
    for op, names in by_op.items():
        shown = ", ".join(f"'{n}'" for n in names[:max_names])
        more = f" and {len(names) - max_names} more" if len(names) > max_names else ""
        hint = ALTERNATIVES.get(op)
        parts.append(f"{op} (node{'s' if len(names) > 1 else ''} {shown}{more}"
                     f"{'; try: ' + hint if hint else ''})")
    return (f"the model uses operator(s) the nm accelerator does not support: {'; '.join(parts)}. "
            f"Supported operators (~ = approximated): {supported_summary()}. "
            "Pass strict=False to run unsupported operators on the host CPU "
            "(compiled.host_ops / compiled.placement() list what ran where).")
