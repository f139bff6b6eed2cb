"""Relax passes of the nm flow, each a ``tvm.transform.Pass`` usable in a user's Sequential."""
from .canonicalize import Canonicalize
from .decompose_rms_norm import DecomposeRMSNorm
from .fold_scale_shift import FoldScaleShift
from .linearize import Linearize, LinearizeConfig, LinearizeError
from .lower_to_accelerator import LowerToAccelerator
from .partition import PartitionForAccelerator
from .simplify_batch_norm import SimplifyBatchNorm
from .verify_gemm_only import NotGemmOnlyError, VerifyGemmOnly, host_ops

__all__ = ["Canonicalize", "DecomposeRMSNorm", "FoldScaleShift", "Linearize", "LinearizeConfig", "LinearizeError", "LowerToAccelerator", "NotGemmOnlyError",
           "PartitionForAccelerator", "SimplifyBatchNorm", "VerifyGemmOnly", "host_ops"]
