"""Encoding of the accelerator instruction set (docs/ISA.md explains it).

A program is one int64 array: header, region table, fixed-width instruction records. The one
definition of the layout, opcodes, enums, statistics and limits is ``isa_spec.json`` next to
this file: the names below are built from it, and the CMake build generates the simulator's
``isa.h`` from it (target/gen_isa_header.py). The compiler builds programs with
:class:`ProgramBuilder`; :class:`Program` decodes an encoded program into named fields and
encodes it back.
"""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .gen_isa_header import spec_digest

SPEC_PATH = Path(__file__).with_name("isa_spec.json")
SPEC: dict = json.loads(SPEC_PATH.read_text())
SPEC_DIGEST = spec_digest(SPEC)  # the simulator library reports the digest it was built from

MAGIC = int(SPEC["magic"], 0)
ISA_VERSION = SPEC["version"]
HEADER_WORDS = SPEC["words"]["header"]
REGION_WORDS = SPEC["words"]["region"]
INSTR_WORDS = SPEC["words"]["instr"]
ELEM_BYTES = SPEC["elem_bytes"]  # DRAM holds fp32

# Word names of the header, the region record and the instruction prefix, in order, and their
# word indices (HEADER_INDEX["layer_id"] == 4).
HEADER_FIELDS = tuple(f["name"] for f in SPEC["header"])
HEADER_INDEX = {name: i for i, name in enumerate(HEADER_FIELDS)}
# The header words a Program carries by name (the others: magic, version and the two counts).
HEADER_VALUES = tuple(f["name"] for f in SPEC["header"] if "fixed" not in f and "count" not in f)
REGION_FIELDS = tuple(SPEC["region"])
REGION_INDEX = {name: i for i, name in enumerate(REGION_FIELDS)}
INSTR_PREFIX = tuple(SPEC["instr_prefix"])
OPERAND_BASE = len(INSTR_PREFIX)  # word of an instruction's first operand
_PREFIX_INDEX = {name: i for i, name in enumerate(INSTR_PREFIX)}
LIMITS: dict[str, int] = dict(SPEC["limits"])


def _int_enum(name: str, members: dict[str, int]) -> type[enum.IntEnum]:
    return enum.IntEnum(name, list(members.items()), module=__name__, qualname=name)


Op = _int_enum("Op", {op["name"]: op["code"] for op in SPEC["opcodes"]})
Queue = _int_enum("Queue", SPEC["enums"]["Queue"])
Mem = _int_enum("Mem", SPEC["enums"]["Mem"])
VecOp = _int_enum("VecOp", SPEC["enums"]["VecOp"])
RegionKind = _int_enum("RegionKind", SPEC["enums"]["RegionKind"])
ElemType = _int_enum("ElemType", SPEC["enums"]["ElemType"])
ELEM_TYPE_BYTES = {ElemType.float32: 4, ElemType.int32: 4, ElemType.int64: 8, ElemType.bool: 1,
                   ElemType.uint8: 1, ElemType.int8: 1}

# Queue of each opcode; LOOP_GEMM has none (a barrier whose micro-ops use every queue).
QUEUE_OF = {Op[op["name"]]: Queue[op["queue"]] for op in SPEC["opcodes"] if op["queue"]}

DTYPE_CODES: dict[str, int] = dict(SPEC["enums"]["DType"])

# Operand word names per opcode, in order from word OPERAND_BASE (docs/ISA.md).
FIELDS = {Op[op["name"]]: tuple(op["operands"]) for op in SPEC["opcodes"]}

_NAME_SETS = {op: frozenset(names) for op, names in FIELDS.items()}

# Statistics record returned by the simulator per call (its order is the spec's).
STAT_FIELDS = tuple(SPEC["stats"])
STALL_CAUSES = tuple(sorted(SPEC["enums"]["StallCause"], key=SPEC["enums"]["StallCause"].get))
DATAFLOW_CODES: dict[str, int] = dict(SPEC["enums"]["Dataflow"])


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
    dtype: ElemType = ElemType.float32  # integer regions: LOAD converts, GATHER reads indices

    def words(self) -> list[int]:
        """The region record's ``REGION_WORDS`` words (reserved words 0)."""
        values = {"base": int(self.base), "size": int(self.size), "kind": int(self.kind),
                  "dtype": int(self.dtype)}
        rec = [values.get(name, 0) for name in REGION_FIELDS]
        return rec + [0] * (REGION_WORDS - len(rec))


