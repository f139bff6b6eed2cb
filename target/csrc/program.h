// Decoding and validation of an encoded program (header, regions, instructions).
#ifndef NM_ACCEL_PROGRAM_H_
#define NM_ACCEL_PROGRAM_H_

#include <array>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "isa.h"  // generated from target/isa_spec.json into the build directory

namespace nm_accel {

// Any rejected program or argument. The FFI layer turns it into a Python ValueError.
class SimError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates its arguments with operator<< (for error messages).
template <typename... Args>
std::string Str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

using i128 = __int128;  // overflow-free sums of operands

struct MachineConfig {
  int64_t layer_id = 0;
  int64_t dim = 0;
  int64_t sp_rows = 0;
  int64_t acc_rows = 0;
  int64_t pwl_entries = 0;
  int64_t dtype = isa::kDTypeFloat32;
  int64_t dram_bytes = 0;
  int64_t dram_bw = 0;
  int64_t dram_latency = 0;
  int64_t dataflow = isa::kDataflowWeightStationary;
  int64_t queue_depth = 1;  // instructions each engine's queue holds
  int64_t dma_in_flight = 1;  // DMAs one engine may have in flight

  // Bytes of one scratchpad element (for statistics).
  int64_t sp_elem_bytes() const { return dtype == isa::kDTypeBfloat16 ? 2 : 4; }
  int64_t rows_of(int64_t mem) const { return mem == isa::kMemScratchpad ? sp_rows : acc_rows; }
};

struct Region {
  int64_t base = 0;
  int64_t size = 0;
  int64_t kind = isa::kRegionKindArgument;
  int64_t dtype = isa::kElemTypeFloat32;  // enum ElemType: what the region's elements are
  int64_t end() const { return base + size; }
};

// One instruction record (an ordinary instruction or a LOOP_GEMM micro-op).
struct Instr {
  std::array<int64_t, isa::kInstrWords> w{};
  int64_t op() const { return w[isa::kWordOpcode]; }
  int64_t wait() const { return w[isa::kWordWait]; }
  int64_t signal() const { return w[isa::kWordSignal]; }
  int64_t operator[](int i) const { return w[i]; }
};

// Identifies an operation for messages: instruction index, micro-op index (-1 when the
// operation is the instruction itself) and the operation's opcode.
struct OpId {
  int64_t index = 0;
  int64_t micro = -1;
  int64_t op = 0;
};

const char* OpName(int64_t op);
const char* MemName(int64_t mem);
const char* QueueName(int q);
int QueueOf(int64_t op);  // LOOP_GEMM (no queue of its own) and unknown opcodes: compute
// "instruction 5 (LOOP_GEMM) micro-op 17 (LOAD)" or "instruction 3 (GEMM)".
std::string Describe(const OpId& id);
[[noreturn]] void Fail(const OpId& id, const std::string& message);

// A validated program: the instruction words stay in the caller's buffer.
class Program {
 public:
  // Decodes and validates the header and the region table; throws SimError.
  Program(const int64_t* words, int64_t n_words);

  const MachineConfig& config() const { return config_; }
  const std::vector<Region>& regions() const { return regions_; }
  int64_t num_instr() const { return num_instr_; }
  int64_t num_argument_regions() const;
  Instr instr(int64_t i) const;

  // Index of the region holding every byte of [lo, hi), or -1.
  int64_t RegionContaining(int64_t lo, int64_t hi) const;
  // Index of the region holding byte `addr`, or -1.
  int64_t RegionAt(int64_t addr) const;

 private:
  void DecodeHeader();
  void DecodeRegions();

  const int64_t* words_;
  int64_t n_words_;
  MachineConfig config_;
  std::vector<Region> regions_;
  std::vector<int64_t> by_base_;  // region indices sorted by base address
  int64_t num_instr_ = 0;
};

// A 2-D strided DRAM access: `rows` x `cols` fp32 elements, element (r, c) at
// addr + r * row_stride + c * col_stride.
struct DramAccess {
  int64_t addr = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  int64_t col_stride = 0;
};

// Bytes of one DRAM element of type `elem_type` (enum ElemType).
int64_t ElemBytesOf(int64_t elem_type);
const char* ElemTypeName(int64_t elem_type);

// Checks that every byte of the access lies in one region (overflow-safe), on element
// boundaries of that region's type; `what` names the access in the message. Only accesses
// with `integer_ok` may touch an integer region (LOAD converts, GATHER reads indices).
// Returns the region index. rows, cols >= 1.
int64_t CheckDramAccess(const OpId& id, const Program& prog, const char* what,
                        const DramAccess& access, bool integer_ok = false);

// Caller-owned memory bound to one argument region (zero copy), of the region's type.
struct DramBuffer {
  void* data = nullptr;
  int64_t bytes = 0;
  int64_t dtype = isa::kElemTypeFloat32;
};

// Operand checks shared by the instruction validators and LOOP_GEMM planning; each fails
// with a message naming the operand.
void CheckInRange(const OpId& id, const char* name, int64_t v, int64_t lo, int64_t hi,
                  const char* hi_name = nullptr);
void CheckAtLeast(const OpId& id, const char* name, int64_t v, int64_t lo);
void CheckFlag(const OpId& id, const char* name, int64_t v);
// DRAM byte addresses and strides: non-negative multiples of 4.
void CheckByteOperand(const OpId& id, const char* name, int64_t v);
// Rows row .. row+count-1 of an on-chip memory (count >= 1 checked by the caller).
void CheckRows(const OpId& id, const MachineConfig& cfg, int64_t mem, const char* row_name,
               int64_t row, const char* count_name, int64_t count);
// Operand words past the opcode's last field must be 0 (catches encoder mistakes).
void CheckUnusedZero(const OpId& id, const Instr& in, int first_unused);
// PWL table entries table_base .. table_base+n_segments-1, 1 <= n_segments <= pwl_entries.
void CheckTable(const OpId& id, const MachineConfig& cfg, int64_t table_base,
                int64_t n_segments);

// Static checks of one instruction or micro-op (opcode, masks, then the instruction's own
// rules: instr.h). LOOP_GEMM's own operands are checked by PlanLoopGemm.
void ValidateInstr(const OpId& id, const Instr& in, const Program& prog);

// Checks the opcode and the wait/signal masks of any instruction.
void ValidateOpcodeAndMasks(const OpId& id, const Instr& in);

}  // namespace nm_accel

#endif  // NM_ACCEL_PROGRAM_H_
