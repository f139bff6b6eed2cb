// GATHER: an indexed row DMA, the embedding lookup. Reads `rows` integer indices (an int32 or
// int64 region at index_addr, contiguous), and for each copies `cols` fp32 elements of row
// `index` of a DRAM table (table_rows rows, row_stride bytes apart, from table_addr) into one
// scratchpad or accumulator row, zero-filling cols..DIM-1 and rounding to bf16 into a bf16
// scratchpad as LOAD does. Negative indices count from the end (ONNX Gather); an index outside
// [-table_rows, table_rows) stops the run with an error naming it. Each table row is its own
// DRAM burst, issued once the indices have arrived (docs/ISA.md, "GATHER").
#include <algorithm>

#include "../instr.h"

namespace nm_accel {
namespace {
namespace f = isa::gather;

int64_t IndexBytes(const Instr& in, const Program& prog) {
  return in[f::kRows] * ElemBytesOf(prog.regions()[prog.RegionAt(in[f::kIndexAddr])].dtype);
}

void Validate(const OpId& id, const Instr& in, const Program& prog) {
  const MachineConfig& cfg = prog.config();
  CheckFlag(id, "dst_mem", in[f::kDstMem]);
  CheckAtLeast(id, "rows", in[f::kRows], 1);
  CheckAtLeast(id, "table_rows", in[f::kTableRows], 1);
  CheckInRange(id, "cols", in[f::kCols], 1, cfg.dim, "DIM");
  CheckRows(id, cfg, in[f::kDstMem], "dst_row", in[f::kDstRow], "rows", in[f::kRows]);
  CheckByteOperand(id, "table_addr", in[f::kTableAddr]);
  CheckByteOperand(id, "row_stride", in[f::kRowStride]);
  CheckByteOperand(id, "index_addr", in[f::kIndexAddr]);
  CheckDramAccess(id, prog, "table reads",
                  {in[f::kTableAddr], in[f::kTableRows], in[f::kCols], in[f::kRowStride],
                   isa::kElemBytes});
  const int64_t at = prog.RegionAt(in[f::kIndexAddr]);
  const int64_t dtype = at >= 0 ? prog.regions()[at].dtype : isa::kElemTypeInt32;
  if (dtype == isa::kElemTypeFloat32) {
    Fail(id, Str("index_addr ", in[f::kIndexAddr], " is in region ", at,
                 ", which holds float32 elements; indices must be int32 or int64"));
  }
  CheckDramAccess(id, prog, "index reads",
                  {in[f::kIndexAddr], 1, in[f::kRows], 0, ElemBytesOf(dtype)},
                  /*integer_ok=*/true);
  CheckUnusedZero(id, in, f::kEnd);
}

Timing Cost(const Instr& in, const CostContext& ctx) {
  const int64_t bw = ctx.cfg.dram_bw;
  const int64_t index_bytes = IndexBytes(in, ctx.prog);
  const int64_t row_bytes = in[f::kCols] * isa::kElemBytes;
  // The indices stream in; then one burst per row, whose address needs its index: a second
  // DRAM latency after the first.
  const int64_t busy = (index_bytes + bw - 1) / bw + in[f::kRows] * ((row_bytes + bw - 1) / bw);
  return {busy, 2 * ctx.cfg.dram_latency};
}

std::vector<Span> Accesses(const Instr& in) {
  const Memory mem = in[f::kDstMem] == isa::kMemScratchpad ? kSp : kAcc;
  return {{mem, in[f::kDstRow], in[f::kDstRow] + in[f::kRows], true}};
}

void Count(const Instr& in, Counters& c) {
  c.Add(isa::kStatNGather, 1);
  c.Add(isa::kStatDramReadBytes,
        IndexBytes(in, c.prog()) + in[f::kRows] * in[f::kCols] * isa::kElemBytes);
  c.Mem(in[f::kDstMem], true, in[f::kRows] * c.cfg().dim);  // whole rows, zeros included
}

void Execute(const OpId& id, const Instr& in, MachineState& s) {
  const int64_t mem = in[f::kDstMem], cols = in[f::kCols], n = in[f::kTableRows];
  const int64_t elem = ElemBytesOf(s.DtypeAt(in[f::kIndexAddr]));
  const bool to_bf16 = mem == isa::kMemScratchpad && s.cfg().dtype == isa::kDTypeBfloat16;
  for (int64_t r = 0; r < in[f::kRows]; ++r) {
    const int64_t given = s.ReadInt(in[f::kIndexAddr] + r * elem);
    if (given < -n || given >= n) {
      Fail(id, Str("index ", r, " of ", in[f::kRows], " is ", given, ", outside [", -n, ", ", n,
                   ") for a table of ", n, " rows"));
    }
    const int64_t row = given < 0 ? given + n : given;
    const float* src = s.Dram(in[f::kTableAddr] + row * in[f::kRowStride]);
    float* dst = s.Row(mem, in[f::kDstRow] + r);
    for (int64_t c = 0; c < cols; ++c) dst[c] = to_bf16 ? RoundToBf16(src[c]) : src[c];
    std::fill(dst + cols, dst + s.cfg().dim, 0.0f);
  }
}

}  // namespace

extern const InstrRules kGatherRules{Validate, Cost, Accesses, Count, Execute,
                                     /*lands_late=*/true};

}  // namespace nm_accel
