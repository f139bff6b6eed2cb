"""Host implementations of the flow's own Relax-level functions, for strict=False runs.

``nm.pwl_map(x, table, out)`` evaluates a PWL table exactly as the accelerator's PWL unit does;
it only runs when a ``nm.pwl_map`` call was left on the host. ``nm.exact_map(x, id, out)``
evaluates the exact function a table approximates: a probe build (calibration) calls it, and
the caller running that build says which functions the ids stand for
(:func:`exact_functions`, from the build's ``CompileRecord.exact_functions``).
"""
from __future__ import annotations

import contextlib

import numpy as np
import tvm

from nm_tvm.extern_funcs import EXACT_FUNC, PWL_FUNC
from nm_tvm.pwl import PWLTable

_active: list[dict] = []  # the functions of the probe builds being run, innermost last


@contextlib.contextmanager
def exact_functions(functions: dict):
    """Run a probe build with ``functions`` (table id -> f) behind ``nm.exact_map``."""
    _active.append(functions)
    try:
        yield
    finally:
        _active.pop()


@tvm.register_global_func(EXACT_FUNC, override=True)
def _exact_map(x, instance, out):
    f = _active[-1].get(str(instance)) if _active else None
    if f is None:
        raise KeyError(f"no exact function for table {instance}: run probe builds inside "
                       "nm_tvm.host_kernels.exact_functions(build.record.exact_functions)")
    with np.errstate(all="ignore"):
        out.copyfrom(np.asarray(f(x.numpy().astype(np.float64)), np.float32))


@tvm.register_global_func(PWL_FUNC, override=True)
def _pwl_map(x, table, out):
    values = PWLTable.from_array(table.numpy())(x.numpy())
    out.copyfrom(values.astype(np.float32))
