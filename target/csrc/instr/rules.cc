// The rules of every opcode, listed from the ISA spec (an opcode without its rules file is a
// link error naming k<Camel>Rules), and what the rules share.
#include <cmath>
#include <cstring>

#include "../instr.h"

namespace nm_accel {

#define NM_DECLARE_RULES(Camel) extern const InstrRules k##Camel##Rules;
NM_ISA_FOR_EACH_QUEUED_OPCODE(NM_DECLARE_RULES)
#undef NM_DECLARE_RULES

const InstrRules& RulesOf(int64_t op) {
  switch (op) {
#define NM_RULES_CASE(Camel) \
  case isa::kOp##Camel:      \
    return k##Camel##Rules;
    NM_ISA_FOR_EACH_QUEUED_OPCODE(NM_RULES_CASE)
#undef NM_RULES_CASE
    default:
      throw SimError(Str("internal error: no instruction rules for opcode ", op));
  }
}

void Counters::Add(isa::Stat stat, int64_t value) {
  if (__builtin_add_overflow(stats_[stat], value, &stats_[stat])) {
    throw SimError("a statistics counter overflows int64");
  }
}

void Counters::Mem(int64_t mem, bool write, int64_t elements) {
  if (mem == isa::kMemScratchpad) {
    Add(write ? isa::kStatSpWriteBytes : isa::kStatSpReadBytes, elements * cfg().sp_elem_bytes());
  } else {
    Add(write ? isa::kStatAccWriteBytes : isa::kStatAccReadBytes, elements * 4);
  }
}

Timing DmaTiming(const MachineConfig& cfg, int64_t bytes) {
  return {bytes / cfg.dram_bw + (bytes % cfg.dram_bw != 0), cfg.dram_latency};
}

int64_t CeilLog2(int64_t n) {
  int64_t bits = 0;
  while ((int64_t{1} << bits) < n) ++bits;
  return bits;
}

float RoundToBf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    u = (u | 0x00400000u) & 0xffff0000u;  // NaN: keep it NaN after dropping the low payload
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);  // ties to even; overflow rounds to inf as it should
    u &= 0xffff0000u;
  }
  float out;
  std::memcpy(&out, &u, sizeof(out));
  return out;
}

void CheckBreakpoints(const OpId& id, const float* bp, int64_t n, int64_t stride,
                      const char* label, int64_t first) {
  // Segment 0's breakpoint is ignored; the others must be ordered for the binary search.
  for (int64_t s = 1; s < n; ++s) {
    const float cur = bp[s * stride];
    if (std::isnan(cur)) Fail(id, Str("breakpoint of ", label, " ", first + s, " is NaN"));
    if (s >= 2 && cur < bp[(s - 1) * stride]) {
      Fail(id, Str("breakpoints must be non-decreasing: ", label, " ", first + s, " has ", cur,
                   " after ", bp[(s - 1) * stride]));
    }
  }
}

}  // namespace nm_accel