@dataclass
class Instruction:
    """One instruction record: opcode, wait / signal masks and every operand of ``FIELDS[op]``
    by name (in that order)."""

    op: Op
    operands: dict[str, int] = field(default_factory=dict)
    wait: int = 0
    signal: int = 0

    def words(self) -> list[int]:
        """The record's ``INSTR_WORDS`` words (operands missing from ``operands`` are 0)."""
        names = FIELDS[self.op]
        if not self.operands.keys() <= _NAME_SETS[self.op]:
            unknown = sorted(set(self.operands) - set(names))
            raise ValueError(f"{self.op.name}: unknown operand(s) {unknown}")
        prefix = {"opcode": int(self.op), "wait": int(self.wait), "signal": int(self.signal)}
        rec = [prefix[name] for name in INSTR_PREFIX]
        rec += [int(self.operands.get(name, 0)) for name in names]
        rec += [0] * (INSTR_WORDS - len(rec))
        return rec

    @classmethod
    def from_words(cls, rec) -> Instruction:
        """Decode one record (a sequence of ``INSTR_WORDS`` ints); raises ValueError for an
        unknown opcode or a non-zero word past the opcode's last operand."""
        rec = [int(v) for v in rec]
        if len(rec) != INSTR_WORDS:
            raise ValueError(f"an instruction record has {INSTR_WORDS} words, not {len(rec)}")
        op_word, wait, signal = (rec[_PREFIX_INDEX[n]] for n in ("opcode", "wait", "signal"))
        try:
            op = Op(op_word)
        except ValueError:
            raise ValueError(f"unknown opcode {op_word}") from None
        names = FIELDS[op]
        end = OPERAND_BASE + len(names)
        if any(rec[end:]):
            word = next(i for i in range(end, INSTR_WORDS) if rec[i])
            raise ValueError(f"{op.name}: word {word} is {rec[word]} but must be 0 (unused)")
        return cls(op, dict(zip(names, rec[OPERAND_BASE:end])), wait, signal)


@dataclass
class Program:
    """An encoded program by name: ``header`` holds the ``HEADER_VALUES`` words (layer_id, dim,
    sp_rows, ..., as the ints the header stores); magic, version and the region / instruction
    counts are implied. ``Program.decode(p).encode()`` gives ``p`` back word for word."""

    header: dict[str, int]
    regions: list[Region] = field(default_factory=list)
    instructions: list[Instruction] = field(default_factory=list)

    def header_words(self) -> list[int]:
        missing = [n for n in HEADER_VALUES if n not in self.header]
        unknown = sorted(set(self.header) - set(HEADER_VALUES))
        if missing or unknown:
            raise ValueError(f"program header: missing {missing}, unknown {unknown}")
        implied = {"magic": MAGIC, "version": ISA_VERSION}
        counts = {"regions": len(self.regions), "instructions": len(self.instructions)}
        words = []
        for spec in SPEC["header"]:
            if "fixed" in spec:
                words.append(implied[spec["fixed"]])
            elif "count" in spec:
                words.append(counts[spec["count"]])
            else:
                words.append(int(self.header[spec["name"]]))
        return words + [0] * (HEADER_WORDS - len(words))

    def encode(self) -> np.ndarray:
        """The int64 program array."""
        header = np.array(self.header_words(), dtype=np.int64)
        regions = np.array([r.words() for r in self.regions], dtype=np.int64).reshape(-1)
        instrs = np.array([ins.words() for ins in self.instructions],
                          dtype=np.int64).reshape(-1)
        return np.concatenate([header, regions, instrs])

    @staticmethod
    def header_field(program, name: str) -> int:
        """One header word of an encoded program by name, without decoding the rest."""
        return int(program[HEADER_INDEX[name]])

    @classmethod
    def decode(cls, program) -> Program:
        """Decode an int64 program array; raises ValueError when it is not a well-formed
        program (magic, version, length, reserved and unused words, opcodes). The values of
        the machine numbers and operands are not checked (the simulator does that)."""
        p = np.asarray(program)
        if p.ndim != 1 or not np.issubdtype(p.dtype, np.integer):
            raise ValueError(f"a program is a 1-D int64 array, not {p.dtype} of shape {p.shape}")
        if len(p) < HEADER_WORDS:
            raise ValueError(f"program has {len(p)} words, fewer than the {HEADER_WORDS}-word "
                             "header")
        words = p.tolist()
        head = words[:HEADER_WORDS]
        get = HEADER_INDEX.__getitem__
        if head[get("magic")] != MAGIC:
            raise ValueError(f"bad magic {head[get('magic')]:#x} (expected {MAGIC:#x})")
        if head[get("version")] != ISA_VERSION:
            raise ValueError(f"ISA version {head[get('version')]}, not {ISA_VERSION}")
        if any(head[len(HEADER_FIELDS):]):
            raise ValueError("program header: reserved words must be 0")
        n_regions, n_instr = head[get("n_regions")], head[get("n_instr")]
        expected = HEADER_WORDS + REGION_WORDS * n_regions + INSTR_WORDS * n_instr
        if n_regions < 0 or n_instr < 0 or expected != len(p):
            raise ValueError(f"program has {len(p)} words but the header announces "
                             f"{n_regions} regions and {n_instr} instructions")
        regions = []
        base, size, kind, dtype = (REGION_INDEX[n] for n in ("base", "size", "kind", "dtype"))
        for i in range(n_regions):
            rec = words[HEADER_WORDS + i * REGION_WORDS: HEADER_WORDS + (i + 1) * REGION_WORDS]
            if any(rec[len(REGION_FIELDS):]):
                raise ValueError(f"region {i}: reserved word must be 0")
            try:
                region_kind = RegionKind(rec[kind])
            except ValueError:
                raise ValueError(f"region {i}: unknown kind {rec[kind]}") from None
            try:
                region_dtype = ElemType(rec[dtype])
            except ValueError:
                raise ValueError(f"region {i}: unknown element type {rec[dtype]}") from None
            regions.append(Region(rec[base], rec[size], region_kind, region_dtype))
        off = HEADER_WORDS + REGION_WORDS * n_regions
        instrs = []
        for i in range(n_instr):
            try:
                instrs.append(Instruction.from_words(
                    words[off + i * INSTR_WORDS: off + (i + 1) * INSTR_WORDS]))
            except ValueError as err:
                raise ValueError(f"instruction {i}: {err}") from None
        return cls({n: head[get(n)] for n in HEADER_VALUES}, regions, instrs)


