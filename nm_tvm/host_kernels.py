"""Host implementations of the flow's own Relax-level functions, for strict=False runs.

``nm.pwl_map(x, table, out)`` evaluates a PWL table exactly as the accelerator's PWL unit does;
it only runs when a ``nm.pwl_map`` call was left on the host.
"""
from __future__ import annotations

import numpy as np
import tvm

from nm_tvm.pwl import PWLTable


@tvm.register_global_func("nm.pwl_map", override=True)
def _pwl_map(x, table, out):
    values = PWLTable.from_array(table.numpy())(x.numpy())
    out.copyfrom(values.astype(np.float32))
