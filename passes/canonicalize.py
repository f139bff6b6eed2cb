"""Canonicalize an imported model into the forms the partitioner matches.

Rewrites inference batch norm as a scale and shift (numpy), variadic Max / Min / Sum / Mean
as pairwise binary ops and padded average pooling as a depthwise convolution; decomposes what
else TVM decomposes for inference, folds constants (so transposed weights become plain
constants), folds per-channel scale/shift into the GEMM anchors, and drops dead bindings.
"""
from __future__ import annotations

import tvm
from tvm import relax

from .decompose_rms_norm import DecomposeRMSNorm
from .fold_scale_shift import FoldScaleShift
from .padded_avg_pool import PaddedAvgPoolAsConv
from .pairwise_variadic import PairwiseVariadicOps
from .simplify_batch_norm import SimplifyBatchNorm


def Canonicalize() -> tvm.transform.Pass:  # noqa: N802 (TVM pass naming)
    return tvm.transform.Sequential(
        [
            SimplifyBatchNorm(),
            PairwiseVariadicOps(),
            PaddedAvgPoolAsConv(),
            DecomposeRMSNorm(),
            relax.transform.DecomposeOpsForInference(),
            relax.transform.FoldConstant(),
            FoldScaleShift(),
            relax.transform.FoldConstant(),
            relax.transform.DeadCodeElimination(),
        ],
        name="nm.Canonicalize",
    )
