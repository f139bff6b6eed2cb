// Numerics of each instruction (docs/ISA.md, "Instructions"). Build with -ffp-contract=off:
// every product and sum below must round to fp32 separately, never as a fused multiply-add.
#include "executor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace nm_accel {

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

void CheckArguments(const Program& prog, const std::vector<DramBuffer>& args) {
  const int64_t expected = prog.num_argument_regions();
  if (static_cast<int64_t>(args.size()) != expected) {
    throw SimError(Str("program has ", expected, " argument regions but ", args.size(),
                       " tensors were passed after the program"));
  }
  size_t next = 0;
  for (size_t i = 0; i < prog.regions().size(); ++i) {
    const Region& r = prog.regions()[i];
    if (r.kind != isa::kRegionKindArgument) continue;
    const DramBuffer& buf = args[next];
    if (buf.bytes != r.size) {
      throw SimError(Str("tensor ", next, " (call argument ", next + 1, ") has ", buf.bytes,
                         " bytes but is bound to region ", i, " of ", r.size, " bytes (",
                         r.size / isa::kElemBytes, " fp32 elements)"));
    }
    ++next;
  }
}

Executor::Executor(const Program& prog, const std::vector<DramBuffer>& args)
    : prog_(prog), cfg_(prog.config()) {
  size_t next_arg = 0;
  for (size_t i = 0; i < prog.regions().size(); ++i) {
    const Region& r = prog.regions()[i];
    if (r.kind == isa::kRegionKindArgument) {
      region_data_.push_back(args[next_arg++].data);
      continue;
    }
    // calloc: zero pages come lazily, and an absurd size fails cleanly instead of aborting.
    float* data = static_cast<float*>(std::calloc(static_cast<size_t>(r.size), 1));
    if (data == nullptr) {
      throw SimError(Str("cannot allocate scratch region ", i, " of ", r.size, " bytes"));
    }
    scratch_.emplace_back(data);
    region_data_.push_back(data);
  }
  sp_.assign(static_cast<size_t>(cfg_.sp_rows * cfg_.dim), 0.0f);
  acc_.assign(static_cast<size_t>(cfg_.acc_rows * cfg_.dim), 0.0f);
  breakpoint_.assign(static_cast<size_t>(cfg_.pwl_entries), 0.0f);
  slope_.assign(static_cast<size_t>(cfg_.pwl_entries), 0.0f);
  intercept_.assign(static_cast<size_t>(cfg_.pwl_entries), 0.0f);
}

float* Executor::Dram(int64_t addr) {
  const int64_t region = prog_.RegionAt(addr);  // validated: always found
  const Region& r = prog_.regions()[region];
  return region_data_[region] + (addr - r.base) / isa::kElemBytes;
}

float* Executor::Row(int64_t mem, int64_t row) {
  return (mem == isa::kMemScratchpad ? sp_.data() : acc_.data()) + row * cfg_.dim;
}

void Executor::Execute(const OpId& id, const Instr& in) {
  switch (in.op()) {
    case isa::kOpLoad: Load(in); break;
    case isa::kOpStore: Store(in); break;
    case isa::kOpGemm: Gemm(in); break;
    case isa::kOpVec: Vec(in); break;
    case isa::kOpPwl: Pwl(id, in); break;
    case isa::kOpLoadPwl: LoadPwl(id, in); break;
    default: Fail(id, "internal error: cannot execute this opcode");
  }
}

void Executor::Load(const Instr& in) {
  namespace f = isa::load;
  const int64_t mem = in[f::kDstMem], rows = in[f::kRows], cols = in[f::kCols];
  const int64_t pad_before = in[f::kPadBefore];
  const int64_t data_rows = rows - pad_before - in[f::kPadAfter];
  const int64_t row_step = in[f::kRowStride] / isa::kElemBytes;
  const int64_t col_step = in[f::kColStride] / isa::kElemBytes;
  const bool to_bf16 = mem == isa::kMemScratchpad && cfg_.dtype == isa::kDTypeBfloat16;
  const float* src = data_rows > 0 ? Dram(in[f::kDramAddr]) : nullptr;
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = Row(mem, in[f::kDstRow] + r);
    const int64_t data_row = r - pad_before;
    int64_t c = 0;
    if (data_row >= 0 && data_row < data_rows) {
      const float* s = src + data_row * row_step;
      for (; c < cols; ++c) {
        const float v = s[c * col_step];
        dst[c] = to_bf16 ? RoundToBf16(v) : v;
      }
    }
    std::fill(dst + c, dst + cfg_.dim, 0.0f);  // padding rows and columns cols..DIM-1
  }
}

