// PWL: each element of accumulator rows mapped through table entries table_base ..
// table_base+n_segments-1: the segment of the largest breakpoint <= x (entry 0's breakpoint is
// ignored), then slope * x + intercept, rounded separately; a flat segment outputs its
// intercept; NaN stays NaN (docs/ISA.md, "PWL"; nm_tvm/pwl.py evaluates the same way).
#include <algorithm>
#include <cmath>

#include "../instr.h"

namespace nm_accel {
namespace {
namespace f = isa::pwl;

void Validate(const OpId& id, const Instr& in, const Program& prog) {
  const MachineConfig& cfg = prog.config();
  CheckAtLeast(id, "rows", in[f::kRows], 1);
  CheckRows(id, cfg, isa::kMemAccumulator, "dst_row", in[f::kDstRow], "rows", in[f::kRows]);
  CheckRows(id, cfg, isa::kMemAccumulator, "src_row", in[f::kSrcRow], "rows", in[f::kRows]);
  CheckTable(id, cfg, in[f::kTableBase], in[f::kNSegments]);
  CheckUnusedZero(id, in, f::kEnd);
}

// A pipelined comparator tree: one row per cycle after log2(segments) levels.
Timing Cost(const Instr& in, const CostContext&) {
  return {in[f::kRows] + CeilLog2(in[f::kNSegments]), 0};
}

std::vector<Span> Accesses(const Instr& in) {
  return {{kAcc, in[f::kSrcRow], in[f::kSrcRow] + in[f::kRows], false},
          {kTable, in[f::kTableBase], in[f::kTableBase] + in[f::kNSegments], false},
          {kAcc, in[f::kDstRow], in[f::kDstRow] + in[f::kRows], true}};
}

void Count(const Instr& in, Counters& c) {
  const int64_t elements = in[f::kRows] * c.cfg().dim;
  c.Add(isa::kStatNPwl, 1);
  c.Add(isa::kStatPwlElements, elements);
  c.Mem(isa::kMemAccumulator, false, elements);
  c.Mem(isa::kMemAccumulator, true, elements);
}

void Execute(const OpId& id, const Instr& in, MachineState& s) {
  const int64_t rows = in[f::kRows], dim = s.cfg().dim;
  const int64_t base = in[f::kTableBase], n = in[f::kNSegments];
  CheckBreakpoints(id, s.breakpoint.data() + base, n, 1, "table entry", base);
  const float* bp_begin = s.breakpoint.data() + base + 1;
  const float* bp_end = s.breakpoint.data() + base + n;
  s.tmp.resize(static_cast<size_t>(rows * dim));
  const float* src = s.Row(isa::kMemAccumulator, in[f::kSrcRow]);
  for (int64_t e = 0; e < rows * dim; ++e) {
    const float x = src[e];
    if (std::isnan(x)) {
      s.tmp[e] = x;
      continue;
    }
    // The largest s with breakpoint[s] <= x is the count of such breakpoints among 1..n-1.
    const int64_t seg = base + (std::upper_bound(bp_begin, bp_end, x) - bp_begin);
    // A flat segment outputs its intercept (a constant multiplexer, as hardware would):
    // ReLU(-inf) is 0, not 0 * -inf = NaN.
    const float product = s.slope[seg] == 0.0f ? 0.0f : s.slope[seg] * x;
    s.tmp[e] = product + s.intercept[seg];
  }
  std::copy(s.tmp.begin(), s.tmp.end(), s.Row(isa::kMemAccumulator, in[f::kDstRow]));
}

}  // namespace

extern const InstrRules kPwlRules{Validate, Cost, Accesses, Count, Execute};

}  // namespace nm_accel
