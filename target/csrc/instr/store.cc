// STORE: scratchpad or accumulator rows to a 2-D strided DRAM view (docs/ISA.md, "STORE"),
// converted to the destination region's element type (a cast by DMA).
#include "../instr.h"

namespace nm_accel {
namespace {
namespace f = isa::store;

void Validate(const OpId& id, const Instr& in, const Program& prog) {
  const MachineConfig& cfg = prog.config();
  CheckFlag(id, "src_mem", in[f::kSrcMem]);
  CheckAtLeast(id, "rows", in[f::kRows], 1);
  CheckInRange(id, "cols", in[f::kCols], 1, cfg.dim, "DIM");
  CheckRows(id, cfg, in[f::kSrcMem], "src_row", in[f::kSrcRow], "rows", in[f::kRows]);
  CheckAtLeast(id, "dram_addr", in[f::kDramAddr], 0);
  // Strides and address are checked against the region's element size (CheckDramAccess).
  CheckAtLeast(id, "row_stride", in[f::kRowStride], 0);
  CheckAtLeast(id, "col_stride", in[f::kColStride], 0);
  CheckDramAccess(id, prog, "writes",
                  {in[f::kDramAddr], in[f::kRows], in[f::kCols], in[f::kRowStride],
                   in[f::kColStride]},
                  /*integer_ok=*/true);
  CheckUnusedZero(id, in, f::kEnd);
}

// Bytes written: the destination region's element size (a bool / int8 region takes 1 byte).
int64_t DramBytes(const Instr& in, const Program& prog) {
  const int64_t elem = ElemBytesOf(prog.regions()[prog.RegionAt(in[f::kDramAddr])].dtype);
  return in[f::kRows] * in[f::kCols] * elem;
}

Timing Cost(const Instr& in, const CostContext& ctx) {
  return DmaTiming(ctx.cfg, DramBytes(in, ctx.prog));
}

std::vector<Span> Accesses(const Instr& in) {
  const Memory mem = in[f::kSrcMem] == isa::kMemScratchpad ? kSp : kAcc;
  return {{mem, in[f::kSrcRow], in[f::kSrcRow] + in[f::kRows], false}};
}

void Count(const Instr& in, Counters& c) {
  c.Add(isa::kStatNStore, 1);
  c.Add(isa::kStatDramWriteBytes, DramBytes(in, c.prog()));
  c.Mem(in[f::kSrcMem], false, in[f::kRows] * in[f::kCols]);
}

void Execute(const OpId& id, const Instr& in, MachineState& s) {
  if (s.DtypeAt(in[f::kDramAddr]) != isa::kElemTypeFloat32) {  // converted element by element
    for (int64_t r = 0; r < in[f::kRows]; ++r) {
      const float* src = s.Row(in[f::kSrcMem], in[f::kSrcRow] + r);
      const int64_t row_addr = in[f::kDramAddr] + r * in[f::kRowStride];
      for (int64_t c = 0; c < in[f::kCols]; ++c) {
        s.WriteFromFloat(id, row_addr + c * in[f::kColStride], src[c]);
      }
    }
    return;
  }
  const int64_t row_step = in[f::kRowStride] / isa::kElemBytes;
  const int64_t col_step = in[f::kColStride] / isa::kElemBytes;
  float* dst = s.Dram(in[f::kDramAddr]);
  for (int64_t r = 0; r < in[f::kRows]; ++r) {
    const float* src = s.Row(in[f::kSrcMem], in[f::kSrcRow] + r);
    for (int64_t c = 0; c < in[f::kCols]; ++c) dst[r * row_step + c * col_step] = src[c];
  }
}

}  // namespace

extern const InstrRules kStoreRules{Validate, Cost, Accesses, Count, Execute};

}  // namespace nm_accel
