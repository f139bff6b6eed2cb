// Functional model: DRAM regions, scratchpad, accumulator, PWL table and the numerics.
#ifndef NM_ACCEL_EXECUTOR_H_
#define NM_ACCEL_EXECUTOR_H_

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "program.h"

namespace nm_accel {

// Caller-owned fp32 memory bound to one argument region (zero copy).
struct DramBuffer {
  float* data = nullptr;
  int64_t bytes = 0;
};

// Checks that `args` match the program's argument regions (count and byte sizes).
void CheckArguments(const Program& prog, const std::vector<DramBuffer>& args);

// Round-to-nearest-even to bfloat16, returned as the float it represents (NaN stays NaN).
float RoundToBf16(float x);

class Executor {
 public:
  // Binds argument regions to `args` (in region order; checked by CheckArguments) and
  // allocates zero-filled scratch regions and on-chip memories.
  Executor(const Program& prog, const std::vector<DramBuffer>& args);

  // Executes one validated instruction or micro-op.
  void Execute(const OpId& id, const Instr& in);

 private:
  struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
  };

  void Load(const Instr& in);
  void Store(const Instr& in);
  void Gemm(const Instr& in);
  void Vec(const Instr& in);
  void Pwl(const OpId& id, const Instr& in);
  void LoadPwl(const OpId& id, const Instr& in);

  // Pointer to the fp32 element at a validated DRAM byte address.
  float* Dram(int64_t addr);
  float* Row(int64_t mem, int64_t row);
  // Breakpoints of entries first+1 .. first+n-1 must be non-decreasing (and not NaN).
  // `breakpoints` holds n values `stride` floats apart; `label` and `first` name them.
  static void CheckBreakpoints(const OpId& id, const float* breakpoints, int64_t n,
                               int64_t stride, const char* label, int64_t first);

  const Program& prog_;
  const MachineConfig& cfg_;
  std::vector<float*> region_data_;  // per region, in region order
  std::vector<std::unique_ptr<float, FreeDeleter>> scratch_;
  std::vector<float> sp_, acc_;
  std::vector<float> breakpoint_, slope_, intercept_;
  std::vector<float> tmp_;  // VEC/PWL results before write-back (rows may alias)
};

}  // namespace nm_accel

#endif  // NM_ACCEL_EXECUTOR_H_
