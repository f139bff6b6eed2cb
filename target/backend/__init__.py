"""The accelerator's Relax backend, laid out as TVM's ``relax/backend/<target>/``: which
subgraphs it takes (``patterns``), grouping them into ``Codegen="nm"`` composites
(``partition``), reading a composite and dispatching it to the codegen (``composite``),
replacing each composite with a simulator call (``lower``), and checking that no compute is
left on the host (``verify_gemm_only``). Target-independent rewrites stay in ``nm_tvm.passes``.
"""
from .lower import DramCapacityError, LowerToAccelerator
from .partition import PartitionForAccelerator
from .verify_gemm_only import NotGemmOnlyError, VerifyGemmOnly, host_ops

__all__ = ["DramCapacityError", "LowerToAccelerator", "NotGemmOnlyError",
           "PartitionForAccelerator", "VerifyGemmOnly", "host_ops"]
