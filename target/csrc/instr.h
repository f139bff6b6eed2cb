// What each instruction means to the simulator, written once per instruction: its static
// checks, its cost, the on-chip rows it touches, its counters and its numerics. Every opcode
// of the ISA spec (target/isa_spec.json) but LOOP_GEMM (expanded by loop_gemm.cc into these)
// has one InstrRules in target/csrc/instr/<name>.cc, listed by RulesOf (instr/rules.cc).
// The scheduler, the executor and the validator only dispatch through RulesOf.
#ifndef NM_ACCEL_INSTR_H_
#define NM_ACCEL_INSTR_H_

#include <array>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "program.h"

namespace nm_accel {

using StatsRecord = std::array<int64_t, isa::kStatCount>;

// On-chip memories, for race tracking.
enum Memory { kSp = 0, kAcc = 1, kTable = 2, kNumMemories = 3 };

// Rows [lo, hi) of an on-chip memory that an operation reads or writes.
struct Span {
  Memory mem;
  int64_t lo, hi;
  bool write;
};

// Cycles an instruction occupies its engine, and the latency after that until its data has
// arrived (DMA only): the engine takes its next instruction after `busy`, while the data of
// the previous one is still in flight.
struct Timing {
  int64_t busy;
  int64_t latency;
};

// What an instruction's cost may depend on besides its operands.
struct CostContext {
  const MachineConfig& cfg;
  const Program& prog;  // its regions' element types set DMA byte counts
  bool chained;         // a GEMM starting the moment the previous compute op, a GEMM, ended
  int64_t prev_gemm_m;  // rows that previous GEMM streamed
};

// Overflow-checked statistics counters of one run.
class Counters {
 public:
  Counters(StatsRecord& stats, const Program& prog) : stats_(stats), prog_(prog) {}
  void Add(isa::Stat stat, int64_t value);
  // On-chip traffic: `elements` read or written in `mem` (scratchpad elements are the operand
  // dtype's size, accumulator elements fp32).
  void Mem(int64_t mem, bool write, int64_t elements);
  const MachineConfig& cfg() const { return prog_.config(); }
  const Program& prog() const { return prog_; }

 private:
  StatsRecord& stats_;
  const Program& prog_;
};

// The memories an instruction executes against: DRAM regions, scratchpad, accumulator and the
// PWL table (breakpoint, slope, intercept per entry).
class MachineState {
 public:
  // Binds argument regions to `args` (in region order; checked by CheckArguments) and
  // allocates zero-filled scratch regions and on-chip memories.
  MachineState(const Program& prog, const std::vector<DramBuffer>& args);

  const MachineConfig& cfg() const { return cfg_; }
  // The fp32 element at a validated DRAM byte address (of a float32 region).
  float* Dram(int64_t addr);
  // An element of any type at a validated DRAM byte address, converted: integers exactly as
  // int64, then (ReadAsFloat) to the nearest fp32, as a cast does.
  int64_t ReadInt(int64_t addr) const;
  float ReadAsFloat(int64_t addr) const;
  // Writes fp32 `v` to a validated DRAM address, converted to the region's element type as
  // ONNX Cast does (bool: nonzero; integers: truncated, out of range an error naming `id`).
  void WriteFromFloat(const OpId& id, int64_t addr, float v);
  // The element type (enum ElemType) of the region holding validated address `addr`.
  int64_t DtypeAt(int64_t addr) const;
  float* Row(int64_t mem, int64_t row);

  std::vector<float> breakpoint, slope, intercept;
  std::vector<float> tmp;  // VEC / PWL results before write-back (rows may alias)

 private:
  struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
  };
  const char* Bytes(int64_t addr) const;
  const Program& prog_;
  const MachineConfig& cfg_;
  std::vector<char*> region_data_;  // per region, in region order
  std::vector<std::unique_ptr<char, FreeDeleter>> scratch_;
  std::vector<float> sp_, acc_;
};

struct InstrRules {
  // Static checks of the operands (ranges, on-chip rows, DRAM regions, unused words zero);
  // fail with a message naming the operand.
  void (*validate)(const OpId& id, const Instr& in, const Program& prog);
  Timing (*cost)(const Instr& in, const CostContext& ctx);
  std::vector<Span> (*accesses)(const Instr& in);
  void (*count)(const Instr& in, Counters& counters);
  void (*execute)(const OpId& id, const Instr& in, MachineState& state);
  // Writes on chip only as its DMA data lands (after the latency), not from its start.
  bool lands_late = false;
};

// The rules of a validated opcode (not LOOP_GEMM).
const InstrRules& RulesOf(int64_t op);

// Shared by the instructions' rules.
Timing DmaTiming(const MachineConfig& cfg, int64_t bytes);  // streams at dram_bw, lands later
int64_t CeilLog2(int64_t n);
// Round-to-nearest-even to bfloat16, returned as the float it represents (NaN stays NaN).
float RoundToBf16(float x);
// Breakpoints of entries first+1 .. first+n-1 must be non-decreasing (and not NaN).
// `breakpoints` holds n values `stride` floats apart; `label` and `first` name them.
void CheckBreakpoints(const OpId& id, const float* breakpoints, int64_t n, int64_t stride,
                      const char* label, int64_t first);

}  // namespace nm_accel

#endif  // NM_ACCEL_INSTR_H_
