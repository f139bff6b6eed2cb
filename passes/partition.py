"""Group accelerator-supported subgraphs into composite functions tagged ``Codegen="nm"``."""
from __future__ import annotations

import tvm
from tvm import relax

from .patterns import pattern_table


def PartitionForAccelerator() -> tvm.transform.Pass:  # noqa: N802 (TVM pass naming)
    return relax.transform.FuseOpsByPattern(pattern_table(), bind_constants=True,
                                            annotate_codegen=True)
