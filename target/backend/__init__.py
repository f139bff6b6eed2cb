"""The accelerator's Relax backend, laid out as TVM's ``relax/backend/<target>/``: which
operators it runs, each with its pattern, check and lowering (``operators``, built with
``patterns``), grouping matches into ``Codegen="nm"`` composites (``partition``), reading a
composite (``composite``), replacing each composite with a simulator call (``lower``), and
checking that no compute is left on the host (``verify_gemm_only``). Target-independent rewrites stay in ``nm_tvm.passes``.
"""
from .lower import DramCapacityError, LowerToAccelerator
from .partition import PartitionForAccelerator
from .verify_gemm_only import NotGemmOnlyError, VerifyGemmOnly, host_ops

__all__ = ["DramCapacityError", "LowerToAccelerator", "NotGemmOnlyError",
           "PartitionForAccelerator", "VerifyGemmOnly", "host_ops"]
