"""Encoding of the accelerator instruction set (docs/ISA.md is the specification).

A program is one int64 array: header, region table, fixed-width instruction records. The
compiler builds it with :class:`ProgramBuilder`; the C++ simulator (target/csrc) decodes the same
layout. Keep the constants here and in ``target/csrc/isa.h`` in step.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

MAGIC = 0x4E4D4143
ISA_VERSION = 2
HEADER_WORDS = 16
REGION_WORDS = 4
INSTR_WORDS = 32
ELEM_BYTES = 4  # DRAM holds fp32


class Op(enum.IntEnum):
    LOAD = 1
    STORE = 2
    GEMM = 3
    VEC = 4
    PWL = 5
    LOAD_PWL = 6
    LOOP_GEMM = 7


class Queue(enum.IntEnum):
    LOAD = 0
    COMPUTE = 1
    STORE = 2


QUEUE_OF = {Op.LOAD: Queue.LOAD, Op.LOAD_PWL: Queue.LOAD, Op.GEMM: Queue.COMPUTE,
            Op.VEC: Queue.COMPUTE, Op.PWL: Queue.COMPUTE, Op.STORE: Queue.STORE}


class Mem(enum.IntEnum):
    SCRATCHPAD = 0
    ACCUMULATOR = 1


class VecOp(enum.IntEnum):
    ADD = 0
    MUL = 1
    MAX = 2


class RegionKind(enum.IntEnum):
    ARGUMENT = 0
    SCRATCH = 1


DTYPE_CODES = {"float32": 0, "bfloat16": 1}

# Operand word names per opcode, in order from word 3 (docs/ISA.md).
FIELDS = {
    Op.LOAD: ("dst_mem", "dst_row", "dram_addr", "rows", "cols", "row_stride", "col_stride",
              "pad_before", "pad_after"),
    Op.STORE: ("src_mem", "src_row", "dram_addr", "rows", "cols", "row_stride", "col_stride"),
    Op.GEMM: ("a_row", "b_row", "c_row", "m", "k", "n", "accumulate"),
    Op.VEC: ("op", "dst_row", "a_row", "b_row", "rows", "b_broadcast"),
    Op.PWL: ("dst_row", "src_row", "rows", "table_base", "n_segments"),
    Op.LOAD_PWL: ("table_base", "dram_addr", "n_segments"),
    Op.LOOP_GEMM: ("a_addr", "a_row_stride", "a_col_stride", "b_addr", "b_row_stride",
                   "b_col_stride", "c_addr", "c_row_stride", "c_col_stride", "d_addr",
                   "d_row_stride", "d_col_stride", "bias_addr", "M", "K", "N", "tile_m",
                   "tile_k", "tile_n", "act_table", "act_segments", "sp_base", "acc_base",
                   "has_d", "has_bias", "has_act"),
}

_NAME_SETS = {op: frozenset(names) for op, names in FIELDS.items()}

# Statistics record returned by the simulator per call (order fixed by target/csrc/isa.h).
STAT_FIELDS = (
    "layer_id", "cycles", "load_busy", "compute_busy", "store_busy", "macs",
    "dram_read_bytes", "dram_write_bytes", "sp_read_bytes", "sp_write_bytes",
    "acc_read_bytes", "acc_write_bytes", "vec_elements", "pwl_elements",
    "n_load", "n_store", "n_gemm", "n_vec", "n_pwl", "n_load_pwl", "n_loop_gemm",
    # stall cycles per engine and cause (docs/ISA.md, "Stalls")
    "load_stall_dma", "load_stall_dep", "load_stall_full", "load_stall_queue",
    "compute_stall_dma", "compute_stall_dep", "compute_stall_full", "compute_stall_queue",
    "store_stall_dma", "store_stall_dep", "store_stall_full", "store_stall_queue",
)
STALL_CAUSES = ("dma", "dep", "full", "queue")
DATAFLOW_CODES = {"weight_stationary": 0, "output_stationary": 1}


@dataclass(frozen=True)
class MachineParams:
    """The hardware numbers a program header carries (from the target's hardware JSON)."""

    dim: int
    sp_rows: int
    acc_rows: int
    pwl_entries: int
    operand_dtype: str
    dram_bytes: int
    dram_bw: int
    dram_latency: int
    dataflow: str = "weight_stationary"
    queue_depth: int = 8
    dma_in_flight: int = 16


@dataclass
class Region:
    base: int
    size: int
    kind: RegionKind


class ProgramBuilder:
    """Collects regions and instructions and encodes them as one int64 program array."""

    def __init__(self, machine: MachineParams, layer_id: int = 0):
        self.machine = machine
        self.layer_id = layer_id
        self.regions: list[Region] = []
        self.instrs: list[list[int]] = []
        self._next_base = 0

    def region(self, size_bytes: int, kind: RegionKind = RegionKind.ARGUMENT) -> int:
        """Reserve a DRAM region (64-byte aligned) and return its base address."""
        base = self._next_base
        self.regions.append(Region(base, int(size_bytes), kind))
        self._next_base = base + (int(size_bytes) + 63) // 64 * 64
        return base

    def emit(self, op: Op, /, wait: int = 0, signal: int = 0, **operands: int) -> None:
        names = FIELDS[op]
        if len(operands) > len(names) or not operands.keys() <= _NAME_SETS[op]:
            unknown = sorted(set(operands) - set(names))
            raise ValueError(f"{op.name}: unknown operand(s) {unknown}")
        rec = [int(op), int(wait), int(signal)]
        rec += [int(operands.get(name, 0)) for name in names]
        rec += [0] * (INSTR_WORDS - len(rec))
        self.instrs.append(rec)

    def encode(self) -> np.ndarray:
        m = self.machine
        header = np.zeros(HEADER_WORDS, dtype=np.int64)
        header[:] = [MAGIC, ISA_VERSION, len(self.regions), len(self.instrs), self.layer_id,
                     m.dim, m.sp_rows, m.acc_rows, m.pwl_entries,
                     DTYPE_CODES[m.operand_dtype], m.dram_bytes, m.dram_bw, m.dram_latency,
                     DATAFLOW_CODES[m.dataflow], m.queue_depth, m.dma_in_flight]
        regions = np.array([[r.base, r.size, int(r.kind), 0] for r in self.regions],
                           dtype=np.int64).reshape(-1)
        instrs = np.array(self.instrs, dtype=np.int64).reshape(-1)
        return np.concatenate([header, regions, instrs])


def bit(queue: Queue) -> int:
    """Mask bit for a wait/signal mask."""
    return 1 << int(queue)


def disassemble(program: np.ndarray) -> str:
    """Human-readable listing of an encoded program (for --dump-code asm and debugging)."""
    p = np.asarray(program, dtype=np.int64)
    n_regions, n_instr = int(p[2]), int(p[3])
    lines = [f"; layer {int(p[4])}  DIM={int(p[5])} sp_rows={int(p[6])} acc_rows={int(p[7])}"]
    off = HEADER_WORDS
    for i in range(n_regions):
        base, size, kind, _ = p[off + i * REGION_WORDS: off + (i + 1) * REGION_WORDS]
        lines.append(f"; region {i}: base={base} size={size} {RegionKind(int(kind)).name.lower()}")
    off += n_regions * REGION_WORDS
    for i in range(n_instr):
        rec = p[off + i * INSTR_WORDS: off + (i + 1) * INSTR_WORDS]
        op = Op(int(rec[0]))
        args = " ".join(f"{n}={int(v)}" for n, v in zip(FIELDS[op], rec[3:]))
        deps = f" wait={int(rec[1]):03b} signal={int(rec[2]):03b}" if rec[1] or rec[2] else ""
        lines.append(f"{i:5d}: {op.name:<9} {args}{deps}")
    return "\n".join(lines)
