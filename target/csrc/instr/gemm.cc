// GEMM: C[m x n] (=|+=) A[m x k] B[k x n] on the DIM x DIM array, operands in the scratchpad,
// C in the accumulator; products and sums in fp32, each rounded on its own, c[j] summed in
// ascending k (docs/ISA.md, "GEMM" and "Costs").
#include <algorithm>

#include "../instr.h"

namespace nm_accel {
namespace {
namespace f = isa::gemm;

void Validate(const OpId& id, const Instr& in, const Program& prog) {
  const MachineConfig& cfg = prog.config();
  CheckAtLeast(id, "m", in[f::kM], 1);
  CheckInRange(id, "k", in[f::kK], 1, cfg.dim, "DIM");
  CheckInRange(id, "n", in[f::kN], 1, cfg.dim, "DIM");
  CheckFlag(id, "accumulate", in[f::kAccumulate]);
  CheckRows(id, cfg, isa::kMemScratchpad, "a_row", in[f::kARow], "m", in[f::kM]);
  CheckRows(id, cfg, isa::kMemScratchpad, "b_row", in[f::kBRow], "k", in[f::kK]);
  CheckRows(id, cfg, isa::kMemAccumulator, "c_row", in[f::kCRow], "m", in[f::kM]);
  CheckUnusedZero(id, in, f::kEnd);
}

Timing Cost(const Instr& in, const CostContext& ctx) {
  const int64_t m = in[f::kM], k = in[f::kK], dim = ctx.cfg.dim;
  const int64_t fill_drain = 2 * dim - 2;
  if (ctx.cfg.dataflow == isa::kDataflowOutputStationary) {  // ceil(m / DIM) passes of max(k, DIM)
    const int64_t passes = (m + dim - 1) / dim;
    return {passes * std::max(k, dim) + (ctx.chained ? 0 : fill_drain), 0};
  }
  // Weight-stationary: preload k weight rows, stream m rows, fill and drain. Chained onto the
  // previous GEMM, the preload ran in the shadow buffer while that GEMM streamed its m_prev
  // rows and the fill / drain overlap it.
  if (ctx.chained) return {m + std::max<int64_t>(0, k - ctx.prev_gemm_m), 0};
  return {k + m + fill_drain, 0};
}

std::vector<Span> Accesses(const Instr& in) {
  std::vector<Span> spans = {{kSp, in[f::kARow], in[f::kARow] + in[f::kM], false},
                             {kSp, in[f::kBRow], in[f::kBRow] + in[f::kK], false},
                             {kAcc, in[f::kCRow], in[f::kCRow] + in[f::kM], true}};
  if (in[f::kAccumulate]) spans.push_back({kAcc, in[f::kCRow], in[f::kCRow] + in[f::kM], false});
  return spans;
}

void Count(const Instr& in, Counters& c) {
  const int64_t m = in[f::kM], k = in[f::kK], n = in[f::kN];
  c.Add(isa::kStatNGemm, 1);
  c.Add(isa::kStatMacs, m * k * n);
  c.Mem(isa::kMemScratchpad, false, m * k + k * n);
  c.Mem(isa::kMemAccumulator, true, m * n);
  if (in[f::kAccumulate]) c.Mem(isa::kMemAccumulator, false, m * n);
}

void Execute(const OpId&, const Instr& in, MachineState& s) {
  const int64_t m = in[f::kM], k = in[f::kK], n = in[f::kN];
  for (int64_t i = 0; i < m; ++i) {
    const float* a = s.Row(isa::kMemScratchpad, in[f::kARow] + i);
    float* c = s.Row(isa::kMemAccumulator, in[f::kCRow] + i);
    if (!in[f::kAccumulate]) std::fill(c, c + n, 0.0f);
    // kk outermost keeps each c[j] summed in ascending k while the j loop vectorizes.
    for (int64_t kk = 0; kk < k; ++kk) {
      const float av = a[kk];
      const float* b = s.Row(isa::kMemScratchpad, in[f::kBRow] + kk);
      for (int64_t j = 0; j < n; ++j) {
        const float product = av * b[j];
        c[j] = c[j] + product;
      }
    }
  }
}

}  // namespace

extern const InstrRules kGemmRules{Validate, Cost, Accesses, Count, Execute};

}  // namespace nm_accel
