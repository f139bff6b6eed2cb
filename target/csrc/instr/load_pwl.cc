// LOAD_PWL: n_segments (breakpoint, slope, intercept) fp32 triples from DRAM into PWL table
// entries table_base.. (docs/ISA.md, "LOAD_PWL"); breakpoints must be ordered.
#include "../instr.h"

namespace nm_accel {
namespace {
namespace f = isa::load_pwl;

int64_t Bytes(const Instr& in) { return 3 * isa::kElemBytes * in[f::kNSegments]; }

void Validate(const OpId& id, const Instr& in, const Program& prog) {
  CheckTable(id, prog.config(), in[f::kTableBase], in[f::kNSegments]);
  CheckByteOperand(id, "dram_addr", in[f::kDramAddr]);
  CheckDramAccess(id, prog, "reads",
                  {in[f::kDramAddr], 1, 3 * in[f::kNSegments], 0, isa::kElemBytes});
  CheckUnusedZero(id, in, f::kEnd);
}

Timing Cost(const Instr& in, const CostContext& ctx) { return DmaTiming(ctx.cfg, Bytes(in)); }

std::vector<Span> Accesses(const Instr& in) {
  return {{kTable, in[f::kTableBase], in[f::kTableBase] + in[f::kNSegments], true}};
}

void Count(const Instr& in, Counters& c) {
  c.Add(isa::kStatNLoadPwl, 1);
  c.Add(isa::kStatDramReadBytes, Bytes(in));
}

void Execute(const OpId& id, const Instr& in, MachineState& s) {
  const int64_t base = in[f::kTableBase], n = in[f::kNSegments];
  const float* src = s.Dram(in[f::kDramAddr]);
  CheckBreakpoints(id, src, n, 3, "segment", 0);
  for (int64_t k = 0; k < n; ++k) {
    s.breakpoint[base + k] = src[3 * k];
    s.slope[base + k] = src[3 * k + 1];
    s.intercept[base + k] = src[3 * k + 2];
  }
}

}  // namespace

extern const InstrRules kLoadPwlRules{Validate, Cost, Accesses, Count, Execute,
                                      /*lands_late=*/true};

}  // namespace nm_accel
