"""Shared core of the per-layer codegen: the error and result types every layer kind returns,
the region bookkeeping that builds one layer's program, and small shape helpers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..hardware import HardwareConfig
from ..isa import ELEM_BYTES, ELEM_TYPE_BYTES, ElemType, ProgramBuilder, RegionKind


class CodegenError(ValueError):
    """A layer cannot be mapped onto the target (names the layer and the reason)."""


@dataclass
class Param:
    """A tensor that comes from the Relax graph (index into the composite's parameters)."""

    index: int


@dataclass
class AcceleratorCall:
    program: np.ndarray
    operands: list  # Param or np.ndarray (a constant), in argument-region order
    out_shape: tuple
    macs: int
    notes: dict = field(default_factory=dict)
    out_dtype: str = "float32"


class _Layer:
    """Region bookkeeping shared by all layer kinds."""

    def __init__(self, hw: HardwareConfig, layer_id: int):
        self.hw = hw
        self.b = ProgramBuilder(hw.machine(), layer_id)
        self.operands: list = []
        self._has_output = False
        self._out_dtype = ElemType.float32

    def input(self, operand, nbytes: int, dtype: ElemType = ElemType.float32) -> int:
        if self._has_output:
            raise CodegenError("internal: input region declared after the output region")
        self.operands.append(operand)
        return self.b.region(nbytes, RegionKind.ARGUMENT, dtype)

    def const(self, value: np.ndarray) -> int:
        value = np.ascontiguousarray(value, dtype=np.float32)
        return self.input(value, value.nbytes)

    def scratch(self, nbytes: int) -> int:
        return self.b.region(nbytes, RegionKind.SCRATCH)

    def output(self, shape, dtype: ElemType = ElemType.float32) -> int:
        """The output region; must be declared last (call_dps_packed passes it last)."""
        self._has_output = True
        self._out_dtype = dtype
        nbytes = int(np.prod(shape, dtype=np.int64)) * ELEM_TYPE_BYTES[dtype]
        return self.b.region(nbytes, RegionKind.ARGUMENT, dtype)

    def finish(self, out_shape, macs: int, **notes) -> AcceleratorCall:
        used = self.b._next_base
        if used > self.hw.dram_bytes:
            raise CodegenError(
                f"layer needs {used / 2**20:.1f} MiB of DRAM but the target has "
                f"{self.hw.dram_mib} MiB (memories.dram_mib)")
        return AcceleratorCall(self.b.encode(), self.operands, tuple(out_shape), macs, notes,
                               self._out_dtype.name)


def _nbytes(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) * ELEM_BYTES


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _split(start: int, stop: int, step: int):
    for lo in range(start, stop, step):
        yield lo, min(stop, lo + step)


def _trailing_reduction(what: str, x_shape, axes, keepdims: bool):
    """(rows R, reduced length L, output shape) of a reduction over trailing axes."""
    x_shape = tuple(int(v) for v in x_shape)
    rank = len(x_shape)
    axes = sorted(a % rank for a in axes)
    if axes != list(range(rank - len(axes), rank)):
        raise CodegenError(f"{what} over axes {axes} of a rank-{rank} tensor: only trailing axes")
    lead = x_shape[:rank - len(axes)]
    rows = int(np.prod(lead, dtype=np.int64))
    length = int(np.prod(x_shape[rank - len(axes):], dtype=np.int64))
    return rows, length, (lead + (1,) * len(axes) if keepdims else lead)
