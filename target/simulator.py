"""Python side of the C++ accelerator simulator (``libnm_accel.so``, built from target/csrc).

The library registers tvm-ffi global functions:

* ``nm_accel.run(program, *tensors)`` -- runs one program (int64 tensor, docs/ISA.md) on fp32
  CPU tensors bound, in order, to the program's argument regions (inputs then outputs, as
  ``R.call_dps_packed("nm_accel.run", [program, x, w, ...], out_ty=...)`` passes them); writes
  the outputs in place and appends one statistics record. A rejected program raises
  ``ValueError`` naming the instruction (and LOOP_GEMM micro-op) and leaves the tensors untouched,
  except for PWL breakpoint errors, which depend on loaded data and are found while executing.
* ``nm_accel.take_stats()`` -- an int64 tensor of shape ``(n, len(STAT_FIELDS))``: one row per
  successful ``run`` since the last call, columns in ``STAT_FIELDS`` order; clears the log.
* ``nm_accel.version()`` -- the ISA version; ``nm_accel.stat_fields()`` -- the column names;
  ``nm_accel.isa_digest()`` -- the sha256 of the ISA spec its ``isa.h`` was generated from;
  ``nm_accel.opcodes()`` -- ``"NAME code queue operand_end"`` per opcode, as compiled in.

Call :func:`load` before creating a Relax VM that calls ``nm_accel.run``. Each call starts from
zeroed on-chip memories and zero-filled scratch regions.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from nm_tvm.extern_funcs import RUN_FUNC

from .isa import ISA_VERSION, SPEC_DIGEST, STAT_FIELDS

LIBRARY_NAME = "libnm_accel.so"

_lock = threading.Lock()
_module = None


def _library_path() -> Path:
    """The built library: next to this file in an installed package. In an editable install
    the package's other locations (``__path__``, which includes site-packages) hold it.
    ``NM_ACCEL_LIBRARY`` overrides it (e.g. the sanitizer build of ``make sanitize``)."""
    override = os.environ.get("NM_ACCEL_LIBRARY")
    if override:
        if not Path(override).is_file():
            raise RuntimeError(f"NM_ACCEL_LIBRARY={override} is not a file")
        return Path(override)
    candidates = [Path(__file__).with_name(LIBRARY_NAME)]
    try:
        from nm_tvm import target as _pkg
        candidates += [Path(p) / LIBRARY_NAME for p in getattr(_pkg, "__path__", [])]
    except ImportError:  # imported outside the nm_tvm package (e.g. straight from a checkout)
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise RuntimeError(
        f"C++ simulator not built: {LIBRARY_NAME} not found (looked in "
        f"{', '.join(sorted({str(p.parent) for p in candidates}))}); run pip install -e .")


def load():
    """Load the simulator library once (registers the ``nm_accel.*`` functions)."""
    global _module
    with _lock:
        if _module is None:
            import tvm_ffi

            module = tvm_ffi.load_module(str(_library_path()))
            version = int(tvm_ffi.get_global_func("nm_accel.version")())
            fields = tuple(str(f) for f in tvm_ffi.get_global_func("nm_accel.stat_fields")())
            digest_func = tvm_ffi.get_global_func("nm_accel.isa_digest", allow_missing=True)
            digest = str(digest_func()) if digest_func is not None else None
            if version != ISA_VERSION or fields != STAT_FIELDS or digest != SPEC_DIGEST:
                raise RuntimeError(
                    f"{LIBRARY_NAME} is stale (ISA version {version}, stat fields {fields}, "
                    f"ISA spec digest {digest}, expected {SPEC_DIGEST} of target/isa_spec.json); "
                    "rebuild it: pip install -e .")
            _module = module
    return _module


def _func(name: str):
    load()
    import tvm_ffi

    return tvm_ffi.get_global_func(name)


def run_program(program: np.ndarray, args: list[np.ndarray]) -> list[np.ndarray]:
    """Run ``program`` with one array per argument region (for tests and tools).

    ``args`` are copied, dtype and shape unchanged, into CPU tensors (so the simulator's own
    checks apply: the region's element type, exact region size); returns every region tensor, outputs included,
    after the run.
    """
    import tvm

    program = np.ascontiguousarray(program)
    tensors = [tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu()) for a in args]
    _func(RUN_FUNC)(tvm.runtime.tensor(program, tvm.cpu()), *tensors)
    return [t.numpy() for t in tensors]


def estimate(program: np.ndarray) -> dict[str, int]:
    """The statistics ``program`` would produce (cycles, busy and stall counters, traffic),
    from the simulator's timing pass alone: the same checks and event model as a run, but no
    argument tensors and no memory touched, so it is cheap enough to compare schedules."""
    import tvm

    program = np.ascontiguousarray(program)
    table = np.from_dlpack(_func("nm_accel.estimate")(tvm.runtime.tensor(program, tvm.cpu())))
    return dict(zip(STAT_FIELDS, (int(v) for v in table[0])))


def take_stats() -> list[dict[str, int]]:
    """Statistics of every ``nm_accel.run`` since the last call, oldest first; clears the log."""
    table = np.from_dlpack(_func("nm_accel.take_stats")()).copy()
    return [dict(zip(STAT_FIELDS, (int(v) for v in row))) for row in table]
