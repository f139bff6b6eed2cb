// Constants of the nm accelerator instruction set (docs/ISA.md is the specification).
// Mirrors target/isa.py: keep the two in step.
#ifndef NM_ACCEL_ISA_H_
#define NM_ACCEL_ISA_H_

#include <cstdint>

namespace nm_accel {
namespace isa {

constexpr int64_t kMagic = 0x4E4D4143;  // "NMAC"
constexpr int64_t kVersion = 2;
constexpr int64_t kHeaderWords = 16;
constexpr int64_t kRegionWords = 4;
constexpr int64_t kInstrWords = 32;
constexpr int64_t kElemBytes = 4;  // DRAM holds fp32

// Header word indices.
enum HeaderWord : int {
  kHdrMagic = 0,
  kHdrVersion = 1,
  kHdrNumRegions = 2,
  kHdrNumInstr = 3,
  kHdrLayerId = 4,
  kHdrDim = 5,
  kHdrSpRows = 6,
  kHdrAccRows = 7,
  kHdrPwlEntries = 8,
  kHdrOperandDtype = 9,
  kHdrDramBytes = 10,
  kHdrDramBw = 11,
  kHdrDramLatency = 12,
  kHdrDataflow = 13,       // 0 weight-stationary, 1 output-stationary
  kHdrQueueDepth = 14,     // instructions each engine's queue holds
  kHdrDmaInFlight = 15,    // DMAs one engine may have in flight (issued, data not landed)
  kHdrReservedBegin = 16,  // no reserved words left
};

// Region record word indices.
enum RegionWord : int { kRegBase = 0, kRegSize = 1, kRegKind = 2, kRegReserved = 3 };
enum RegionKind : int64_t { kRegionArgument = 0, kRegionScratch = 1 };

enum DType : int64_t { kFp32 = 0, kBf16 = 1 };

enum Op : int64_t {
  kLoad = 1,
  kStore = 2,
  kGemm = 3,
  kVec = 4,
  kPwl = 5,
  kLoadPwl = 6,
  kLoopGemm = 7,
};
constexpr int64_t kFirstOp = kLoad;
constexpr int64_t kLastOp = kLoopGemm;

enum Queue : int { kQueueLoad = 0, kQueueCompute = 1, kQueueStore = 2 };
constexpr int kNumQueues = 3;

enum Mem : int64_t { kScratchpad = 0, kAccumulator = 1 };
enum VecOp : int64_t { kVecAdd = 0, kVecMul = 1, kVecMax = 2 };

// Instruction record: word 0 opcode, 1 wait mask, 2 signal mask, 3.. operands.
constexpr int kWordOpcode = 0;
constexpr int kWordWait = 1;
constexpr int kWordSignal = 2;
constexpr int kFirstOperand = 3;

// Operand word indices per opcode (FIELDS in target/isa.py).
namespace load {
enum : int { kDstMem = 3, kDstRow, kDramAddr, kRows, kCols, kRowStride, kColStride, kPadBefore,
             kPadAfter, kEnd };
}
namespace store {
enum : int { kSrcMem = 3, kSrcRow, kDramAddr, kRows, kCols, kRowStride, kColStride, kEnd };
}
namespace gemm {
enum : int { kARow = 3, kBRow, kCRow, kM, kK, kN, kAccumulate, kEnd };
}
namespace vec {
enum : int { kOp = 3, kDstRow, kARow, kBRow, kRows, kBBroadcast, kEnd };
}
namespace pwl {
enum : int { kDstRow = 3, kSrcRow, kRows, kTableBase, kNumSegments, kEnd };
}
namespace load_pwl {
enum : int { kTableBase = 3, kDramAddr, kNumSegments, kEnd };
}
namespace loop_gemm {
enum : int {
  kAAddr = 3, kARowStride, kAColStride,
  kBAddr, kBRowStride, kBColStride,
  kCAddr, kCRowStride, kCColStride,
  kDAddr, kDRowStride, kDColStride,
  kBiasAddr, kM, kK, kN, kTileM, kTileK, kTileN,
  kActTable, kActSegments, kSpBase, kAccBase, kHasD, kHasBias, kHasAct,
  kEnd
};
}

// Statistics record, in the order of STAT_FIELDS in target/isa.py.
enum Stat : int {
  kStatLayerId = 0,
  kStatCycles,
  kStatLoadBusy,
  kStatComputeBusy,
  kStatStoreBusy,
  kStatMacs,
  kStatDramReadBytes,
  kStatDramWriteBytes,
  kStatSpReadBytes,
  kStatSpWriteBytes,
  kStatAccReadBytes,
  kStatAccWriteBytes,
  kStatVecElements,
  kStatPwlElements,
  kStatNumLoad,
  kStatNumStore,
  kStatNumGemm,
  kStatNumVec,
  kStatNumPwl,
  kStatNumLoadPwl,
  kStatNumLoopGemm,
  // Stall cycles: an engine waiting for a token (docs/ISA.md, "Stalls"), per engine and cause.
  // Laid out as kStatLoadStallDma + kNumStallCauses * queue + cause.
  kStatLoadStallDma,
  kStatLoadStallDep,
  kStatLoadStallFull,
  kStatLoadStallQueue,
  kStatComputeStallDma,
  kStatComputeStallDep,
  kStatComputeStallFull,
  kStatComputeStallQueue,
  kStatStoreStallDma,
  kStatStoreStallDep,
  kStatStoreStallFull,
  kStatStoreStallQueue,
  kNumStats
};

// Why an engine waited (docs/ISA.md, "Stalls").
enum StallCause : int { kStallDma = 0, kStallDep = 1, kStallFull = 2, kStallQueue = 3 };
constexpr int kNumStallCauses = 4;

// STAT_FIELDS of target/isa.py; the Python loader compares the two.
constexpr const char* kStatNames[kNumStats] = {
    "layer_id", "cycles", "load_busy", "compute_busy", "store_busy", "macs",
    "dram_read_bytes", "dram_write_bytes", "sp_read_bytes", "sp_write_bytes",
    "acc_read_bytes", "acc_write_bytes", "vec_elements", "pwl_elements",
    "n_load", "n_store", "n_gemm", "n_vec", "n_pwl", "n_load_pwl", "n_loop_gemm",
    "load_stall_dma", "load_stall_dep", "load_stall_full", "load_stall_queue",
    "compute_stall_dma", "compute_stall_dep", "compute_stall_full", "compute_stall_queue",
    "store_stall_dma", "store_stall_dep", "store_stall_full", "store_stall_queue",
};

}  // namespace isa
}  // namespace nm_accel

#endif  // NM_ACCEL_ISA_H_
