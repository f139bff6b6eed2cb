"""Host implementations of the flow's own Relax-level functions, for strict=False runs.

``nm.pwl_map(x, table, out)`` evaluates a PWL table exactly as the accelerator's PWL unit does;
it only runs when a ``nm.pwl_map`` call was left on the host. ``nm.exact_map(x, id, out)``
evaluates the exact function a table approximates (calibration probes use it).
"""
from __future__ import annotations

import numpy as np
import tvm

from nm_tvm.pwl import PWLTable


EXACT_FUNC = "nm.exact_map"
_EXACT: dict = {}


def register_exact(instance: str, f) -> None:
    _EXACT[instance] = f


def exact_function(instance: str):
    """The exact function behind table ``instance`` (registered by a probe build)."""
    return _EXACT[instance]


@tvm.register_global_func(EXACT_FUNC, override=True)
def _exact_map(x, instance, out):
    f = _EXACT.get(str(instance))
    if f is None:
        raise KeyError(f"no exact function registered for table {instance}")
    with np.errstate(all="ignore"):
        out.copyfrom(np.asarray(f(x.numpy().astype(np.float64)), np.float32))


@tvm.register_global_func("nm.pwl_map", override=True)
def _pwl_map(x, table, out):
    values = PWLTable.from_array(table.numpy())(x.numpy())
    out.copyfrom(values.astype(np.float32))
