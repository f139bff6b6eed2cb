// LOAD: a 2-D strided DMA from DRAM into scratchpad or accumulator rows, with zero padding
// rows before / after the data and zero columns cols..DIM-1; into a bf16 scratchpad each
// element is rounded to nearest even; from an int32 / int64 region each element is converted
// to the nearest fp32 on the way, as ONNX Cast does (docs/ISA.md, "LOAD").
#include <algorithm>

#include "../instr.h"

namespace nm_accel {
namespace {
namespace f = isa::load;

// Rows taken from DRAM (the padding rows are zeros made on chip).
int64_t DataRows(const Instr& in) { return in[f::kRows] - in[f::kPadBefore] - in[f::kPadAfter]; }

// DRAM bytes read: the data rows' elements, of the source region's type.
int64_t DramBytes(const Instr& in, const Program& prog) {
  const int64_t data_rows = DataRows(in);
  if (data_rows <= 0) return 0;
  const int64_t elem = ElemBytesOf(prog.regions()[prog.RegionAt(in[f::kDramAddr])].dtype);
  return data_rows * in[f::kCols] * elem;
}

void Validate(const OpId& id, const Instr& in, const Program& prog) {
  const MachineConfig& cfg = prog.config();
  CheckFlag(id, "dst_mem", in[f::kDstMem]);
  CheckAtLeast(id, "rows", in[f::kRows], 1);
  CheckInRange(id, "cols", in[f::kCols], 1, cfg.dim, "DIM");
  CheckAtLeast(id, "pad_before", in[f::kPadBefore], 0);
  CheckAtLeast(id, "pad_after", in[f::kPadAfter], 0);
  const i128 pads = static_cast<i128>(in[f::kPadBefore]) + in[f::kPadAfter];
  if (pads > in[f::kRows]) {
    Fail(id, Str("pad_before ", in[f::kPadBefore], " + pad_after ", in[f::kPadAfter],
                 " exceeds rows ", in[f::kRows]));
  }
  CheckRows(id, cfg, in[f::kDstMem], "dst_row", in[f::kDstRow], "rows", in[f::kRows]);
  CheckAtLeast(id, "dram_addr", in[f::kDramAddr], 0);
  // Strides and address are checked against the region's element size (CheckDramAccess).
  CheckAtLeast(id, "row_stride", in[f::kRowStride], 0);
  CheckAtLeast(id, "col_stride", in[f::kColStride], 0);
  const int64_t data_rows = in[f::kRows] - static_cast<int64_t>(pads);
  if (data_rows > 0) {
    CheckDramAccess(id, prog, "reads",
                    {in[f::kDramAddr], data_rows, in[f::kCols], in[f::kRowStride],
                     in[f::kColStride]},
                    /*integer_ok=*/true);
  }
  CheckUnusedZero(id, in, f::kEnd);
}

Timing Cost(const Instr& in, const CostContext& ctx) {
  return DmaTiming(ctx.cfg, DramBytes(in, ctx.prog));
}

std::vector<Span> Accesses(const Instr& in) {
  const Memory mem = in[f::kDstMem] == isa::kMemScratchpad ? kSp : kAcc;
  return {{mem, in[f::kDstRow], in[f::kDstRow] + in[f::kRows], true}};
}

void Count(const Instr& in, Counters& c) {
  c.Add(isa::kStatNLoad, 1);
  c.Add(isa::kStatDramReadBytes, DramBytes(in, c.prog()));
  c.Mem(in[f::kDstMem], true, in[f::kRows] * c.cfg().dim);  // whole rows, zeros included
}

void Execute(const OpId&, const Instr& in, MachineState& s) {
  const int64_t mem = in[f::kDstMem], rows = in[f::kRows], cols = in[f::kCols];
  const int64_t pad_before = in[f::kPadBefore];
  const int64_t data_rows = DataRows(in);
  const bool to_bf16 = mem == isa::kMemScratchpad && s.cfg().dtype == isa::kDTypeBfloat16;
  const bool from_float = data_rows <= 0 || s.DtypeAt(in[f::kDramAddr]) == isa::kElemTypeFloat32;
  const int64_t row_step = in[f::kRowStride] / isa::kElemBytes;
  const int64_t col_step = in[f::kColStride] / isa::kElemBytes;
  const float* src = data_rows > 0 && from_float ? s.Dram(in[f::kDramAddr]) : nullptr;
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = s.Row(mem, in[f::kDstRow] + r);
    const int64_t data_row = r - pad_before;
    int64_t c = 0;
    if (data_row >= 0 && data_row < data_rows) {
      if (from_float) {
        const float* row = src + data_row * row_step;
        for (; c < cols; ++c) {
          const float v = row[c * col_step];
          dst[c] = to_bf16 ? RoundToBf16(v) : v;
        }
      } else {  // an integer region: strides in bytes, each element converted
        const int64_t row_addr = in[f::kDramAddr] + data_row * in[f::kRowStride];
        for (; c < cols; ++c) {
          const float v = s.ReadAsFloat(row_addr + c * in[f::kColStride]);
          dst[c] = to_bf16 ? RoundToBf16(v) : v;
        }
      }
    }
    std::fill(dst + c, dst + s.cfg().dim, 0.0f);  // padding rows and columns cols..DIM-1
  }
}

}  // namespace

extern const InstrRules kLoadRules{Validate, Cost, Accesses, Count, Execute, /*lands_late=*/true};

}  // namespace nm_accel
