"""Target-independent Relax passes of the nm flow, each a ``tvm.transform.Pass`` usable in a
user's Sequential. The accelerator's own passes (partition, lowering, the GEMM-only check) live
in ``nm_tvm.target.backend``."""
from .canonicalize import Canonicalize
from .decompose_rms_norm import DecomposeRMSNorm
from .fold_scale_shift import FoldScaleShift
from .linearize import Linearize, LinearizeConfig, LinearizeError
from .simplify_batch_norm import SimplifyBatchNorm

__all__ = ["Canonicalize", "DecomposeRMSNorm", "FoldScaleShift", "Linearize", "LinearizeConfig",
           "LinearizeError", "SimplifyBatchNorm"]