class ProgramBuilder:
    """Collects regions and instructions and encodes them as one int64 program array."""

    def __init__(self, machine: MachineParams, layer_id: int = 0):
        self.machine = machine
        self.layer_id = layer_id
        self.regions: list[Region] = []
        self.instrs: list[list[int]] = []  # encoded records (Instruction.words())
        self._next_base = 0

    def region(self, size_bytes: int, kind: RegionKind = RegionKind.ARGUMENT,
               dtype: ElemType = ElemType.float32) -> int:
        """Reserve a DRAM region (64-byte aligned) and return its base address."""
        base = self._next_base
        self.regions.append(Region(base, int(size_bytes), kind, dtype))
        self._next_base = base + (int(size_bytes) + 63) // 64 * 64
        return base

    def emit(self, op: Op, /, wait: int = 0, signal: int = 0, **operands: int) -> None:
        self.instrs.append(Instruction(op, operands, wait, signal).words())

    def program(self) -> Program:
        m = self.machine
        header = {"layer_id": self.layer_id, "dim": m.dim, "sp_rows": m.sp_rows,
                  "acc_rows": m.acc_rows, "pwl_entries": m.pwl_entries,
                  "operand_dtype": DTYPE_CODES[m.operand_dtype], "dram_bytes": m.dram_bytes,
                  "dram_bw": m.dram_bw, "dram_latency": m.dram_latency,
                  "dataflow": DATAFLOW_CODES[m.dataflow], "queue_depth": m.queue_depth,
                  "dma_in_flight": m.dma_in_flight}
        return Program(header, list(self.regions),
                       [Instruction.from_words(rec) for rec in self.instrs])

    def encode(self) -> np.ndarray:
        return self.program().encode()


def bit(queue: Queue) -> int:
    """Mask bit for a wait/signal mask."""
    return 1 << int(queue)


def disassemble(program: np.ndarray) -> str:
    """Human-readable listing of an encoded program (for --dump-code asm and debugging)."""
    prog = Program.decode(np.asarray(program, dtype=np.int64))
    h = prog.header
    lines = [f"; layer {h['layer_id']}  DIM={h['dim']} sp_rows={h['sp_rows']} "
             f"acc_rows={h['acc_rows']}"]
    for i, r in enumerate(prog.regions):
        typed = "" if r.dtype == ElemType.float32 else f" {r.dtype.name}"
        lines.append(f"; region {i}: base={r.base} size={r.size} {r.kind.name.lower()}{typed}")
    for i, ins in enumerate(prog.instructions):
        args = " ".join(f"{n}={v}" for n, v in ins.operands.items())
        deps = f" wait={ins.wait:03b} signal={ins.signal:03b}" if ins.wait or ins.signal else ""
        lines.append(f"{i:5d}: {ins.op.name:<9} {args}{deps}")
    return "\n".join(lines)