void Executor::Store(const Instr& in) {
  namespace f = isa::store;
  const int64_t row_step = in[f::kRowStride] / isa::kElemBytes;
  const int64_t col_step = in[f::kColStride] / isa::kElemBytes;
  float* dst = Dram(in[f::kDramAddr]);
  for (int64_t r = 0; r < in[f::kRows]; ++r) {
    const float* src = Row(in[f::kSrcMem], in[f::kSrcRow] + r);
    for (int64_t c = 0; c < in[f::kCols]; ++c) dst[r * row_step + c * col_step] = src[c];
  }
}

void Executor::Gemm(const Instr& in) {
  namespace f = isa::gemm;
  const int64_t m = in[f::kM], k = in[f::kK], n = in[f::kN];
  for (int64_t i = 0; i < m; ++i) {
    const float* a = Row(isa::kMemScratchpad, in[f::kARow] + i);
    float* c = Row(isa::kMemAccumulator, in[f::kCRow] + i);
    if (!in[f::kAccumulate]) std::fill(c, c + n, 0.0f);
    // kk outermost keeps each c[j] summed in ascending k while the j loop vectorizes.
    for (int64_t kk = 0; kk < k; ++kk) {
      const float av = a[kk];
      const float* b = Row(isa::kMemScratchpad, in[f::kBRow] + kk);
      for (int64_t j = 0; j < n; ++j) {
        const float product = av * b[j];
        c[j] = c[j] + product;
      }
    }
  }
}

void Executor::Vec(const Instr& in) {
  namespace f = isa::vec;
  const int64_t rows = in[f::kRows], dim = cfg_.dim, op = in[f::kOp];
  tmp_.resize(static_cast<size_t>(rows * dim));
  for (int64_t i = 0; i < rows; ++i) {
    const float* a = Row(isa::kMemAccumulator, in[f::kARow] + i);
    const float* b = Row(isa::kMemAccumulator, in[f::kBRow] + (in[f::kBBroadcast] ? 0 : i));
    float* out = tmp_.data() + i * dim;
    for (int64_t j = 0; j < dim; ++j) {
      const float x = a[j], y = b[j];
      switch (op) {
        case isa::kVecOpAdd: out[j] = x + y; break;
        case isa::kVecOpMul: out[j] = x * y; break;
        default:  // max, NaN-propagating like numpy.maximum
          out[j] = std::isnan(x) ? x : std::isnan(y) ? y : (x > y ? x : y);
          break;
      }
    }
  }
  std::copy(tmp_.begin(), tmp_.end(), Row(isa::kMemAccumulator, in[f::kDstRow]));
}

void Executor::CheckBreakpoints(const OpId& id, const float* bp, int64_t n, int64_t stride,
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

void Executor::Pwl(const OpId& id, const Instr& in) {
  namespace f = isa::pwl;
  const int64_t rows = in[f::kRows], dim = cfg_.dim;
  const int64_t base = in[f::kTableBase], n = in[f::kNSegments];
  CheckBreakpoints(id, breakpoint_.data() + base, n, 1, "table entry", base);
  const float* bp_begin = breakpoint_.data() + base + 1;
  const float* bp_end = breakpoint_.data() + base + n;
  tmp_.resize(static_cast<size_t>(rows * dim));
  const float* src = Row(isa::kMemAccumulator, in[f::kSrcRow]);
  for (int64_t e = 0; e < rows * dim; ++e) {
    const float x = src[e];
    if (std::isnan(x)) {
      tmp_[e] = x;
      continue;
    }
    // The largest s with breakpoint[s] <= x is the count of such breakpoints among 1..n-1.
    const int64_t seg = base + (std::upper_bound(bp_begin, bp_end, x) - bp_begin);
    // A flat segment outputs its intercept (a constant multiplexer, as hardware would):
    // ReLU(-inf) is 0, not 0 * -inf = NaN.
    const float product = slope_[seg] == 0.0f ? 0.0f : slope_[seg] * x;
    tmp_[e] = product + intercept_[seg];
  }
  std::copy(tmp_.begin(), tmp_.end(), Row(isa::kMemAccumulator, in[f::kDstRow]));
}

void Executor::LoadPwl(const OpId& id, const Instr& in) {
  namespace f = isa::load_pwl;
  const int64_t base = in[f::kTableBase], n = in[f::kNSegments];
  const float* src = Dram(in[f::kDramAddr]);
  CheckBreakpoints(id, src, n, 3, "segment", 0);
  for (int64_t s = 0; s < n; ++s) {
    breakpoint_[base + s] = src[3 * s];
    slope_[base + s] = src[3 * s + 1];
    intercept_[base + s] = src[3 * s + 2];
  }
}

}  // namespace nm_accel
