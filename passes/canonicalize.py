"""Canonicalize an imported model into the forms the partitioner matches.

Rewrites inference batch norm as a scale and shift (numpy), variadic Max / Min / Sum / Mean
as pairwise binary ops and padded average pooling as a depthwise convolution; decomposes what
else TVM decomposes for inference, folds constants (so transposed weights become plain
constants), folds per-channel scale/shift into the GEMM anchors, turns what is left of a
division by a constant tensor into a multiply by its reciprocal, PRelu with a slope over
several axes (imported as a select) into ReLU arithmetic, Gather's negative-index arithmetic
into ``take(mode="wrap")``, a cast after an integer broadcast before it, Split into strided
slices, casts to a tensor's own dtype (CastLike, LayerNorm's stash type) away, boolean masks
(their max / min reductions too) into float 0/1 arithmetic, and drops dead bindings.
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from ._rewrite import rewrite_functions
from .bool_reductions import BoolReductionsAsFloat
from .cast_before_broadcast import CastBeforeBroadcast
from .decompose_rms_norm import DecomposeRMSNorm
from .fold_index_wrap import FoldIndexWrap
from .fold_scale_shift import FoldScaleShift
from .masks_as_float import MasksAsFloat
from .padded_avg_pool import PaddedAvgPoolAsConv
from .pairwise_variadic import PairwiseVariadicOps
from .scalar_function import scalar_constant
from .simplify_batch_norm import SimplifyBatchNorm


def _divide_by_constant_rule():
    """``x / c`` -> ``x * (1 / c)`` for a float32 constant tensor ``c`` without zeros. A
    constant whose elements are all equal stays a division: Linearize folds it into the
    scalar function around it, exactly as before."""
    x, c = wildcard(), is_const()
    pattern = is_op("relax.divide")(x, c)

    def rewrite(expr, m):
        value = m[c].value.numpy()
        if (value.dtype != np.float32 or scalar_constant(m[c]) is not None
                or not np.all(np.isfinite(value) & (value != 0))):
            return expr
        return relax.op.multiply(m[x], relax.const((1.0 / value).astype(np.float32)))

    return pattern, rewrite


@tvm.transform.module_pass(opt_level=0, name="nm.DivideByConstantAsMultiply")
class DivideByConstantAsMultiply:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, *_divide_by_constant_rule())


def _select_prelu_rule():
    """``where(x < 0, x * s, x)`` -- TVM's import of PRelu when the slope varies along more than
    one axis (``nn.prelu`` takes one) -- as ``relu(x) + (x - relu(x)) * s``, the form
    Linearize gives ``nn.prelu``: exact (one of the two terms is zero)."""
    x, zero, slope = wildcard(), is_const(), wildcard()
    pattern = is_op("relax.where")(is_op("relax.less")(x, zero),
                                   is_op("relax.multiply")(x, slope), x)

    def rewrite(expr, m):
        if scalar_constant(m[zero]) != 0.0:
            return expr
        pos = relax.op.nn.relu(m[x])
        return relax.op.add(pos, relax.op.multiply(relax.op.subtract(m[x], pos), m[slope]))

    return pattern, rewrite


@tvm.transform.module_pass(opt_level=0, name="nm.SelectPReluAsRelu")
class SelectPReluAsRelu:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, *_select_prelu_rule())


def _split_rule():
    """``split(x, indices, axis)`` -> a tuple of ``strided_slice`` s of x along ``axis`` (each a
    DMA view on the accelerator): constant split points, or a number of sections (the last
    smaller when uneven, as ONNX Split with num_outputs); an empty part is an empty
    constant."""
    x = wildcard()
    pattern = is_op("relax.split")(x)

    def rewrite(expr, m):
        shape = getattr(expr.args[0].ty, "shape", None)
        fields = getattr(expr.ty, "fields", None)
        try:
            axis = int(expr.attrs.axis) % len(shape)
            sizes = [int(f.shape[axis]) for f in fields]  # as TVM's split defines them
        except (TypeError, ValueError, AttributeError):
            return expr  # dynamic: stays a split (on the host)
        ends = np.cumsum(sizes).tolist()
        # an empty part is an empty constant (nothing to move; a consumer such as concat
        # drops it)
        return relax.Tuple([
            relax.op.strided_slice(m[x], [axis], [e - n], [e], [1]) if n else
            relax.const(np.zeros([int(d) for d in f.shape], np.float32))
            for n, e, f in zip(sizes, ends, fields)])

    return pattern, rewrite


@tvm.transform.module_pass(opt_level=0, name="nm.SplitAsSlices")
class SplitAsSlices:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, *_split_rule())


def _same_dtype_cast_rule():
    """``astype(x, dtype of x)`` -> ``x`` (ONNX CastLike, LayerNorm's stash-type Cast)."""
    x = wildcard()
    pattern = is_op("relax.astype")(x)

    def rewrite(expr, m):
        return m[x] if getattr(m[x].ty, "dtype", None) == str(expr.attrs.dtype) else expr

    return pattern, rewrite


@tvm.transform.module_pass(opt_level=0, name="nm.DropSameDtypeCasts")
class DropSameDtypeCasts:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, *_same_dtype_cast_rule())


def Canonicalize() -> tvm.transform.Pass:  # noqa: N802 (TVM pass naming)
    return tvm.transform.Sequential(
        [
            DropSameDtypeCasts(),
            BoolReductionsAsFloat(),
            SimplifyBatchNorm(),
            PairwiseVariadicOps(),
            PaddedAvgPoolAsConv(),
            DecomposeRMSNorm(),
            relax.transform.DecomposeOpsForInference(),
            relax.transform.FoldConstant(),
            FoldScaleShift(),
            relax.transform.FoldConstant(),
            DivideByConstantAsMultiply(),
            SelectPReluAsRelu(),
            FoldIndexWrap(),
            CastBeforeBroadcast(),
            SplitAsSlices(),
            MasksAsFloat(),
            relax.transform.DeadCodeElimination(),
        ],
        name="nm.Canonicalize",
    )
